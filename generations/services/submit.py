"""Submit: send a queued generation to its provider exactly once, with failover and the
account's 429 pause.

The row is claimed (``queued`` → ``submitting``) before anything is sent, and the task id is
stored as soon as the provider answers; a request that may have arrived is never resent
(ARCHITECTURE.md, "The lifecycle" and "Errors"; providers.md, "What follows for every adapter").
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from billing import services as billing_services
from generations import services  # the queue is called through the package (see its docstring)
from generations.models import Generation, State
from generations.services.callbacks import _callback_url, _hash_token, callback_secret
from generations.services.lifecycle import _event, _log, _pause_account, _time_scale, _timeouts, _transition
from providers.base import GenerationRequest
from providers.http import ProviderError, ProviderHttp, Sent, make_submit_client
from providers.models import ProviderAccount

log = logging.getLogger(__name__)


def generation_submit(*, generation_id) -> str:
    """Send a queued generation to its provider. Returns the state it ends in.

    Claims the row (``queued`` → ``submitting``) so only one worker ever sends it. Outcomes:
    accepted → ``submitted`` with the task id; permanent error → ``failed`` and the hold
    released; error before the request left (connection refused, 429, 5xx) → back to
    ``queued`` with a backoff, up to ``HAILUO_SUBMIT_MAX_ATTEMPTS``; the request may have
    arrived (read timeout, dropped connection, unexpected error) → ``needs_reconciliation``,
    never resent automatically.
    """
    now = timezone.now()
    paused_until = (
        ProviderAccount.objects.filter(generations__pk=generation_id, paused_until__gt=now)
        .values_list("paused_until", flat=True)
        .first()
    )
    if paused_until is not None:  # the account is in a provider's Retry-After: wait, no attempt counted
        Generation.objects.filter(pk=generation_id, state=State.QUEUED).update(next_submit_at=paused_until, updated_at=now)
        return Generation.objects.filter(pk=generation_id).values_list("state", flat=True).first() or "missing"
    token = secrets.token_urlsafe(24)
    claimed = Generation.objects.filter(
        Q(next_submit_at__isnull=True) | Q(next_submit_at__lte=now), pk=generation_id, state=State.QUEUED
    ).update(
        state=State.SUBMITTING,
        submit_attempts=F("submit_attempts") + 1,
        callback_token_hash=_hash_token(token),
        updated_at=now,
    )
    if not claimed:
        return Generation.objects.filter(pk=generation_id).values_list("state", flat=True).first() or "missing"
    generation = Generation.objects.select_related("provider_account__fallback").get(pk=generation_id)
    account = generation.provider_account
    if account.down or not account.enabled:
        if _failover(generation, f"{account} is marked down or disabled"):
            return State.QUEUED
        return _submit_failed(
            generation, ProviderError(f"{account} is marked down or disabled", code="account_down", permanent=True, sent=Sent.NO)
        )
    _event(generation.pk, State.SUBMITTING, f"Submit attempt {generation.submit_attempts}")
    _log(generation.pk, "submit", generation=generation, attempt=generation.submit_attempts)
    request = GenerationRequest(
        model=generation.model,
        mode=generation.mode,
        prompt=generation.prompt,
        duration=generation.duration,
        resolution=generation.resolution,
        image_url=generation.image_url,
        options=generation.options,
    )
    try:
        adapter = account.adapter()
    except ValueError as exc:  # the stored key cannot be decrypted: nothing was sent
        return _submit_failed(generation, ProviderError(str(exc), code="key_unreadable", permanent=True, sent=Sent.NO))
    try:
        result = asyncio.run(_submit(adapter, request, _callback_url(generation, token), callback_secret(generation.pk)))
    except ProviderError as exc:
        return _submit_failed(generation, exc)
    except Exception as exc:  # a bug after the request may have left: never resend blindly
        log.exception("unexpected error submitting %s", generation.pk)
        _needs_reconciliation(
            generation.pk,
            generation=generation,
            message="Unexpected error during submit; the provider may have received it",
            data={"error": repr(exc)},
            reconciliation_note=f"Unexpected error during submit: {exc!r}",
        )
        return State.NEEDS_RECONCILIATION
    cadence = adapter.poll_cadence(request)
    with transaction.atomic():
        moved = _transition(
            generation.pk,
            State.SUBMITTED,
            generation=generation,
            message=f"Accepted by {account.get_kind_display()}: task {result.task_id}",
            provider_task_id=result.task_id,
            submitted_at=timezone.now(),
            next_poll_at=timezone.now() + timedelta(seconds=cadence.first_delay * _time_scale()),
            poll_interval=cadence.interval,
        )
    _check_agreement(generation.pk, result.task_id, moved=moved)
    if moved:
        return State.SUBMITTED
    return Generation.objects.filter(pk=generation.pk).values_list("state", flat=True).first()


def _check_agreement(generation_id, task_id: str, *, moved: bool) -> None:
    """The submit's own answer is the authority on the task id: note when a callback named
    another one, or when the answer came after the generation was resolved another way (a
    callback's task id checked with our key, or an admin) and names another task."""
    row = Generation.objects.filter(pk=generation_id).values("provider_task_id", "callback_task_id").first()
    if row is None:
        return
    if moved and row["callback_task_id"] and row["callback_task_id"] != task_id:
        _event(generation_id, "", f"A callback had named task {row['callback_task_id']}; the submit's answer, "
               f"task {task_id}, is the one kept")
        log.warning("generation %s: callback named task %s, submit answered %s", generation_id, row["callback_task_id"], task_id)
    elif not moved:
        agrees = row["provider_task_id"] == task_id
        _event(generation_id, "", f"The submit's late answer names task {task_id}: "
               + ("it agrees with the task already attached" if agrees else f"it DISAGREES with {row['provider_task_id'] or 'no task'}"))
        if not agrees:
            log.error("generation %s: submit answered task %s, but %r is attached", generation_id, task_id, row["provider_task_id"])


def _needs_reconciliation(generation_id, **kwargs) -> None:
    """Move a maybe-sent submit to needs_reconciliation; if a callback already named its task,
    check it at once (``poll.generations_resolve_reported``, woken by a poll)."""
    with transaction.atomic():
        if _transition(generation_id, State.NEEDS_RECONCILIATION, next_poll_at=timezone.now(), **kwargs) and (
            Generation.objects.filter(pk=generation_id).exclude(callback_task_id="").exists()
        ):
            transaction.on_commit(lambda: services.enqueue_poll([generation_id]))


async def _submit(adapter, request, callback_url, secret):
    async with make_submit_client() as client:
        http = ProviderHttp(client, timeouts=_timeouts(), provider=adapter.label)
        return await adapter.submit(http, request, callback_url=callback_url, callback_secret=secret if callback_url else "")


def _failover(generation: Generation, reason: str) -> bool:
    """Move a generation that was never created at the provider to its account's fallback, once.

    Only to an enabled account of the same provider (it offers the same models), and only
    when the first account answered 402 (no balance) or is marked down: the request cannot
    have created a task, so sending it elsewhere is no double submit.
    """
    account = generation.provider_account
    fallback = account.fallback
    if generation.fallback_from_id or fallback is None or not fallback.enabled or fallback.kind != account.kind:
        return False
    with transaction.atomic():
        moved = _transition(
            generation.pk, State.QUEUED, generation=generation,
            message=f"{reason}: failover from {account} to {fallback}",
            provider_account=fallback, fallback_from=account, next_submit_at=None,
        )
        if moved:
            transaction.on_commit(lambda: services.enqueue_submit(generation.pk))
    return moved


def _may_have_created_a_task(exc: ProviderError) -> bool:
    """True when a failed submit may still have created a task at the provider (so: never resend).

    Either the request may have arrived (``Sent.MAYBE``: read timeout, connection dropped), or
    the provider answered 2xx without a documented error but we could not read a task id from
    it (not JSON, truncated, no id): a 2xx means it took the request. A documented error under
    HTTP 200 (APIXO's body ``code``, MiniMax's ``base_resp.status_code``) carries the provider's
    own code, which differs from the HTTP status, and is a definite refusal.
    """
    if exc.sent == Sent.MAYBE:
        return True
    status = exc.http_status or 0
    return 200 <= status < 300 and exc.code == str(status)


def _submit_failed(generation: Generation, exc: ProviderError) -> str:
    evidence = {"code": exc.code, "http_status": exc.http_status, "message": exc.message, "sent": exc.sent}
    if exc.http_status == 402 and _failover(generation, f"{generation.provider_account} has no balance (402)"):
        return State.QUEUED
    if _may_have_created_a_task(exc):
        _needs_reconciliation(
            generation.pk,
            generation=generation,
            message="The submit may have reached the provider; not resent",
            data=evidence,
            reconciliation_note=exc.message,
        )
        return State.NEEDS_RECONCILIATION
    if exc.permanent or generation.submit_attempts >= settings.HAILUO_SUBMIT_MAX_ATTEMPTS:
        message = exc.message if exc.permanent else f"{exc.message} (gave up after {generation.submit_attempts} attempts)"
        with transaction.atomic():
            if _transition(
                generation.pk, State.FAILED, generation=generation, message=message, data=evidence,
                fail_code=exc.code, fail_message=message, completed_at=timezone.now(),
            ):
                billing_services.ledger_release(generation=generation, reason=f"submit failed: {exc.code}")
        return State.FAILED
    delay = exc.retry_after if exc.retry_after is not None else min(2 ** generation.submit_attempts, 300)
    if exc.http_status == 429:
        _pause_account(generation.provider_account_id, exc.retry_after)
    with transaction.atomic():
        _transition(
            generation.pk,
            State.QUEUED,
            generation=generation,
            message=f"Will retry in {delay:g} s: {exc.message}",
            data=evidence,
            next_submit_at=timezone.now() + timedelta(seconds=delay),
        )
    return State.QUEUED
