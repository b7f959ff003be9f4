"""Serving our stored media: the archived video and its poster, from our storage (never the
provider's URL), with HTTP Range support; shared by the studio (``generations.views``), the
API (``generations.api``) and share links (``teamwork.views``). Callers check visibility first.
"""

from __future__ import annotations

import mimetypes
import os
import re

from django.http import FileResponse, Http404, HttpResponse, StreamingHttpResponse

_RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


def serve_file(
    request, storage_file, *, content_type: str, cache_control: str, download_name: str | None = None
) -> HttpResponse:
    """Stream ``storage_file`` (from our storage, any backend) with HTTP Range support.

    ``Range: bytes=a-b`` / ``a-`` / ``-n`` answers 206 with ``Content-Range``; a range past
    the end answers 416 with ``Content-Range: bytes */size``; otherwise 200 with the whole
    file. ``download_name``: send ``Content-Disposition: attachment`` with that file name.
    Used by the studio's video and poster pages and by the API's ``/video`` and ``/poster``.
    """
    size = storage_file.size
    match = _RANGE.match(request.headers.get("Range", "").strip())
    if match and (match.group(1) or match.group(2)):
        start_s, end_s = match.groups()
        if start_s:
            start, end = int(start_s), min(int(end_s) if end_s else size - 1, size - 1)
        else:
            start, end = max(size - int(end_s), 0), size - 1
        if start > end or start >= size:
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
            return response
        handle = storage_file.open("rb")
        handle.seek(start)
        length = end - start + 1

        def chunks(remaining=length):
            try:
                while remaining > 0:
                    data = handle.read(min(64 * 1024, remaining))
                    if not data:
                        break
                    remaining -= len(data)
                    yield data
            finally:
                handle.close()

        response = StreamingHttpResponse(chunks(), status=206, content_type=content_type)
        response["Content-Range"] = f"bytes {start}-{end}/{size}"
        response["Content-Length"] = str(length)
    else:
        response = FileResponse(storage_file.open("rb"), content_type=content_type)
        response["Content-Length"] = str(size)
    response["Accept-Ranges"] = "bytes"
    response["Cache-Control"] = cache_control
    if download_name:
        response["Content-Disposition"] = f'attachment; filename="{download_name}"'
    return response


def download_name(generation, ext: str = ".mp4") -> str:
    """The downloaded file's name: a slug of the prompt (at most 60 characters, ASCII) and the
    creation date (UTC), e.g. ``a-paper-boat-drifting-2025-06-01.mp4``; ``hailuo-video`` when
    the prompt has no ASCII letters (a Chinese prompt)."""
    from django.utils.text import slugify

    slug = slugify(generation.prompt)[:60].strip("-") or "hailuo-video"
    return f"{slug}-{generation.created_at:%Y-%m-%d}{ext or '.mp4'}"


def video_response(request, generation, *, download: bool = False):
    """The archived MP4 of a visible ``generation`` (``serve_file``); Http404 until archived.
    ``download``: as an attachment."""
    if not generation.has_video:
        raise Http404
    storage_file = generation.video
    return serve_file(
        request, storage_file, content_type=mimetypes.guess_type(storage_file.name)[0] or "video/mp4",
        cache_control="private, max-age=86400",
        download_name=download_name(generation, os.path.splitext(storage_file.name)[1]) if download else None,
    )


def poster_response(request, generation):
    """The poster frame (JPEG) of a visible ``generation`` (``serve_file``); Http404 without one."""
    if not generation.poster:
        raise Http404
    return serve_file(request, generation.poster, content_type="image/jpeg", cache_control="private, max-age=604800")
