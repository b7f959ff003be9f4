"""Handing work to the django-q2 workers (beside ``generations/tasks.py``, the entry points they run).

The ``enqueue_*`` functions queue one task each; the sweep's hand-overs
(:func:`submits_enqueue_due`, :func:`archives_enqueue_due`) claim due work before enqueueing
it, so no other sweep hands it over again; the sweep slots (``SweepLease``) bound how many
poll sweeps run at once. ``generations.services`` re-exports all of them, and the lifecycle
steps call the ``enqueue_*`` functions through that package, so replacing
``services.enqueue_submit`` (the tests' recorded queue) replaces it everywhere.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from generations.broker import enqueue_task
from generations.models import ArchiveState, Generation, State, SweepLease


# --- one task each ------------------------------------------------------------------------------
def enqueue_submit(generation_id) -> None:
    """Queue the submit of a generation on django-q2."""
    enqueue_task("generations.tasks.submit_generation", str(generation_id), task_name=f"submit {generation_id}"[:100])


def enqueue_poll(generation_ids: list) -> None:
    """Queue an immediate poll of these generations on django-q2 (a callback's wake-up)."""
    enqueue_task("generations.tasks.poll_generations", [str(g) for g in generation_ids], task_name="poll now")


def enqueue_archive(generation_id, attempt: int | None = None) -> None:
    """Queue the download of a succeeded generation's video (``attempt``: already claimed, see generation_archive)."""
    enqueue_task(
        "generations.tasks.archive_generation", str(generation_id), attempt, task_name=f"archive {generation_id}"[:100]
    )


# --- the sweep's hand-overs -------------------------------------------------------------------
#: A queued generation handed to the workers whose submit has not started after this many
#: seconds (its django-q2 task was lost: a broker wiped, a cluster killed) is handed over again.
#: Harmless if it was merely slow: the submit claims the row, so only one worker ever sends it.
SUBMIT_REQUEUE_AFTER = 600


def submits_enqueue_due() -> int:
    """Hand queued generations whose retry time has come to the workers; returns how many.

    Also those whose first hand-over looks lost (queued, no retry time, untouched for
    ``SUBMIT_REQUEUE_AFTER`` s). Skips accounts in a 429 pause. Each is marked handed over
    (no retry time) before it is enqueued, so the next sweep does not enqueue it again. The
    sweep never submits inline: one slow provider must not hold up every poll.
    """
    from generations import services  # imported here: the services package re-exports this module

    now = timezone.now()
    with transaction.atomic():
        ids = list(
            Generation.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(state=State.QUEUED)
            .filter(
                Q(next_submit_at__lte=now)
                | Q(next_submit_at__isnull=True, updated_at__lt=now - timedelta(seconds=SUBMIT_REQUEUE_AFTER))
            )
            .exclude(provider_account__paused_until__gt=now)
            .values_list("pk", flat=True)[:500]
        )
        if ids:
            Generation.objects.filter(pk__in=ids).update(next_submit_at=None, updated_at=now)
    for generation_id in ids:
        services.enqueue_submit(generation_id)
    return len(ids)


def archives_enqueue_due() -> int:
    """Claim the downloads whose retry time has come and hand each to a worker; returns how many.

    Each claim counts the attempt and leases it (``services.archive._archive_lease``) before it is
    enqueued with its attempt number, so no other worker or sweep starts it meanwhile. The
    sweep never downloads inline: one slow download must not hold up every poll.
    """
    from generations import services  # imported here: the services package re-exports this module
    from generations.services.archive import _archive_lease

    now = timezone.now()
    with transaction.atomic():
        due = list(
            Generation.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(state=State.SUCCEEDED, archive_state=ArchiveState.PENDING, next_archive_at__lte=now)
            .values_list("pk", "archive_attempts")[:100]
        )
        if due:
            Generation.objects.filter(pk__in=[pk for pk, _ in due]).update(
                archive_attempts=F("archive_attempts") + 1, next_archive_at=_archive_lease()
            )
    for generation_id, attempts in due:
        services.enqueue_archive(generation_id, attempt=attempts + 1)
    return len(due)


# --- sweep slots ---------------------------------------------------------------------------------------------
def sweep_slot_claim(*, seconds: float) -> tuple[int, str] | None:
    """Claim a free poll-sweep slot for ``seconds``; returns ``(slot, holder token)`` or None when all are taken."""
    now = timezone.now()
    holder = secrets.token_hex(8)
    for slot in range(max(1, settings.HAILUO_POLL_SWEEPERS)):
        SweepLease.objects.get_or_create(slot=slot, defaults={"expires_at": now - timedelta(seconds=1)})
        claimed = SweepLease.objects.filter(slot=slot, expires_at__lte=now).update(
            holder=holder, expires_at=now + timedelta(seconds=seconds)
        )
        if claimed:
            return slot, holder
    return None


def sweep_slot_release(*, slot: tuple[int, str]) -> None:
    """Free a slot claimed by :func:`sweep_slot_claim` (only if still ours)."""
    number, holder = slot
    SweepLease.objects.filter(slot=number, holder=holder).update(expires_at=timezone.now(), holder="")
