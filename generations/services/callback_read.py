"""A callback's status read: done at once, inside the callback's own request, not behind the broker.

A provider's callback only wakes the generation's poll (``callbacks.generation_callback``);
the state still changes only from our own status read with our key (ARCHITECTURE.md,
"Callbacks"; providers.md, each provider's callback section). Queued on django-q2, that read
waited for the ORM broker's next poll and for a free worker, which the minute-long poll sweep
and archive downloads hold (issue 16: p99 638 ms from the callback to the capture). With
``HAILUO_CALLBACK_STATUS_READ = "inline"`` (the default) the request that received the
callback reads the status itself, through the ordinary poll engine
(``poll.generations_poll(ids=[…])``): the same leased claim (``SELECT … FOR UPDATE SKIP
LOCKED``), so a sweep never reads it at the same moment, and the same conditional moves, so a
success captures exactly once whoever applies it. Provider timeouts are capped at
``HAILUO_CALLBACK_READ_TIMEOUT`` s (connect and read) so the provider's request is not held
for a minute; on any error, or when the claim found the row leased by a sweep or its account
paused, the read is queued on django-q2 as before (``services.enqueue_poll``), where it runs
with the full timeouts. A status read is a GET: reading it again sends nothing twice that
matters (no submit is ever sent from here).
"""

from __future__ import annotations

import logging
import threading
import time

import httpx_aiohttp  # noqa: F401  (the poll client's transport: imported as the web process starts, not by its first callback)
from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from generations import services  # the queue and the poll engine are looked up there (see its docstring)
from generations.models import Generation, State
from generations.services.lifecycle import _log, provider_timeouts_capped

log = logging.getLogger(__name__)


def callback_status_read(generation_id, *, generation=None) -> str:
    """Read the status of a generation a verified callback names, and apply it; returns the outcome.

    ``"read"``: our status read ran here and its answer was applied (succeeded and captured,
    failed and released, or still running: whatever the provider's status endpoint said);
    ``"queued"``: handed to django-q2 instead (``HAILUO_CALLBACK_STATUS_READ = "queue"``, or
    the inline read failed, timed out, or found the row leased by a running sweep or its
    provider account paused, or this process already runs ``HAILUO_CALLBACK_INLINE_READS``
    inline reads); ``"final"``: nothing to do (the row is no longer in flight, e.g.
    a duplicate callback). Never raises: an unexpected error is logged and falls back to the queue.
    ``generation``: the row as the callback read it, for the log line's provider and task id.
    """
    if settings.HAILUO_CALLBACK_STATUS_READ != "inline":
        return "queued" if _queue(generation_id) else "final"
    started = time.monotonic()
    counts: dict[str, int] = {}
    slots = _inline_slots()
    if not slots.acquire(blocking=False):  # this process's inline reads are all busy: a flood of callbacks
        counts = {"busy": 1}
    else:
        try:
            with provider_timeouts_capped(settings.HAILUO_CALLBACK_READ_TIMEOUT):
                counts = services.generations_poll(ids=[generation_id])
        except Exception:  # the callback is still answered 200: the queue reads it instead
            log.exception("the status read of %s in its callback failed; queued instead", generation_id)
            counts = {"errors": 1}
        finally:
            slots.release()
    if counts.get("polled") and not counts.get("errors"):
        outcome = "read"
    elif _queue(generation_id):
        outcome = "queued"
    else:
        outcome = "final"
    _log(generation_id, "callback_read", generation=generation, state="",
         level=logging.INFO if outcome != "final" else logging.DEBUG, outcome=outcome,
         ms=round((time.monotonic() - started) * 1000, 1), errors=counts.get("errors", 0), busy=counts.get("busy", 0))
    return outcome


_SLOTS: list[threading.BoundedSemaphore] = []
_SLOTS_LOCK = threading.Lock()


def _inline_slots() -> threading.BoundedSemaphore:
    """At most ``HAILUO_CALLBACK_INLINE_READS`` inline reads at once in this process (the web
    server's threads stay free for pages during a flood of callbacks; the rest are queued)."""
    with _SLOTS_LOCK:
        if not _SLOTS:
            _SLOTS.append(threading.BoundedSemaphore(max(1, settings.HAILUO_CALLBACK_INLINE_READS)))
        return _SLOTS[0]


def _queue(generation_id) -> bool:
    """The queued read: due now for the next sweep, and a poll of it queued on django-q2; False (nothing
    queued) when the row is no longer in flight (submitted or running, or expired within its
    late-result grace)."""
    now = timezone.now()
    in_flight = Q(state__in=[State.SUBMITTED, State.RUNNING]) | Q(state=State.EXPIRED, late_poll_until__gt=now)
    if not Generation.objects.filter(in_flight, pk=generation_id).update(next_poll_at=now):
        return False
    services.enqueue_poll([generation_id])
    return True
