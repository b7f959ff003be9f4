"""Archive: download a succeeded generation's video into our storage, once at a time, with
retries; streamed, size-capped, deadline-bound and SSRF-guarded (``providers.http.download_public``).

Result URLs expire (providers.md: "Result URLs expire: download the video into our storage
as soon as the task succeeds"), so the copy in MEDIA storage is what the gallery plays.
"""

from __future__ import annotations

import logging
import os
import tempfile
from datetime import datetime, timedelta

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db.models import F, Q
from django.utils import timezone

from generations.models import ArchiveState, Generation, State
from generations.services.lifecycle import _event, _log, _time_scale
from providers.http import DownloadFailed, download_public

MAX_REDIRECTS = 5
#: After this many failed attempts a download is given up: "succeeded, archive failed".
ARCHIVE_MAX_ATTEMPTS = 8


class ArchiveError(Exception):
    """The video could not be archived (the message says why)."""


def _archive_lease() -> datetime:
    """Until when a claimed download is left alone: its deadline plus a margin (a dead worker's is retried after)."""
    return timezone.now() + timedelta(seconds=settings.HAILUO_DOWNLOAD_TIMEOUT + 300)


def generation_archive(*, generation_id, attempt: int | None = None) -> str:
    """Download a succeeded generation's video into MEDIA storage. Returns the archive state.

    Claims the download first (``archive_attempts`` + 1, conditional on the count read), so
    two workers never download one video at once; with ``attempt`` the caller (the sweep)
    already claimed that attempt. Retries later (``next_archive_at``) on failure until
    ``ARCHIVE_MAX_ATTEMPTS``; then ``failed`` ("succeeded, archive failed").
    """
    generation = Generation.objects.get(pk=generation_id)
    if generation.state != State.SUCCEEDED or generation.archive_state != ArchiveState.PENDING:
        return generation.archive_state
    if attempt is not None:
        if generation.archive_attempts != attempt:  # another attempt has started since: not ours
            return generation.archive_state
        attempts = attempt
    else:
        now = timezone.now()
        claimed = Generation.objects.filter(
            Q(next_archive_at__isnull=True) | Q(next_archive_at__lte=now),
            pk=generation_id, archive_state=ArchiveState.PENDING, archive_attempts=generation.archive_attempts,
        ).update(archive_attempts=F("archive_attempts") + 1, next_archive_at=_archive_lease())
        if not claimed:
            return generation.archive_state
        attempts = generation.archive_attempts + 1
    try:
        name, size, poster = download_video(generation)
    except ArchiveError as exc:
        final = attempts >= ARCHIVE_MAX_ATTEMPTS
        delay = min(30 * 2 ** attempts, 1800) * max(_time_scale(), 0.01)
        Generation.objects.filter(pk=generation_id).update(
            archive_state=ArchiveState.FAILED if final else ArchiveState.PENDING,
            archive_error=str(exc),
            next_archive_at=None if final else timezone.now() + timedelta(seconds=delay),
        )
        _event(generation_id, "", f"Archive attempt {attempts} failed: {exc}")
        _log(generation_id, "archive_failed", generation=generation, level=logging.WARNING, attempt=attempts, final=final,
             error=str(exc))
        return ArchiveState.FAILED if final else ArchiveState.PENDING
    Generation.objects.filter(pk=generation_id).update(
        video=name, video_bytes=size, poster=poster, archive_state=ArchiveState.DONE, archive_error="", next_archive_at=None
    )
    _event(generation_id, "", f"Video archived ({size:,} bytes)")
    _log(generation_id, "archived", generation=generation, attempt=attempts, bytes=size)
    return ArchiveState.DONE


def _looks_like_mp4(head: bytes) -> bool:
    """ISO BMFF signature: a box whose type at bytes 4-8 is ``ftyp`` (MP4/MOV)."""
    return len(head) >= 8 and head[4:8] == b"ftyp"


def make_poster(video_path: str, *, at_seconds: float = 0.5, width: int = 640) -> bytes | None:
    """A JPEG frame of the video (ffmpeg shipped by imageio-ffmpeg), or None when it cannot be made."""
    import subprocess

    try:
        import imageio_ffmpeg

        ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError):
        return None
    for offset in (at_seconds, 0.0):
        try:
            result = subprocess.run(
                [ffmpeg, "-v", "error", "-ss", str(offset), "-i", video_path, "-frames:v", "1",
                 "-vf", f"scale={width}:-2", "-q:v", "4", "-f", "image2", "-c:v", "mjpeg", "pipe:1"],
                capture_output=True, timeout=30, check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            return None
        if result.returncode == 0 and result.stdout.startswith(b"\xff\xd8"):
            return result.stdout
    return None


def download_video(generation) -> tuple[str, int, str]:
    """Fetch ``generation.result_urls[0]`` into storage; returns ``(video name, bytes, poster name or "")``.

    Limits: ``HAILUO_DOWNLOAD_MAX_BYTES``, an overall deadline of ``HAILUO_DOWNLOAD_TIMEOUT``
    seconds, http(s) only, every hop's host public unless listed in
    ``HAILUO_ALLOWED_PRIVATE_HOSTS``, at most ``MAX_REDIRECTS`` redirects, and an MP4
    signature. Raises :class:`ArchiveError`.
    """
    if not generation.result_urls:
        raise ArchiveError("the provider gave no result URL")
    max_bytes = settings.HAILUO_DOWNLOAD_MAX_BYTES
    with tempfile.NamedTemporaryFile(suffix=".mp4", delete=False) as tmp:
        try:
            try:
                size = download_public(
                    generation.result_urls[0], into=tmp, max_bytes=max_bytes,
                    timeout=settings.HAILUO_DOWNLOAD_TIMEOUT, connect_timeout=10.0, read_timeout=60.0,
                    allowed_private_hosts=set(settings.HAILUO_ALLOWED_PRIVATE_HOSTS), max_redirects=MAX_REDIRECTS,
                )
            except DownloadFailed as exc:
                raise ArchiveError(_failure_reason(exc, max_bytes=max_bytes)) from exc
            tmp.flush()
            tmp.seek(0)
            if not _looks_like_mp4(tmp.read(16)):
                raise ArchiveError("the result is not an MP4 file (no ftyp signature)")
            created = generation.created_at
            name = f"videos/{created:%Y/%m}/{generation.pk}.mp4"
            with open(tmp.name, "rb") as fh:
                stored = default_storage.save(name, File(fh))
            poster = make_poster(tmp.name)
            poster_name = ""
            if poster:
                poster_name = default_storage.save(f"posters/{created:%Y/%m}/{generation.pk}.jpg", ContentFile(poster))
            return stored, size, poster_name
        finally:
            os.unlink(tmp.name)


def _failure_reason(exc: DownloadFailed, *, max_bytes: int) -> str:
    """A failed video download in the words of ``archive_error``."""
    if exc.reason == "refused":
        return f"refused to fetch the result: {exc.cause}"
    if exc.reason == "status":
        return f"the result URL answered HTTP {exc.status}"
    if exc.reason == "too_large":
        if exc.size is not None:
            return f"the video is {exc.size:,} bytes, over the {max_bytes:,} byte cap"
        return f"the video exceeds the {max_bytes:,} byte cap"
    if exc.reason == "too_slow":
        return f"the download took over {settings.HAILUO_DOWNLOAD_TIMEOUT:g} s"
    if exc.reason == "redirects":
        return f"more than {MAX_REDIRECTS} redirects"
    return f"download failed: {exc.cause.__class__.__name__}: {exc.cause}"
