"""Archive: download a succeeded generation's video into our storage, once at a time, with
retries; streamed, size-capped, deadline-bound and SSRF-guarded (``providers.download.download_public``).

Result URLs expire (providers.md: "Result URLs expire: download the video into our storage
as soon as the task succeeds"), so the copy in MEDIA storage is what the gallery plays.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import tempfile
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from generations.models import ArchiveState, Generation, State
from generations.services.lifecycle import _event, _log, _time_scale, _timeouts
from providers.download import DownloadFailed, download_public
from providers.http import ProviderHttp, make_poll_client

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
        name, size, poster, seconds = download_video(generation, measure=True)
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
        video=name, video_bytes=size, video_seconds=seconds, poster=poster, archive_state=ArchiveState.DONE,
        archive_error="", next_archive_at=None,
    )
    measured = f", {seconds} s measured" if seconds is not None else ""
    _event(generation_id, "", f"Video archived ({size:,} bytes{measured})", {"video_seconds": str(seconds) if seconds is not None else None})
    _log(generation_id, "archived", generation=generation, attempt=attempts, bytes=size)
    return ArchiveState.DONE


def generation_archive_retry(*, generation_id, user=None) -> bool:
    """Try again to save a succeeded generation's video whose download failed for good.

    Offered while the provider's result URL may still be valid (:func:`archive_retry_offered`).
    Reads the task's status again with our key first (MiniMax signs a fresh download URL on
    every read; others answer the same URL), then resets the archive to ``pending`` with a
    fresh attempt count and queues the download. Returns False when nothing was reset (not
    failed, not offered any more, or reset by someone else meanwhile). Raises nothing on a
    failed status read: the stored URLs are tried.
    """
    from generations import services

    generation = Generation.objects.select_related("provider_account").get(pk=generation_id)
    if not archive_retry_offered(generation):
        return False
    urls = list(generation.result_urls)
    try:
        update = asyncio.run(_read_status(generation))
        if update.result_urls:
            urls = list(update.result_urls)
    except Exception as exc:  # the stored URLs are tried anyway
        _event(generation_id, "", f"Status read before the archive retry failed: {exc}")
    reset = Generation.objects.filter(pk=generation_id, state=State.SUCCEEDED, archive_state=ArchiveState.FAILED).update(
        archive_state=ArchiveState.PENDING, archive_attempts=0, archive_error="", next_archive_at=timezone.now(), result_urls=urls,
    )
    if reset:
        _event(generation_id, "", f"Archive retried by {user or 'someone'}")
        transaction.on_commit(lambda: services.enqueue_archive(generation_id))
    return bool(reset)


def archive_retry_offered(generation) -> bool:
    """Whether "try saving again" is offered: succeeded, download failed for good, and the task
    finished less than ``HAILUO_RESULT_URL_HOURS`` ago (the shortest documented result-URL
    lifetime, qingbo's 24 h: providers.md "Result URLs expire")."""
    if generation.state != State.SUCCEEDED or generation.archive_state != ArchiveState.FAILED:
        return False
    finished = generation.completed_at or generation.created_at
    return timezone.now() - finished < timedelta(hours=settings.HAILUO_RESULT_URL_HOURS)


async def _read_status(generation):
    adapter = generation.provider_account.adapter()
    async with make_poll_client(max_connections=1) as client:
        http = ProviderHttp(client, timeouts=_timeouts(), provider=adapter.label)
        return await adapter.fetch_status(http, task_id=generation.provider_task_id, model=generation.model)


_DURATION = re.compile(rb"Duration:\s*(\d+):(\d{2}):(\d{2}(?:\.\d+)?)")


def measure_seconds(video_path: str) -> Decimal | None:
    """The video's duration in seconds (3 decimals), read by the ffmpeg binary shipped by
    imageio-ffmpeg (``ffmpeg -i FILE``: the container's ``Duration: HH:MM:SS.ss`` line, as
    ffprobe reports it); None when ffmpeg is missing or reports no duration."""
    import subprocess

    try:
        import imageio_ffmpeg

        ffmpeg = imageio_ffmpeg.get_ffmpeg_exe()
        result = subprocess.run([ffmpeg, "-hide_banner", "-i", video_path], capture_output=True, timeout=30, check=False)
    except (ImportError, RuntimeError, OSError, subprocess.TimeoutExpired):
        return None
    found = _DURATION.search(result.stderr)
    if not found:
        return None
    hours, minutes, seconds = found.groups()
    total = Decimal(int(hours) * 3600 + int(minutes) * 60) + Decimal(seconds.decode())
    return total.quantize(Decimal("0.001"))


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


def download_video(generation, *, measure: bool = False):
    """Fetch ``generation.result_urls[0]`` into storage; returns ``(video name, bytes, poster name or "")``,
    and with ``measure`` a fourth item: the measured duration in seconds (:func:`measure_seconds`).

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
            if measure:
                return stored, size, poster_name, measure_seconds(tmp.name)
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
