"""django-q2 task functions: thin wrappers that call one service each."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

from django.conf import settings

from generations import services

# At import, not inside poll_sweep: a SIGTERM between a slot's claim and the guard would kill it holding the slot.
from generations.services.window import sweep_io

log = logging.getLogger(__name__)

#: A scheduled poll sweep keeps sweeping for this long, so that with a one-minute schedule
#: (django-q2's finest) due generations are claimed every HAILUO_POLL_SWEEP_INTERVAL seconds.
SWEEP_RUN_SECONDS = 55.0


@contextlib.contextmanager
def finish_before_sigterm() -> Iterator[Callable[[], bool]]:
    """Hold a SIGTERM back until the block ends, then act on it as before.

    A stopping cluster (``run_workers`` under honcho, systemd or Kubernetes) SIGTERMs its worker
    processes, whose default action is to die at once. Inside this block the signal is only
    noted: the block may ask ``stopping()`` and wind down; when it ends, the previous handler
    gets the signal (by default: the process ends). So a submit is recorded, not cut between
    the provider's answer and our write, and a poll sweep releases its claims and its slot.
    Outside the main thread (signals cannot be handled there) it changes nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(signum))
    try:
        yield lambda: bool(received)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if received:
            log.info("SIGTERM held back until the task's step ended; acting on it now")
            os.kill(os.getpid(), signal.SIGTERM)


def submit_generation(generation_id: str) -> str:
    """Send one queued generation to its provider (see ``services.generation_submit``).

    A SIGTERM meanwhile waits until the outcome is recorded (:func:`finish_before_sigterm`).
    """
    with finish_before_sigterm():
        return services.generation_submit(generation_id=generation_id)


def poll_generations(generation_ids: list[str]) -> dict:
    """Poll exactly these generations now (a callback's wake-up)."""
    return services.generations_poll(ids=generation_ids)


def archive_generation(generation_id: str, attempt: int | None = None) -> str:
    """Download one succeeded generation's video (``attempt``: already claimed by the sweep)."""
    return services.generation_archive(generation_id=generation_id, attempt=attempt)


def reconciliation_digest() -> int:
    """The daily email to staff listing generations still in needs_reconciliation (see
    ``services.reconciliation_digest_send``); returns how many were listed."""
    return services.reconciliation_digest_send()


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
    share the work safely: claims use SKIP LOCKED and leases. A SIGTERM (the cluster stopping)
    ends the run after the pass in progress, with its slot released.
    """
    run_seconds = SWEEP_RUN_SECONDS if run_seconds is None else run_seconds
    slot = services.sweep_slot_claim(seconds=run_seconds + 30)
    if slot is None:
        return {"skipped": 1}
    started = time.monotonic()
    totals: dict[str, int] = {}
    # One I/O thread and one client per provider account for the whole run (window.sweep_io).
    with finish_before_sigterm() as stopping, sweep_io():  # a stopping cluster ends the sweep after its pass
        try:
            while True:
                try:
                    for key, value in sweep_once().items():
                        totals[key] = totals.get(key, 0) + value
                except Exception:  # keep sweeping; the error is in the log
                    log.exception("poll sweep pass failed")
                if stopping() or time.monotonic() - started + settings.HAILUO_POLL_SWEEP_INTERVAL >= run_seconds:
                    return totals
                time.sleep(settings.HAILUO_POLL_SWEEP_INTERVAL)
        finally:
            services.sweep_slot_release(slot=slot)


def poll_sweep_at_start() -> dict:
    """The sweep ``run_workers`` starts with the cluster: generations submitted right after a
    start are polled at their documented cadence, not at the schedule's next minute tick.

    It runs until shortly before the schedule's next ``poll_sweep`` (django-q2's ``next_run``;
    at most :data:`SWEEP_RUN_SECONDS`), so that run finds its sweep slot free and takes over.
    Returns :func:`poll_sweep`'s counts.
    """
    from django.utils import timezone
    from django_q.models import Schedule

    next_run = (
        Schedule.objects.filter(func="generations.tasks.poll_sweep").order_by("next_run").values_list("next_run", flat=True).first()
    )
    run_seconds = SWEEP_RUN_SECONDS
    if next_run is not None:
        run_seconds = min(SWEEP_RUN_SECONDS, max((next_run - timezone.now()).total_seconds() - 2.0, 0.0))
    return poll_sweep(run_seconds=run_seconds)
