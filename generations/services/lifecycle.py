"""The primitives every lifecycle step uses: the conditional state move, the timeline event,
the refusal error, the time scale, provider timeouts and the account's 429 pause.

Every state change is a conditional UPDATE from the states it may come from
(``models.ALLOWED_FROM``), so a late or duplicate update changes nothing (ARCHITECTURE.md,
"The lifecycle"). Every move that happens, and every submit, poll answer, callback and
archive attempt, is one line on the ``hailuo.lifecycle`` logger (:func:`_log`, built from
what the caller has at hand: no query is added for it).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from config import hotsql
from config.errors import DomainError
from config.logging import log_step
from generations.models import ALLOWED_FROM, Generation, GenerationEvent
from providers.http import Timeouts
from providers.models import ProviderAccount


class GenerationRefused(DomainError):
    """A create request refused before any money moved.

    ``code`` is a stable machine code (``validation_error``, ``budget_exceeded``,
    ``budget_not_allowed``, ``no_price_rule``, ``provider_unavailable``,
    ``idempotency_conflict``); ``fields`` maps a form field to its messages; ``status`` is
    the HTTP status the API answers with (``STATUS_BY_CODE``, else 422).
    """

    status = 422
    STATUS_BY_CODE = {
        "validation_error": 422,
        "no_price_rule": 422,
        "provider_unavailable": 422,
        "budget_exceeded": 402,
        "budget_not_allowed": 403,
        "idempotency_conflict": 409,
    }


def _time_scale() -> float:
    return max(float(settings.HAILUO_POLL_TIME_SCALE), 0.0)


def _event(generation_id, state: str = "", message: str = "", data: dict | None = None) -> None:
    hotsql.create(GenerationEvent, generation_id=generation_id, state=state, message=message, data=data)


def _log(generation_id, step: str, *, generation: Any = None, level: int = logging.INFO, **extra: Any) -> None:
    """One ``hailuo.lifecycle`` line (``config.logging.log_step``) for ``generation_id``.

    ``generation``: the row (or anything with ``provider_kind``, ``provider_task_id``,
    ``state``) as the caller already holds it, or None when it only has the id: the line then
    carries what ``extra`` gives (``state=``, ``task_id=``, ``provider=``). Never queries.
    """
    log_step(generation, step, level=level, generation_id=str(generation_id), **extra)


def _transition(
    generation_id, to: str, *, message: str = "", data: dict | None = None, from_states=None, generation: Any = None, **fields
) -> bool:
    """Move a generation to ``to`` if it is in a state allowed to move there. Returns True if it moved.

    ``from_states``: a subset of ``ALLOWED_FROM[to]`` to move from (e.g. only ``expired`` for a
    late success). Entering ``needs_reconciliation`` stamps ``needs_reconciliation_at`` (its age in admin,
    on the reconciliation page and in the staff's daily email). ``fields``: other columns written
    by the same UPDATE. ``generation``: the row as the caller holds it (or None), for the
    lifecycle log line of a move (step ``state``: the new state, the provider and the task id, a
    task id in ``fields`` winning); no query is added.
    """
    if to == "needs_reconciliation":
        fields.setdefault("needs_reconciliation_at", timezone.now())
    allowed = ALLOWED_FROM[to] if from_states is None else ALLOWED_FROM[to] & frozenset(from_states)
    moved = Generation.objects.filter(pk=generation_id, state__in=allowed).update(
        state=to, updated_at=timezone.now(), **fields
    )
    if moved:
        _event(generation_id, to, message, data)
        task_id = fields.get("provider_task_id") or getattr(generation, "provider_task_id", "")
        _log(generation_id, "state", generation=generation, state=str(to), task_id=str(task_id or ""))
    return bool(moved)


#: A cap on the provider timeouts of the calls made in this context (None: the settings' own).
_TIMEOUT_CAP: contextvars.ContextVar[float | None] = contextvars.ContextVar("hailuo_provider_timeout_cap", default=None)


def _timeouts() -> Timeouts:
    connect, read = settings.HAILUO_PROVIDER_CONNECT_TIMEOUT, settings.HAILUO_PROVIDER_READ_TIMEOUT
    cap = _TIMEOUT_CAP.get()
    if cap is not None:
        connect, read = min(connect, cap), min(read, cap)
    return Timeouts(connect=connect, read=read)


@contextlib.contextmanager
def provider_timeouts_capped(seconds: float) -> Iterator[None]:
    """Inside this block (this thread or task, and the asyncio tasks it starts) provider calls use
    connect and read timeouts of at most ``seconds`` each (a callback's status read, which runs in
    the provider's request and must not hold it for a minute)."""
    token = _TIMEOUT_CAP.set(seconds)
    try:
        yield
    finally:
        _TIMEOUT_CAP.reset(token)


def _pause_account(account_id: int, retry_after: float | None) -> datetime:
    """A 429 is about the key, not one request: pause the whole account's submits and polls.

    For ``retry_after`` seconds (the provider's Retry-After), 5 s when it gave none; an
    existing longer pause is kept. Returns the end of the pause.
    """
    until = timezone.now() + timedelta(seconds=retry_after if retry_after is not None else 5.0)
    ProviderAccount.objects.filter(pk=account_id).filter(Q(paused_until__isnull=True) | Q(paused_until__lt=until)).update(
        paused_until=until
    )
    return until
