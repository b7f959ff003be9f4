"""Reads about prices, the ledger and budgets.

A budget's period comes from the one period calculator, :func:`billing.reports.periods.period_bounds`
(re-exported here for callers of ``billing.selectors.period_bounds``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from django.db.models import Case, DecimalField, F, Q, Sum, Value, When
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing.models import Budget, LedgerEntry, PriceRule, SpendingPolicy, UnlimitedGrant
from billing.money import DECIMAL_PLACES, MAX_DIGITS, ZERO, money
from billing.reports.periods import period_bounds

__all__ = [
    "COMMITTED_DELTA", "BudgetStatus", "budget_layers_for", "budget_statuses_for", "budget_time_zone", "committed_in",
    "default_budget_for", "effective_budget_labels", "period_key",
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
    """Rules of one provider model valid at ``at`` (default now), from the per-process cache
    (``billing.config_cache``: dropped whenever any price rule changes)."""
    from billing.config_cache import price_rules

    return price_rules(provider_kind=provider_kind, model=model, at=at or timezone.now())


def budget_time_zone(budget: Budget) -> str:
    """The zone a budget's periods align to: its team's (a project's team's), else the user's first team's, else UTC."""
    if budget.team_id:
        return budget.team.time_zone
    team = budget.user.primary_team if budget.user_id else None
    return team.time_zone if team else "UTC"


def committed_in(*, budget: Budget, now: datetime | None = None) -> Decimal:
    """Committed spend (held + captured + adjustments − credits) counted against ``budget`` this period, USD.

    What counts depends on the layer: a member's own budget and the default count all the
    member's entries; a member-in-team budget those of the member booked to that team; a
    team budget all entries booked to the team; a project budget all entries of the project's
    generations. This sums the ledger (the truth); the budget check reads the running totals
    instead (``billing.usage.committed_for``).
    """
    start, end = period_bounds(budget.period, tz_name=budget_time_zone(budget), now=now)
    if budget.project_id:
        entries = LedgerEntry.objects.filter(generation__project_id=budget.project_id)
    elif budget.user_id and budget.team_id:
        entries = LedgerEntry.objects.filter(user_id=budget.user_id, team_id=budget.team_id)
    elif budget.user_id:
        entries = LedgerEntry.objects.filter(user_id=budget.user_id)
    else:
        entries = LedgerEntry.objects.filter(team_id=budget.team_id)
    if start is not None:
        entries = entries.filter(effective_at__gte=start, effective_at__lt=end)
    total = entries.aggregate(total=Coalesce(Sum(COMMITTED_DELTA), Value(ZERO), output_field=_MONEY))["total"]
    return money(total)


def period_key(budget: Budget, now: datetime | None = None) -> str:
    """The current period of ``budget`` as a string: its start in UTC (ISO) or ``lifetime``."""
    start, _ = period_bounds(budget.period, tz_name=budget_time_zone(budget), now=now)
    return start.astimezone(UTC).isoformat() if start is not None else "lifetime"


def _layer_scope(*, user_id, team_id, project_id=None) -> Q:
    """Budget rows that apply to a submit by ``user_id`` booked to ``team_id`` and ``project_id`` (may be None)."""
    scope = Q(user_id=user_id, team__isnull=True)
    if team_id:
        scope |= Q(user_id=user_id, team_id=team_id) | Q(user__isnull=True, team_id=team_id, project__isnull=True)
    if project_id:
        scope |= Q(project_id=project_id)
    return scope


def default_budget_for(*, user, team=None, policy: SpendingPolicy | None = None, has_own: bool | None = None) -> Budget | None:
    """The site-wide default as an unsaved :class:`Budget` (``is_default``), or None when it does not apply.

    It applies to a member with no active budget of their own (user only), unless the policy
    has no default amount or staff granted the member, or ``team``, unlimited.
    """
    policy = policy or SpendingPolicy.current()
    if policy.default_amount is None:
        return None
    user_id = getattr(user, "pk", user)
    team_id = getattr(team, "pk", team)
    if has_own is None:
        has_own = Budget.objects.filter(user_id=user_id, team__isnull=True, active=True).exists()
    if has_own:
        return None
    grants = Q(user_id=user_id) | (Q(team_id=team_id) if team_id else Q(pk__in=[]))
    if UnlimitedGrant.objects.filter(grants).exists():
        return None
    budget = Budget(user_id=user_id, amount=policy.default_amount, period=policy.default_period, hard=policy.default_hard)
    budget.is_default = True
    return budget


def budget_layers_for(
    *, user, team=None, project=None, lock: bool = False, policy: SpendingPolicy | None = None
) -> list[Budget]:
    """Every active budget layer that applies to ``user``'s spend booked to ``team`` (and ``project``, a
    ``teamwork.Project`` or its id, when the generation belongs to one).

    Rows first (own, member-in-team, team, project; by id), then the site-wide default when it applies
    (:func:`default_budget_for`). With ``lock`` (inside a transaction), the user row and then
    the budget rows are locked ``FOR UPDATE`` in that order, so concurrent submits that share
    any layer are checked one after another (the default has no row of its own: the user row
    stands for it).
    """
    from accounts.models import User

    user_id = getattr(user, "pk", user)
    team_id = getattr(team, "pk", team)
    project_id = getattr(project, "pk", project)
    rows = Budget.objects.filter(_layer_scope(user_id=user_id, team_id=team_id, project_id=project_id), active=True)
    if lock:
        list(User.objects.select_for_update().filter(pk=user_id).values_list("pk", flat=True))
        rows = rows.select_for_update(of=("self",))
    budgets = list(rows.select_related("team", "user", "created_by", "project").order_by("id"))
    has_own = any(b.user_id and not b.team_id for b in budgets)
    default = default_budget_for(user=user_id, team=team_id, has_own=has_own, policy=policy)
    if default is not None:
        budgets.append(default)
    return budgets


@dataclass(frozen=True)
class BudgetStatus:
    """A budget with its use this period (USD) and the highest alert threshold reached (percent, or None)."""

    budget: Budget
    committed: Decimal
    remaining: Decimal
    period_start: datetime | None
    period_end: datetime | None
    threshold: int | None = None

    @property
    def percent(self) -> int:
        """Whole percent used (0 for a zero budget with no use)."""
        if self.budget.amount <= 0:
            return 100 if self.committed > 0 else 0
        return int(self.committed * 100 / self.budget.amount)


def budget_statuses_for(*, user, team=None, now: datetime | None = None, projects: bool = True) -> list[BudgetStatus]:
    """The budget layers that apply to ``user``'s spend booked to ``team``, each with its use this period.

    With ``projects`` (default), the active budgets of ``team``'s projects follow (they apply to
    a submit into that project). Use comes from the running totals (``billing.usage``).
    """
    from billing.usage import committed_for

    policy = SpendingPolicy.current()
    thresholds = policy.thresholds()
    out = []
    budgets = budget_layers_for(user=user, team=team, policy=policy)
    team_id = getattr(team, "pk", team)
    if projects and team_id:
        budgets += list(
            Budget.objects.filter(project__team_id=team_id, active=True).select_related("team", "project").order_by("id")
        )
    for budget, committed in zip(budgets, committed_for(budgets, now=now), strict=True):
        start, end = period_bounds(budget.period, tz_name=budget_time_zone(budget), now=now)
        reached = [t for t in thresholds if budget.amount > 0 and committed * 100 >= budget.amount * t]
        out.append(BudgetStatus(budget, committed, money(budget.amount - committed), start, end, max(reached, default=None)))
    return out


def effective_budget_labels(*, user) -> list[str]:
    """Human labels of every layer capping ``user`` across their teams (admin user list)."""
    labels = []
    seen = set()
    teams = [m.team for m in user.memberships.select_related("team").order_by("id")] or [None]
    for team in teams:
        for budget in budget_layers_for(user=user, team=team):
            key = budget.pk or "default"
            if key in seen:
                continue
            seen.add(key)
            kind = Budget.Layer(budget.layer).label
            where = f" ({budget.team.name})" if budget.team_id else ""
            soft = "" if budget.hard else ", soft"
            labels.append(f"{kind}{where}: {budget.amount.normalize():f} USD {budget.get_period_display()}{soft}")
    return labels


def entries_for_generation(*, generation_id) -> list[LedgerEntry]:
    """A generation's ledger entries, oldest first."""
    return list(LedgerEntry.objects.filter(generation_id=generation_id).order_by("created_at", "id"))
