"""Approvals: a team's rule holds back matching submits until one of the team's admins decides.

- :func:`approval_or_submit` is the one call ``generations.services.create`` makes after the
  hold, inside the create transaction: a submit the rule matches moves ``queued`` →
  ``pending_approval`` (the hold stays: the money is reserved and every budget counts it) and
  the team's admins are emailed; anything else has its submit enqueued on commit, as before.
- :func:`approve`: ``pending_approval`` → ``queued`` by one conditional UPDATE
  (``generations.services.lifecycle._transition``), then the submit is enqueued on commit:
  a double click or two admins at once move it once and send one provider request.
- :func:`reject`: ``pending_approval`` → ``rejected`` (a final state) with the reason in
  ``fail_message`` (``fail_code`` ``approval_rejected``) and the hold released with the reason
  in the ledger, in one transaction: never charged.
- :func:`expire_pending` (schedule ``hailuo:approvals-expire``, hourly): a request nobody
  decided within ``HAILUO_APPROVAL_TTL`` seconds is rejected the same way (``approval_expired``).

Who decides: the admins of the generation's team (``Membership.Role.TEAM_ADMIN``) and staff
(:func:`may_decide`). Whoever may decide a request does not wait for themselves: a team
admin's own submit booked to their team skips the rule (they would approve it anyway), so
"approving one's own request" only happens for a request made before its author became
admin, and is allowed then.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import Subquery
from django.urls import reverse
from django.utils import timezone

from accounts.models import Membership, User
from approvals.models import ApprovalRequest, ApprovalRule
from billing import services as billing_services
from billing.config_cache import approval_rule
from billing.money import format_usd
from config.errors import DomainError, Forbidden, NotFound
from generations import services as generation_services  # enqueue_submit looked up there (tests swap it)
from generations.models import Generation, State
from generations.services.lifecycle import _log, _transition
from teamwork.notifications import notify_member

log = logging.getLogger(__name__)

#: ``Generation.fail_code`` of a request a team admin rejected / nobody decided in time.
REJECTED_CODE = "approval_rejected"
EXPIRED_CODE = "approval_expired"
#: Longest rejection reason kept.
REASON_MAX = 1000


# --- the rule --------------------------------------------------------------------------
def _decides_for_team(user, team_id) -> bool:
    if user.is_staff:
        return True
    if team_id is None:
        return False
    return Membership.objects.filter(user=user, team_id=team_id, role=Membership.Role.TEAM_ADMIN).exists()


def may_decide(*, user, generation: Generation) -> bool:
    """True when ``user`` may approve or reject ``generation``: staff, or an admin of its team. One query at most."""
    return _decides_for_team(user, generation.team_id)


def reasons_for_submit(*, user, team_id, amount: Decimal, resolution: str, model: str, primary: bool = False) -> list[str]:
    """Why a submit by ``user`` booked to team ``team_id`` of ``amount`` USD at ``resolution``
    with ``model`` would wait for approval ([] when it would not: no team, no rule, no condition
    matching, or ``user`` may decide it themselves; see the module docstring). ``team_id=None``
    with ``primary=True``: the user's primary team (their first membership's), as the studio
    books it. At most one query (none for a team whose rule the process has cached:
    ``billing.config_cache.approval_rule``), a second only when a condition matches. The studio's price row shows
    these before the member submits."""
    if team_id is not None:
        rule = approval_rule(team_id)  # cached per process, dropped when any rule changes
    elif primary:
        first = Membership.objects.filter(user=user).order_by("id").values("team_id")[:1]
        rule = ApprovalRule.objects.filter(team_id=Subquery(first)).first()
    else:
        return []
    if rule is None or rule.is_empty:
        return []
    reasons = rule.reasons_for(amount=amount, resolution=resolution, model=model)
    if reasons and _decides_for_team(user, rule.team_id):
        return []
    return reasons


def reasons_needing_approval(generation: Generation) -> list[str]:
    """:func:`reasons_for_submit` for a generation just created (its quote, resolution, model, team)."""
    return reasons_for_submit(
        user=generation.user, team_id=generation.team_id, amount=generation.quoted_amount,
        resolution=generation.resolution, model=generation.model,
    )


def approval_or_submit(generation: Generation) -> bool:
    """After the hold, inside the create transaction: wait for approval, or submit.

    Returns True when ``generation`` now waits in ``pending_approval`` (its
    :class:`ApprovalRequest` written, the team's admins emailed on commit; ``generation.state``
    updated in memory too), False when its submit was enqueued on commit (no rule matched).
    """
    reasons = reasons_needing_approval(generation)
    if not reasons:
        transaction.on_commit(lambda: generation_services.enqueue_submit(generation.pk))
        return False
    now = timezone.now()
    moved = _transition(
        generation.pk, State.PENDING_APPROVAL, from_states={State.QUEUED}, generation=generation,
        message="Waits for a team admin's approval: " + "; ".join(reasons), data={"reasons": reasons},
    )
    if not moved:  # cannot happen inside the create transaction; never submit what the rule holds back
        raise RuntimeError(f"generation {generation.pk} left queued before its approval was asked")
    request = ApprovalRequest.objects.create(
        generation=generation, team_id=generation.team_id, reasons=reasons, requested_at=now,
        expires_at=now + timedelta(seconds=settings.HAILUO_APPROVAL_TTL),
    )
    generation.state = State.PENDING_APPROVAL
    transaction.on_commit(lambda: notify_admins_of_request(generation, request))
    return True


# --- deciding ----------------------------------------------------------------------------
def decidable(*, user, generation_id) -> Generation:
    """The generation ``user`` wants to decide on. Raises :class:`NotFound` (404) when they may
    not see it (another team's: never 403, its existence is not revealed; staff see all) and
    :class:`Forbidden` (403 ``forbidden``) when they see it but may not decide (a member)."""
    from generations.selectors import generation_for

    if user.is_staff:
        generation = Generation.objects.select_related("user", "provider_account", "team").filter(pk=generation_id).first()
    else:
        generation = generation_for(user=user, generation_id=generation_id)
    if generation is None:
        raise NotFound("No such generation.")
    if not may_decide(user=user, generation=generation):
        raise Forbidden("Only an admin of the generation's team may approve or reject it.")
    return generation


def _not_pending(generation_id) -> DomainError:
    state = Generation.objects.filter(pk=generation_id).values_list("state", flat=True).first()
    label = State(state).label.lower() if state in State.values else "missing"
    return DomainError("not_pending", f"This request no longer waits for approval (it is {label}).", status=409)


def approve(*, actor, generation: Generation) -> Generation:
    """Approve ``generation`` (call :func:`decidable` first): ``pending_approval`` → ``queued``
    and its submit enqueued on commit, exactly once (a conditional UPDATE: a second approve,
    a double click or a race with a rejection finds it no longer pending). The member is
    emailed (:func:`notify_member_of_decision`). Returns it refreshed.

    Raises :class:`DomainError` ``not_pending`` (409) when it does not wait for approval.
    """
    now = timezone.now()
    with transaction.atomic():
        if not _transition(
            generation.pk, State.QUEUED, from_states={State.PENDING_APPROVAL}, generation=generation,
            message=f"Approved by {actor.email}; sent to the provider next", data={"decided_by": actor.pk},
            next_submit_at=None,
        ):
            raise _not_pending(generation.pk)
        ApprovalRequest.objects.filter(generation=generation).update(
            decision=ApprovalRequest.Decision.APPROVED, decided_by=actor, decided_at=now
        )
        gid = generation.pk
        transaction.on_commit(lambda: generation_services.enqueue_submit(gid))
        transaction.on_commit(lambda: notify_member_of_decision(gid))
    _log(generation.pk, "approved", generation=generation, decided_by=actor.pk)
    generation.refresh_from_db()
    return generation


def _close(generation: Generation, *, code: str, message: str, event: str, ledger_reason: str,
           decision: str, actor=None, now: datetime | None = None) -> bool:
    """``pending_approval`` → ``rejected`` with ``message`` for the member and the hold released
    (one transaction, the caller's). False when it was no longer pending (nothing written)."""
    now = now or timezone.now()
    if not _transition(
        generation.pk, State.REJECTED, from_states={State.PENDING_APPROVAL}, generation=generation, message=event,
        data={"decided_by": getattr(actor, "pk", None), "reason": message},
        fail_code=code, fail_message=message, completed_at=now,
    ):
        return False
    billing_services.ledger_release(generation=generation, reason=ledger_reason)
    ApprovalRequest.objects.filter(generation=generation).update(
        decision=decision, decided_by=actor, decided_at=now, reason=message
    )
    gid = generation.pk
    transaction.on_commit(lambda: notify_member_of_decision(gid))
    return True


def reject(*, actor, generation: Generation, reason: str) -> Generation:
    """Reject ``generation`` (call :func:`decidable` first) with ``reason`` (required, shown to
    the member on the card and the detail page, kept in the ledger's release): ``rejected``, the
    hold released exactly once, nothing charged; the member is emailed. Returns it refreshed.

    Raises :class:`DomainError` ``validation_error`` (422) without a reason and ``not_pending``
    (409) when it does not wait for approval.
    """
    reason = " ".join((reason or "").split())[:REASON_MAX]
    if not reason:
        raise DomainError("validation_error", "A rejection needs a reason.", {"reason": ["Say why (the member sees it)."]}, status=422)
    with transaction.atomic():
        if not _close(
            generation, code=REJECTED_CODE, message=reason, event=f"Rejected by {actor.email}: {reason}",
            ledger_reason=f"rejected by {actor.email}: {reason}", decision=ApprovalRequest.Decision.REJECTED, actor=actor,
        ):
            raise _not_pending(generation.pk)
    _log(generation.pk, "rejected", generation=generation, decided_by=actor.pk)
    generation.refresh_from_db()
    return generation


def expire_pending(*, now: datetime | None = None) -> int:
    """Reject every request that has waited past its ``expires_at`` (``HAILUO_APPROVAL_TTL``
    after it was made): hold released, member emailed. Returns how many. Safe to run twice at once."""
    now = now or timezone.now()
    count = 0
    due = Generation.objects.filter(state=State.PENDING_APPROVAL, approval_request__expires_at__lte=now)
    for generation in due.select_related("approval_request"):
        days = settings.HAILUO_APPROVAL_TTL / 86400
        text = f"No team admin decided within {days:g} days; nothing was charged."
        with transaction.atomic():
            if _close(
                generation, code=EXPIRED_CODE, message=text, event=text, ledger_reason="approval expired: nobody decided in time",
                decision=ApprovalRequest.Decision.EXPIRED, now=now,
            ):
                count += 1
    return count


# --- email -------------------------------------------------------------------------------
def _link(path: str) -> str:
    return (settings.HAILUO_PUBLIC_BASE_URL or "") + path


def _summary(generation: Generation) -> str:
    return (
        f"Prompt: {generation.prompt}\n"
        f"Member: {generation.user.email}\n"
        f"{generation.provider_kind} · {generation.model} · {generation.mode} · {generation.duration} s · {generation.resolution}\n"
        f"Price: {format_usd(generation.quoted_amount)} (held until decided)\n"
    )


def _send(subject: str, body: str, recipients: list[str]) -> None:
    """Send one email; a mail server failure is logged, never raised (the decision stands)."""
    if not recipients:
        return
    try:
        send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, recipients, fail_silently=False)
    except Exception:
        log.exception("approvals: email %r could not be sent", subject)


def admin_emails(team_id) -> list[str]:
    """Who is asked: the team's active admins; when it has none, active staff."""
    admins = User.objects.filter(
        memberships__team_id=team_id, memberships__role=Membership.Role.TEAM_ADMIN, is_active=True
    ).exclude(email="")
    emails = sorted(set(admins.values_list("email", flat=True)))
    return emails or sorted(set(User.objects.filter(is_staff=True, is_active=True).exclude(email="").values_list("email", flat=True)))


def notify_admins_of_request(generation: Generation, request: ApprovalRequest) -> None:
    """Email the team's admins (:func:`admin_emails`) that ``generation`` waits for approval."""
    subject = f"Approval needed: {generation.user.email} asks for {format_usd(generation.quoted_amount)}"
    body = (
        f"{generation.user.email} asked for a video that needs a team admin's approval "
        f"({'; '.join(request.reasons)}).\n\n{_summary(generation)}\n"
        f"Approve or reject it: {_link(reverse('approvals:queue'))}\n"
        f"Undecided requests are rejected on {request.expires_at:%Y-%m-%d %H:%M} UTC.\n"
    )
    _send(subject, body, admin_emails(generation.team_id))


def notify_member_of_decision(generation_id) -> None:
    """Email the generation's member the decision on their request (approved, rejected with the
    reason, or expired), read from the generation and its :class:`ApprovalRequest`.

    The one place a decision reaches the member by email, only when they opted in to approval
    emails (``teamwork.notifications.notify_member``, kind "approval"; at most once per
    decision). Sent after the decision committed; a mail failure is logged, never raised.
    """
    generation = Generation.objects.select_related("user", "approval_request__decided_by").filter(pk=generation_id).first()
    if generation is None or not generation.user.email:
        return
    request = getattr(generation, "approval_request", None)
    decision = request.decision if request else ""
    who = request.decided_by.email if request and request.decided_by else "nobody"
    if decision == ApprovalRequest.Decision.APPROVED:
        subject = "Approved: your video is being made"
        body = f"{who} approved your request; it is on its way to the provider.\n\n{_summary(generation)}\n"
    elif decision == ApprovalRequest.Decision.REJECTED:
        subject = "Rejected: your video request"
        body = (
            f"{who} rejected your request: {request.reason}\n"
            f"The hold of {format_usd(generation.quoted_amount)} was released; nothing was charged.\n\n"
            f"{_summary(generation)}\n"
        )
    elif decision == ApprovalRequest.Decision.EXPIRED:
        subject = "Expired: nobody approved your video request"
        body = f"{request.reason}\n\n{_summary(generation)}\n"
    else:
        return
    # Optional per member (Settings → Notifications, "approvals of my requests"; issue 15):
    # notify_member checks the preference, links the generation and sends once per decision.
    notify_member(generation.user, "approval", subject, body, generation, key=f"approval:{generation.pk}:{decision}")
