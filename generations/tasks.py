"""django-q2 task functions: thin wrappers that call one service each."""

from __future__ import annotations

import logging
import time

from django.conf import settings

from generations import services

log = logging.getLogger(__name__)

#: A scheduled poll sweep keeps sweeping for this long, so that with a one-minute schedule
#: (django-q2's finest) due generations are claimed every HAILUO_POLL_SWEEP_INTERVAL seconds.
SWEEP_RUN_SECONDS = 55.0


def submit_generation(generation_id: str) -> str:
    """Send one queued generation to its provider (see ``services.generation_submit``)."""
    return services.generation_submit(generation_id=generation_id)


def poll_generations(generation_ids: list[str]) -> dict:
    """Poll exactly these generations now (a callback's wake-up)."""
    return services.generations_poll(ids=generation_ids)


def archive_generation(generation_id: str, attempt: int | None = None) -> str:
    """Download one succeeded generation's video (``attempt``: already claimed by the sweep)."""
    return services.generation_archive(generation_id=generation_id, attempt=attempt)


def sweep_once() -> dict:
    """One pass: hand due submit retries and downloads to the workers, poll due generations, expire old ones.

    Submits and downloads are enqueued, never run here: a slow provider or a large video
    must not hold up the polls of everything else.
    """
    counts = {"submits_enqueued": services.submits_enqueue_due(), "archives_enqueued": services.archives_enqueue_due()}
    counts.update(services.generations_poll())
    counts["expired"] = services.generations_expire()
    counts["stuck"] = services.generations_stuck_submitting()
    return counts


def poll_sweep(run_seconds: float | None = None) -> dict:
    """The scheduled sweep: repeat :func:`sweep_once` every ``HAILUO_POLL_SWEEP_INTERVAL`` s for ~a minute.

    At most ``HAILUO_POLL_SWEEPERS`` sweeps run at once (a slot in ``SweepLease``); a run
    that finds no free slot returns ``{"skipped": 1}`` at once, so a backlog of scheduled
    runs never occupies every worker. Sweeps that do overlap (one per slot, on any machine)
    share the work safely: claims use SKIP LOCKED and leases.
    """
    run_seconds = SWEEP_RUN_SECONDS if run_seconds is None else run_seconds
    slot = services.sweep_slot_claim(seconds=run_seconds + 30)
    if slot is None:
        return {"skipped": 1}
    started = time.monotonic()
    totals: dict[str, int] = {}
    try:
        while True:
            try:
                for key, value in sweep_once().items():
                    totals[key] = totals.get(key, 0) + value
            except Exception:  # keep sweeping; the error is in the log
                log.exception("poll sweep pass failed")
            if time.monotonic() - started + settings.HAILUO_POLL_SWEEP_INTERVAL >= run_seconds:
                return totals
            time.sleep(settings.HAILUO_POLL_SWEEP_INTERVAL)
    finally:
        services.sweep_slot_release(slot=slot)
