"""Budget threshold alerts: once per budget, period and threshold, by email, webhook and studio banner.

Called by :func:`billing.services.ledger_hold` after a hold, inside its transaction and with
every budget row (and the user row, for the default) locked, so two submits never send the
same alert twice (and a unique constraint backs it).
"""

from __future__ import annotations

import logging
from datetime import datetime

from django.conf import settings
from django.core.mail import send_mass_mail
from django.db import transaction
from django.utils import timezone

from billing.models import Budget, BudgetAlert, SpendingPolicy
from billing.money import format_usd
from billing.selectors import period_key
from billing.usage import committed_for

logger = logging.getLogger(__name__)


def _send(messages) -> None:
    """Send the alert emails (after commit); a mail server failure is logged, never raised."""
    try:
        send_mass_mail(messages, fail_silently=False)
    except Exception:
        logger.exception("budget alert email could not be sent")


def alert_owners(budget: Budget, *, team_id=None) -> list[str]:
    """Email addresses of whoever owns ``budget``: the team's admins for a team or
    member-in-team budget, active staff for a member's own budget and the default."""
    from accounts.models import Membership, User

    if budget.team_id:
        users = User.objects.filter(
            memberships__team_id=budget.team_id, memberships__role=Membership.Role.TEAM_ADMIN, is_active=True
        )
    else:
        users = User.objects.filter(is_staff=True, is_active=True)
    return sorted({u.email for u in users.order_by("id") if u.email})


def _scope_key(budget: Budget, user_id) -> str:
    return f"default:user:{user_id}" if budget.is_default else f"budget:{budget.pk}"


def alert_budget_thresholds(
    *, budgets: list[Budget], user_id, team_id=None, now: datetime | None = None, committed: dict | None = None,
    policy: SpendingPolicy | None = None,
) -> list[BudgetAlert]:
    """Create the alerts newly reached by ``budgets`` for the submit of ``user_id`` booked to ``team_id``.

    A threshold ``t`` (percent, ``SpendingPolicy.alert_thresholds``) is reached when committed
    spend this period is at least ``t`` % of the budget's amount. Returns the new alerts; emails
    go out on commit, the webhook ``budget.threshold_reached`` is emitted now (its deliveries
    are handed to workers on commit). ``committed``: each budget's committed spend (USD) keyed
    by ``id(budget)`` when the caller knows it (the running totals are read otherwise). Nothing
    is read beyond that until a threshold is reached.
    """
    from accounts.models import Team, User
    from webhooks.services import emit

    thresholds = (policy or SpendingPolicy.current()).thresholds()
    if not thresholds:
        return []
    if committed is None:
        committed = dict(zip(map(id, budgets), committed_for(budgets, now=now), strict=True))
    reaching = [b for b in budgets if b.amount > 0 and committed[id(b)] * 100 >= b.amount * thresholds[0]]
    if not reaching:
        return []
    member = User.objects.get(pk=user_id)
    booked_team = Team.objects.filter(pk=team_id).first() if team_id else None
    created: list[BudgetAlert] = []
    messages: list[tuple[str, str, str, list[str]]] = []
    for budget in reaching:
        used = committed[id(budget)]
        reached = [t for t in thresholds if used * 100 >= budget.amount * t]
        scope_key, period = _scope_key(budget, user_id), period_key(budget, now)
        already = set(
            BudgetAlert.objects.filter(scope_key=scope_key, period_key=period, threshold__in=reached).values_list("threshold", flat=True)
        )
        new = [t for t in reached if t not in already]
        if not new:
            continue
        recipients = sorted({member.email, *alert_owners(budget)} - {""})
        at = now or timezone.now()
        for threshold in new:
            created.append(BudgetAlert.objects.create(
                scope_key=scope_key, period_key=period, threshold=threshold, budget=budget if budget.pk else None,
                user=member, team_id=budget.team_id or team_id, committed=used, amount=budget.amount,
                recipients=recipients, created_at=at,
            ))
        top = max(new)
        label = f"{Budget.Layer(budget.layer).label} budget of {budget.owner_label}"
        subject = f"Budget alert: {top}% of the {label} used"
        body = (
            f"{format_usd(used)} of {format_usd(budget.amount)} {budget.get_period_display()} is committed "
            f"({top}% reached) on the {label}.\n"
            + ("Further submits will be refused once it is used up.\n" if budget.hard else "It is a soft budget: submits are not refused.\n")
        )
        messages.append((subject, body, settings.DEFAULT_FROM_EMAIL, recipients))
        emit(
            "budget.threshold_reached", user=member, team=budget.team if budget.team_id else booked_team,
            payload={
                "budget_id": budget.pk, "layer": budget.layer, "user_id": member.pk, "team_id": budget.team_id or team_id,
                "threshold_percent": top, "committed_usd": str(used), "amount_usd": str(budget.amount),
                "period": budget.period, "period_start": period,
            },
            now=now,
        )
    if messages:
        transaction.on_commit(lambda: _send(tuple(messages)))
    return created
