"""Reads about prices, the ledger and budgets.

A budget's period comes from the one period calculator, :func:`billing.reports.periods.period_bounds`
(re-exported here for callers of ``billing.selectors.period_bounds``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Case, DecimalField, F, Q, Sum, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing.models import Budget, LedgerEntry, PriceRule
from billing.money import DECIMAL_PLACES, MAX_DIGITS, ZERO, money
from billing.reports.periods import period_bounds

__all__ = [
    "COMMITTED_DELTA", "BudgetStatus", "budget_statuses_for", "budget_time_zone", "committed_in",
    "entries_for_generation", "period_bounds", "price_rules_for",
]

_MONEY = DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES)

#: How each entry kind moves "committed spend" (what budgets count): a hold reserves,
#: a release frees, a capture replaces its hold by the captured amount, an adjustment adds
#: its signed amount, a credit gives money back.
COMMITTED_DELTA = Case(
    When(kind=LedgerEntry.Kind.HOLD, then=F("amount")),
    When(kind=LedgerEntry.Kind.RELEASE, then=-F("amount")),
    When(kind=LedgerEntry.Kind.CAPTURE, then=F("amount") - Coalesce(F("hold_amount"), Value(ZERO))),
    When(kind=LedgerEntry.Kind.ADJUSTMENT, then=F("amount")),
    When(kind=LedgerEntry.Kind.CREDIT, then=-F("amount")),
    default=Value(ZERO),
    output_field=_MONEY,
)


def price_rules_for(*, provider_kind: str, model: str, at: datetime | None = None) -> list[PriceRule]:
    """Rules of one provider model valid at ``at`` (default now)."""
    at = at or timezone.now()
    return list(
        PriceRule.objects.filter(provider_kind=provider_kind, model=model, valid_from__lte=at).filter(
            Q(valid_to__isnull=True) | Q(valid_to__gt=at)
        )
    )


def budget_time_zone(budget: Budget) -> str:
    """The zone a budget's periods align to: its team's, else the user's first team's, else UTC."""
    if budget.team_id:
        return budget.team.time_zone
    team = budget.user.primary_team if budget.user_id else None
    return team.time_zone if team else "UTC"


def committed_in(*, budget: Budget, now: datetime | None = None) -> Decimal:
    """Committed spend (held + captured + adjustments − credits) counted against ``budget`` this period, USD."""
    start, end = period_bounds(budget.period, tz_name=budget_time_zone(budget), now=now)
    entries = LedgerEntry.objects.filter(user_id=budget.user_id) if budget.user_id else LedgerEntry.objects.filter(team_id=budget.team_id)
    if start is not None:
        entries = entries.filter(effective_at__gte=start, effective_at__lt=end)
    total = entries.aggregate(total=Coalesce(Sum(COMMITTED_DELTA), Value(ZERO), output_field=_MONEY))["total"]
    return money(total)


@dataclass(frozen=True)
class BudgetStatus:
    """A budget with its use this period (USD)."""

    budget: Budget
    committed: Decimal
    remaining: Decimal
    period_start: datetime | None
    period_end: datetime | None


def budget_statuses_for(*, user, team=None, now: datetime | None = None) -> list[BudgetStatus]:
    """The active budgets that apply to ``user`` (and ``team``), each with its use this period."""
    scope = Q(user=user)
    if team is not None:
        scope |= Q(team=team)
    out = []
    for budget in Budget.objects.filter(scope, active=True).select_related("team", "user").order_by("id"):
        committed = committed_in(budget=budget, now=now)
        start, end = period_bounds(budget.period, tz_name=budget_time_zone(budget), now=now)
        out.append(BudgetStatus(budget, committed, money(budget.amount - committed), start, end))
    return out


def entries_for_generation(*, generation_id) -> list[LedgerEntry]:
    """A generation's ledger entries, oldest first."""
    return list(LedgerEntry.objects.filter(generation_id=generation_id).order_by("created_at", "id"))
