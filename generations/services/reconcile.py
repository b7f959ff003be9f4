"""Reconcile and cancel: the admin's two ways out of ``needs_reconciliation``, and a member's
cancel (locally before the submit, at the provider where it documents one).

Each is a conditional state move; a released hold is written in the same transaction
(ARCHITECTURE.md, "Reconciliation"; providers.md, qingbo's cancel).
"""

from __future__ import annotations

import asyncio

from django.db import transaction
from django.utils import timezone

from billing import services as billing_services
from generations.models import Generation, State
from generations.services.lifecycle import GenerationRefused, _timeouts, _transition
from providers.http import ProviderError, ProviderHttp, make_submit_client


# --- reconciliation (admin) ------------------------------------------------------------------------
def generation_reconcile_failed(*, generation_id, admin) -> bool:
    """needs_reconciliation → failed, releasing the hold (the admin found no task at the provider)."""
    generation = Generation.objects.get(pk=generation_id)
    with transaction.atomic():
        moved = _transition(
            generation_id, State.FAILED, generation=generation, message=f"Resolved by {admin}: no task at the provider; hold released",
            fail_code="reconciled", fail_message="No task was found at the provider", completed_at=timezone.now(),
        )
        if moved:
            billing_services.ledger_release(generation=generation, reason=f"reconciled by {admin}")
    return moved


def generation_reconcile_attach(*, generation_id, provider_task_id: str, admin) -> bool:
    """needs_reconciliation → submitted with the provider's task id (the admin found it); polling resumes."""
    with transaction.atomic():
        return _transition(
            generation_id, State.SUBMITTED, message=f"Resolved by {admin}: task {provider_task_id} attached",
            provider_task_id=provider_task_id.strip(), submitted_at=timezone.now(), next_poll_at=timezone.now(),
        )


# --- cancel ------------------------------------------------------------------------------------------------
def generation_cancel(*, generation_id, user) -> str:
    """Cancel a generation: before it was sent, locally; at the provider where it documents a
    cancel (qingbo, while queued). Returns the resulting state; releases the hold.

    Raises :class:`GenerationRefused` (``cannot_cancel``) when the provider documents no
    cancel, or refuses it (e.g. the task already started).
    """
    generation = Generation.objects.select_related("provider_account").get(pk=generation_id)
    if generation.state == State.QUEUED:
        with transaction.atomic():
            if _transition(generation.pk, State.CANCELED, generation=generation, message=f"Canceled by {user} before it was sent",
                           completed_at=timezone.now()):
                billing_services.ledger_release(generation=generation, reason="canceled before submit")
                return State.CANCELED
    generation.refresh_from_db()
    if generation.state not in (State.SUBMITTED, State.RUNNING):
        raise GenerationRefused("cannot_cancel", f"A {generation.get_state_display().lower()} generation cannot be canceled.")
    account = generation.provider_account
    if not account.adapter_cls.capabilities.cancel:
        raise GenerationRefused("cannot_cancel", f"{account.adapter_cls.label} documents no way to cancel a task.")

    async def go(adapter):
        async with make_submit_client() as client:
            await adapter.cancel(ProviderHttp(client, timeouts=_timeouts(), provider=adapter.label), task_id=generation.provider_task_id, model=generation.model)

    try:
        asyncio.run(go(account.adapter()))
    except ProviderError as exc:
        raise GenerationRefused("cannot_cancel", exc.message) from exc
    with transaction.atomic():
        if _transition(generation.pk, State.CANCELED, generation=generation, message=f"Canceled at the provider by {user}",
                       completed_at=timezone.now()):
            billing_services.ledger_release(generation=generation, reason="canceled")
    return Generation.objects.get(pk=generation.pk).state
