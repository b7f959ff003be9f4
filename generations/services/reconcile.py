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
from generations.models import ArchiveState, Generation, State
from generations.services.lifecycle import GenerationRefused, _event, _timeouts, _transition
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


def cancel_at_provider(generation: Generation) -> None:
    """Send the provider's documented cancel for ``generation``'s task with our own key
    (``capabilities.cancel``: qingbo's ``POST /v1/tasks/{id}/cancel``, providers.md "Cancel Task").

    Changes nothing here. Raises ``ProviderError`` (refused, e.g. the task already started;
    or a transport error) and ``ValueError`` (the stored key cannot be decrypted).
    """
    account = generation.provider_account

    async def go(adapter):
        async with make_submit_client() as client:
            http = ProviderHttp(client, timeouts=_timeouts(), provider=adapter.label)
            await adapter.cancel(http, task_id=generation.provider_task_id, model=generation.model)

    asyncio.run(go(account.adapter()))


def generation_credit_unsaved(*, generation_id, reason: str, admin):
    """Credit back the charge of a succeeded generation whose video could not be saved (staff).

    The capture stays (the provider billed us); a ``credit`` entry of ``charged_amount`` with
    the admin's ``reason`` gives it back to the member and their team (lowers committed
    spend). At most one credit per generation (checked under the generation's row lock).
    Returns the LedgerEntry. Raises ``ValueError`` (no reason; not succeeded with its archive
    failed; nothing charged; already credited).
    """
    from billing.models import LedgerEntry

    if not reason.strip():
        raise ValueError("a credit needs a reason")
    with transaction.atomic():
        generation = Generation.objects.select_for_update().get(pk=generation_id)
        if generation.state != State.SUCCEEDED or generation.archive_state != ArchiveState.FAILED:
            raise ValueError("only a succeeded generation whose video could not be saved can be credited here")
        if not generation.charged_amount:
            raise ValueError("nothing was charged")
        if LedgerEntry.objects.filter(generation=generation, kind=LedgerEntry.Kind.CREDIT).exists():
            raise ValueError("this generation was already credited")
        entry = billing_services.ledger_credit(
            user=generation.user, team=generation.team, generation=generation, amount=generation.charged_amount,
            reason=f"video could not be saved: {reason.strip()}", created_by=admin,
        )
        _event(generation.pk, "", f"Credited {entry.amount} USD by {admin}: {reason.strip()}")
    return entry


def reconciliation_open() -> list[Generation]:
    """Generations in ``needs_reconciliation``, oldest first, with ``age`` (a timedelta since
    they entered it) and ``at_risk`` (the held amount, USD) set on each."""
    now = timezone.now()
    rows = list(
        Generation.objects.filter(state=State.NEEDS_RECONCILIATION).select_related("user", "provider_account")
        .order_by("needs_reconciliation_at", "created_at")
    )
    for row in rows:
        row.age = now - (row.needs_reconciliation_at or row.updated_at or row.created_at)
        row.at_risk = row.quoted_amount
    return rows


def reconciliation_digest_send() -> int:
    """Email every active staff user (with an address) the list of open needs_reconciliation
    generations: age, amount at risk, provider, task id if reported, admin link. Nothing is sent
    when none are open. Sent through Django's email backend (``EMAIL_BACKEND``: console in the
    demo, SMTP in production); run once a day by the ``hailuo:reconciliation-digest`` schedule.
    Returns the number of generations listed.
    """
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.mail import send_mail
    from django.urls import reverse

    from billing.money import format_usd, money

    rows = reconciliation_open()
    recipients = list(get_user_model().objects.filter(is_staff=True, is_active=True).exclude(email="").values_list("email", flat=True))
    if not rows or not recipients:
        return 0
    total = money(sum((r.at_risk for r in rows), start=money(0)))
    base = settings.HAILUO_PUBLIC_BASE_URL
    lines = [f"{len(rows)} generation(s) need reconciliation; {format_usd(total)} held at risk.", ""]
    for r in rows:
        hours = r.age.total_seconds() / 3600
        reported = f", task reported by callback: {r.callback_task_id}" if r.callback_task_id else ""
        link = base + reverse("admin:generations_generation_change", args=[r.pk])
        lines.append(f"- {r.pk} · {r.provider_account} · {r.user} · open {hours:.1f} h · {format_usd(r.at_risk)} at risk"
                     f"{reported}\n  {r.reconciliation_note[:200]}\n  {link}")
    send_mail(
        subject=f"[Hailuo Studio] {len(rows)} generation(s) need reconciliation ({format_usd(total)} at risk)",
        message="\n".join(lines), from_email=None, recipient_list=recipients,
    )
    return len(rows)


# --- cancel ------------------------------------------------------------------------------------------------
def generation_cancel(*, generation_id, user) -> str:
    """Cancel a generation: before it was sent, locally; at the provider where it documents a
    cancel (qingbo, while queued). Returns the resulting state; releases the hold.

    Raises :class:`GenerationRefused` (``cannot_cancel``) when the provider documents no
    cancel, or refuses it (e.g. the task already started).
    """
    generation = Generation.objects.select_related("provider_account").get(pk=generation_id)
    if generation.state in (State.QUEUED, State.PENDING_APPROVAL):  # not sent yet (or still waiting for approval)
        with transaction.atomic():
            if _transition(generation.pk, State.CANCELED, generation=generation, message=f"Canceled by {user} before it was sent",
                           from_states={generation.state}, completed_at=timezone.now()):
                billing_services.ledger_release(generation=generation, reason="canceled before submit")
                return State.CANCELED
    generation.refresh_from_db()
    if generation.state not in (State.SUBMITTED, State.RUNNING):
        raise GenerationRefused("cannot_cancel", f"A {generation.get_state_display().lower()} generation cannot be canceled.")
    account = generation.provider_account
    if not account.adapter_cls.capabilities.cancel:
        raise GenerationRefused("cannot_cancel", f"{account.adapter_cls.label} documents no way to cancel a task.")
    try:
        cancel_at_provider(generation)
    except ProviderError as exc:
        raise GenerationRefused("cannot_cancel", exc.message) from exc
    with transaction.atomic():
        if _transition(generation.pk, State.CANCELED, generation=generation, message=f"Canceled at the provider by {user}",
                       completed_at=timezone.now()):
            billing_services.ledger_release(generation=generation, reason="canceled")
    return Generation.objects.get(pk=generation.pk).state
