"""Resolving a task id a callback reported before we knew our own (the submit's answer pending
or lost): read that task's status with our own key, then move the generation through the normal
conditional transitions (issue "Budgets nobody can slip past", late results). Run first in every
``poll.generations_poll``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from datetime import datetime, timedelta

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from generations import services
from generations.models import Generation, State
from generations.services.lifecycle import _event, _pause_account, _time_scale, _timeouts, _transition
from generations.services.poll import poll_lease_seconds
from providers.base import TaskUpdate
from providers.http import ProviderError, ProviderHttp, make_poll_client

log = logging.getLogger(__name__)


def _resolvable(*, ids: list | None, now: datetime):
    """needs_reconciliation rows with a task id reported by a callback, no own task id, no live lease;
    exactly ``ids`` (due or not) or the due ones."""
    rows = Generation.objects.filter(
        Q(poll_lease_until__isnull=True) | Q(poll_lease_until__lt=now),
        state=State.NEEDS_RECONCILIATION, provider_task_id="",
    ).exclude(callback_task_id="")
    return rows.filter(pk__in=ids) if ids is not None else rows.filter(Q(next_poll_at__isnull=True) | Q(next_poll_at__lte=now))


def generations_resolve_reported(*, ids: list | None = None, limit: int = 100) -> dict[str, int]:
    """Resolve needs_reconciliation generations whose task id a callback reported, with no admin.

    The callback's word is never trusted: its task id is read with our own key
    (``fetch_status``, the provider's status endpoint). A task our key can read, and that no
    other generation holds, is attached (``needs_reconciliation → submitted``) and the answer
    applied at once (running, succeeded + capture, failed + release) through the ordinary
    conditional transitions; the poll engine carries on from there. A task the provider does
    not know (HTTP 404) is dropped, leaving the generation for an admin; any other error is
    retried later. Each row is leased like a poll, so two sweeps never read it twice at once.
    Returns counts, e.g. ``{"resolved": 1, "unknown_task": 0, "errors": 0}``.
    """
    counts: dict[str, int] = defaultdict(int)
    now = timezone.now()
    lease = now + timedelta(seconds=poll_lease_seconds())
    for generation in list(_resolvable(ids=ids, now=now).select_related("provider_account")[:limit]):
        if not _resolvable(ids=[generation.pk], now=now).update(poll_lease_until=lease):
            continue  # another sweep has it
        task_id = generation.callback_task_id
        account = generation.provider_account
        try:
            update = asyncio.run(_fetch_one(account.adapter(), task_id=task_id, model=generation.model))
        except (ProviderError, ValueError) as exc:
            if isinstance(exc, ProviderError) and exc.http_status == 429:
                _pause_account(account.pk, exc.retry_after)
            if isinstance(exc, ProviderError) and exc.http_status == 404:
                Generation.objects.filter(pk=generation.pk).update(callback_task_id="", poll_lease_until=None)
                _event(generation.pk, "", f"The provider does not know task {task_id} under our key; "
                       "the callback's task id is ignored (an admin resolves it)")
                counts["unknown_task"] += 1
            else:
                Generation.objects.filter(pk=generation.pk).update(
                    poll_lease_until=None, next_poll_at=timezone.now() + timedelta(seconds=60 * max(_time_scale(), 0.01))
                )
                log.warning("checking reported task %s of %s failed: %r", task_id, generation.pk, exc)
                counts["errors"] += 1
            continue
        try:
            with transaction.atomic():
                moved = _transition(
                    generation.pk, State.SUBMITTED,
                    message=f"Resolved automatically: task {task_id}, named by the provider's callback, "
                            f"confirmed by our own status read ({update.provider_state})",
                    from_states={State.NEEDS_RECONCILIATION},
                    provider_task_id=task_id, submitted_at=timezone.now(), next_poll_at=timezone.now(),
                    poll_lease_until=None,
                )
        except IntegrityError:  # another generation holds this task: not ours to take
            Generation.objects.filter(pk=generation.pk).update(callback_task_id="", poll_lease_until=None)
            _event(generation.pk, "", f"Task {task_id} belongs to another generation; the callback's task id is ignored")
            counts["unknown_task"] += 1
            continue
        if moved:
            services.generation_apply_update(generation_id=generation.pk, update=update)
            counts["resolved"] += 1
    return dict(counts)


async def _fetch_one(adapter, *, task_id: str, model: str) -> TaskUpdate:
    async with make_poll_client(max_connections=1) as client:
        http = ProviderHttp(client, timeouts=_timeouts(), provider=adapter.label)
        return await adapter.fetch_status(http, task_id=task_id, model=model)
