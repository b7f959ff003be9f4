"""Download a result video into our storage: streamed, size-capped, deadline-bound, SSRF-guarded.

Result URLs expire (providers.md: "Result URLs expire: download the video into our storage
as soon as the task succeeds"), so the copy in MEDIA storage is what the gallery plays.
"""

from __future__ import annotations

import os
import tempfile
import time

import httpx
from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from providers.http import UnsafeURL, open_public_stream

MAX_REDIRECTS = 5


class ArchiveError(Exception):
    """The video could not be archived (the message says why)."""


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
    seconds, http(s) only, every hop's host public unless its ``host:port`` is listed in
    ``HAILUO_ALLOWED_PRIVATE_HOSTS`` and its connection pinned to the checked address
    (:func:`providers.http.open_public_stream`), and an MP4 signature. Raises :class:`ArchiveError`.
    """
    if not generation.result_urls:
        raise ArchiveError("the provider gave no result URL")
    url = generation.result_urls[0]
    allowed = set(settings.HAILUO_ALLOWED_PRIVATE_HOSTS)
    max_bytes = settings.HAILUO_DOWNLOAD_MAX_BYTES
    deadline = time.monotonic() + settings.HAILUO_DOWNLOAD_TIMEOUT
    timeout = httpx.Timeout(min(60.0, settings.HAILUO_DOWNLOAD_TIMEOUT), connect=10.0)
    try:
        with open_public_stream(url, allowed_private_hosts=allowed, timeout=timeout, max_redirects=MAX_REDIRECTS) as response:
            if response.status_code != 200:
                raise ArchiveError(f"the result URL answered HTTP {response.status_code}")
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise ArchiveError(f"the video is {int(declared):,} bytes, over the {max_bytes:,} byte cap")
            return _store(generation, response, max_bytes, deadline)
    except UnsafeURL as exc:
        raise ArchiveError(f"refused to fetch the result: {exc}") from exc
    except httpx.HTTPError as exc:
        raise ArchiveError(f"download failed: {exc.__class__.__name__}: {exc}") from exc


def _store(generation, response: httpx.Response, max_bytes: int, deadline: float) -> tuple[str, int, str]:
    size = 0
    head = b""
    with tempfile.NamedTemporaryFile(suffix=".mp4", delete=False) as tmp:
        try:
            for chunk in response.iter_bytes(64 * 1024):
                size += len(chunk)
                if size > max_bytes:
                    raise ArchiveError(f"the video exceeds the {max_bytes:,} byte cap")
                if time.monotonic() > deadline:
                    raise ArchiveError(f"the download took over {settings.HAILUO_DOWNLOAD_TIMEOUT:g} s")
                if len(head) < 16:
                    head += chunk[: 16 - len(head)]
                tmp.write(chunk)
            tmp.flush()
            if not _looks_like_mp4(head):
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
