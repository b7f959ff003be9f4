"""Writes to the ledger: hold, capture, release, adjustment. Callers own the transaction.

Each function must run inside ``transaction.atomic()`` together with the generation state
change that causes it (ARCHITECTURE.md, "Money"), so an entry and its state change commit
or roll back together.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from billing.hold_check import locked_layers
from billing.models import Budget, LedgerEntry
from billing.money import format_usd, money
from billing.pricing import Quote
from billing.selectors import budget_layers_for
from billing.usage import committed_for
from config import hotsql


class BudgetExceeded(Exception):
    """A hard budget refuses this submit. ``budget``, ``remaining`` and ``over_by`` are in USD.

    ``subject`` names what costs ``amount`` in the message ("this generation"; a batch says
    "this batch of 12")."""

    def __init__(self, *, budget: Budget, amount: Decimal, remaining: Decimal, subject: str = "this generation"):
        self.budget = budget
        self.amount = amount
        self.remaining = remaining
        self.over_by = money(amount - remaining)
        scope = budget.scope_label
        period = budget.get_period_display()
        super().__init__(
            f"Refused by {scope} budget of {format_usd(budget.amount)} {period}: "
            f"{format_usd(max(remaining, Decimal(0)))} left, {subject} costs {format_usd(amount)} "
            f"(over by {format_usd(self.over_by)})."
        )


class BudgetNotAllowed(Exception):
    """A hard budget's allow-list excludes this provider or model."""


def ledger_hold(*, generation, quote: Quote) -> tuple[LedgerEntry, list[str]]:
    """Hold ``quote.amount`` for ``generation`` after checking every budget layer that applies.

    Layers (README "Money"): the member's own budget, their member-in-team budget for
    ``generation.team``, the team's budget, ``generation.project``'s budget, and the site-wide
    default when it applies; all are checked, so the most restrictive wins. Each layer's use
    this period is one running-total row (``billing.usage``), not a sum over the ledger. The user row and the budget rows are locked
    (``SELECT ... FOR UPDATE``, :func:`billing.selectors.budget_layers_for`) so concurrent
    submits sharing a layer are checked one after another. After the hold, threshold alerts
    are recorded and sent (:func:`budget_alerts_after_hold`). Returns ``(hold entry,
    warnings)`` where warnings name soft budgets exceeded. Raises :class:`BudgetExceeded`
    for a hard budget without room and :class:`BudgetNotAllowed` for a hard budget whose
    allow-list excludes the provider or model.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("ledger_hold must run inside transaction.atomic()")
    now = timezone.now()
    if connection.vendor == "postgresql":  # two queries: locks, layers, policy and running totals
        budgets, used, policy = locked_layers(
            user=generation.user, team_id=generation.team_id, project_id=generation.project_id, now=now
        )
    else:
        budgets = budget_layers_for(user=generation.user_id, team=generation.team_id, project=generation.project_id, lock=True)
        used, policy = dict(zip(map(id, budgets), committed_for(budgets), strict=True)), None
    warnings = []
    for budget in budgets:
        if not budget.allows(provider_kind=generation.provider_kind, model=generation.model):
            scope = budget.scope_label
            allowed = ", ".join([*budget.allowed_providers, *budget.allowed_models])
            message = f"Refused by {scope} budget: {generation.provider_kind} {generation.model} is not on its allow-list ({allowed})."
            if budget.hard:
                raise BudgetNotAllowed(message)
            warnings.append(message.replace("Refused by", "Outside"))
            continue
        remaining = money(budget.amount - used[id(budget)])
        if quote.amount > remaining:
            if budget.hard:
                raise BudgetExceeded(budget=budget, amount=quote.amount, remaining=remaining)
            warnings.append(str(BudgetExceeded(budget=budget, amount=quote.amount, remaining=remaining)).replace(
                "Refused by", "Over"
            ))
    entry = hotsql.create(  # one prepared INSERT; its trigger keeps the running totals
        LedgerEntry,
        kind=LedgerEntry.Kind.HOLD,
        effective_at=now,
        created_at=now,
        amount=quote.amount,
        user_id=generation.user_id,
        team_id=generation.team_id,
        provider_account_id=generation.provider_account_id,
        generation=generation,
        price_rule=quote.snapshot,
    )
    committed_after = {id(b): used[id(b)] + quote.amount for b in budgets}
    budget_alerts_after_hold(
        budgets=budgets, user_id=generation.user_id, team_id=generation.team_id, committed=committed_after, policy=policy
    )
    return entry, warnings


def budget_alerts_after_hold(
    *, budgets: list[Budget], user_id, team_id=None, now=None, committed: dict | None = None, policy=None
) -> list:
    """Record and send the threshold alerts that ``budgets`` (locked by the caller) now reach.

    For each budget and each threshold of the policy (percent) reached by its committed spend
    this period, at most one :class:`billing.models.BudgetAlert` per budget, period and
    threshold (a unique constraint; the budget or user row lock orders concurrent submits).
    Each new alert emails the member and the budget's owner (team admins for team and
    member-in-team budgets; staff for the member's own budget and the default) when the
    transaction commits, and emits the ``budget.threshold_reached`` webhook inside it.
    ``committed``: each budget's committed spend (USD) keyed by ``id(budget)`` when the caller
    knows it (read otherwise); ``policy`` the spending policy already read. Returns the alerts created.
    """
    from billing.alerts import alert_budget_thresholds

    return alert_budget_thresholds(budgets=budgets, user_id=user_id, team_id=team_id, now=now, committed=committed, policy=policy)


def _hold_of(generation) -> LedgerEntry | None:
    return LedgerEntry.objects.filter(generation=generation, kind=LedgerEntry.Kind.HOLD).first()


def _settle(*, generation, kind: str, amount: Decimal | None = None, reason: str = "") -> LedgerEntry | None:
    hold = _hold_of(generation)
    if hold is None:
        return None
    if LedgerEntry.objects.filter(generation=generation, kind__in=["capture", "release"]).exists():
        return None
    fields = dict(
        kind=kind,
        user_id=hold.user_id,
        team_id=hold.team_id,
        provider_account_id=generation.provider_account_id,  # the account that served it (failover may differ from the hold's)
        generation=generation,
        price_rule=hold.price_rule,
        effective_at=hold.effective_at,
        created_at=timezone.now(),
        reason=reason,
    )
    if kind == LedgerEntry.Kind.CAPTURE:
        fields.update(amount=money(hold.amount if amount is None else amount), hold_amount=hold.amount)
    else:
        fields.update(amount=hold.amount)
    try:
        with transaction.atomic():
            return LedgerEntry.objects.create(**fields)
    except IntegrityError:
        # A concurrent capture or release won the race; the constraint kept it single.
        return None


def ledger_capture(*, generation, amount: Decimal | None = None) -> LedgerEntry | None:
    """Charge ``generation`` (default: its held amount). Returns the entry, or None if already settled or never held.

    At most once per generation, and never after a release (database constraints
    ``ledger_one_hold_capture_release_per_generation`` and ``ledger_capture_xor_release_per_generation``).
    """
    return _settle(generation=generation, kind=LedgerEntry.Kind.CAPTURE, amount=amount)


def ledger_capture_late(*, generation) -> LedgerEntry | None:
    """Charge a success the provider reported after we expired ``generation`` and released its hold.

    Append-only: the hold and its release stay as written; a second capture entry, marked
    ``late``, with ``hold_amount`` 0 (nothing left to settle) and the held amount (the quote
    at hold time, from the hold's price-rule snapshot), dated like its hold (``effective_at``)
    so the cost lands in the period the task was submitted in. Committed spend: hold −
    release + late capture = the quote, exactly once. Returns the entry, or None when the
    generation was never held, was not released, or is already captured (the
    constraint ``ledger_one_hold_capture_release_per_generation`` keeps one capture per
    generation, late or not).
    """
    hold = _hold_of(generation)
    if hold is None or not LedgerEntry.objects.filter(generation=generation, kind=LedgerEntry.Kind.RELEASE).exists():
        return None
    try:
        with transaction.atomic():
            return LedgerEntry.objects.create(
                kind=LedgerEntry.Kind.CAPTURE, late=True, amount=hold.amount, hold_amount=Decimal(0),
                user_id=hold.user_id, team_id=hold.team_id, provider_account_id=generation.provider_account_id,
                generation=generation, price_rule=hold.price_rule, effective_at=hold.effective_at,
                created_at=timezone.now(), reason="late success after expiry",
            )
    except IntegrityError:
        return None  # already captured: a successful task is charged exactly once


def ledger_release(*, generation, reason: str = "") -> LedgerEntry | None:
    """Free the hold of a failed, expired or canceled ``generation``; None if already settled or never held."""
    return _settle(generation=generation, kind=LedgerEntry.Kind.RELEASE, reason=reason)


def ledger_adjust(*, user, amount: Decimal, reason: str, created_by, team=None, generation=None) -> LedgerEntry:
    """Write a signed correction with its reason and the admin who made it."""
    if not reason.strip():
        raise ValueError("an adjustment needs a reason")
    now = timezone.now()
    return LedgerEntry.objects.create(
        kind=LedgerEntry.Kind.ADJUSTMENT,
        effective_at=now,
        created_at=now,
        amount=money(amount),
        user=user,
        team=team,
        generation=generation,
        reason=reason,
        created_by=created_by,
    )


def price_rule_revise(*, rule, unit_price: Decimal, unit: str | None = None, source: str = "", valid_from=None, created_by=None):
    """Supersede ``rule`` with a new version from ``valid_from`` (default now); the old one is closed then.

    History is kept: the old row gets ``valid_to`` and the new one points to it
    (``supersedes``). Generations keep the snapshot taken at hold, so nothing already
    quoted changes. Returns the new rule. Raises ``ValueError`` if ``rule`` is already superseded.
    """
    from billing.models import PriceRule

    valid_from = valid_from or timezone.now()
    with transaction.atomic():
        locked = PriceRule.objects.select_for_update().get(pk=rule.pk)
        if PriceRule.objects.filter(supersedes=locked).exists():
            raise ValueError("this price rule was already superseded; revise the current version")
        if valid_from <= locked.valid_from:
            raise ValueError("a new version must start after the version it supersedes")
        if locked.valid_to is None or locked.valid_to > valid_from:
            locked.valid_to = valid_from
            locked.save(update_fields=["valid_to"])
        return PriceRule.objects.create(
            provider_kind=locked.provider_kind,
            model=locked.model,
            mode=locked.mode,
            resolution=locked.resolution,
            duration=locked.duration,
            unit=unit or locked.unit,
            unit_price=money(unit_price),
            valid_from=valid_from,
            source=source or locked.source,
            supersedes=locked,
            created_by=created_by,
        )


def ledger_credit(*, user, amount: Decimal, reason: str, created_by, team=None, generation=None) -> LedgerEntry:
    """Give money back (a positive ``amount``, USD): lowers committed spend. Needs a reason."""
    if money(amount) <= 0:
        raise ValueError("a credit is a positive amount")
    if not reason.strip():
        raise ValueError("a credit needs a reason")
    now = timezone.now()
    return LedgerEntry.objects.create(
        kind=LedgerEntry.Kind.CREDIT, amount=money(amount), user=user, team=team, generation=generation,
        reason=reason, created_by=created_by, effective_at=now, created_at=now,
    )


class BudgetPermissionDenied(Exception):
    """The acting user may not set this budget."""


#: The most periods of one kind that touch one period of a longer kind: a month spans at most
#: 31 days and touches at most 6 Monday-first weeks; a week has 7 days.
_PERIODS_IN = {("day", "week"): 7, ("day", "month"): 31, ("week", "month"): 6}


def _fits_inside(*, amount: Decimal, period: str, team_budget: Budget) -> bool:
    """True when a member-in-team budget of ``amount`` per ``period`` can never let more than
    ``team_budget`` through in one of the team budget's periods: the same period with an amount
    not above it, or a shorter period whose amount times the most periods that touch one team
    period is not above it. Inside a lifetime team budget only a lifetime budget fits."""
    order = Budget.PERIOD_ORDER
    if order.index(period) > order.index(team_budget.period):
        return False
    if period == team_budget.period:
        return amount <= team_budget.amount
    if team_budget.period == Budget.Period.NONE:
        return False
    return amount * _PERIODS_IN[(period, team_budget.period)] <= team_budget.amount


def _budget_amount(amount, period: str) -> Decimal:
    """``amount`` as money (USD, 6 places), checked with ``period`` for a budget form.

    Raises ``ValueError`` (a message for the form) for a negative amount or an unknown period."""
    amount = money(amount)
    if amount < 0:
        raise ValueError("A budget cannot be negative.")
    if period not in Budget.Period.values:
        raise ValueError(f"Unknown period {period!r}.")
    return amount


def budget_set_for_member(*, actor, team, member, amount: Decimal, period: str, hard: bool = True) -> Budget:
    """Set (or replace) ``member``'s member-in-team budget for ``team``: it caps their spend booked to ``team``.

    Rules (issue 11, README "Money"): ``actor`` must be a team admin of ``team`` (or staff);
    ``member`` a member of ``team``; a team admin never sets their own; the budget is always
    hard; it must fit inside every active budget of the team (:func:`_fits_inside`: same
    period or shorter, never more money in one team period). Replacing deactivates only
    the member's active member-in-team budgets of ``team`` that a team admin of ``team`` set
    (or the actor); budgets set by staff, the member's own budget and other teams' budgets
    are never touched (all layers keep applying; the most restrictive wins).
    Returns the new Budget (``created_by=actor``). Raises :class:`BudgetPermissionDenied` or
    ``ValueError`` (with a message for the form).
    """
    from accounts.models import Membership

    admins = set(Membership.objects.filter(team=team, role=Membership.Role.TEAM_ADMIN).values_list("user_id", flat=True))
    if not (actor.pk in admins or actor.is_staff):
        raise BudgetPermissionDenied("Only a team admin of this team can set its members' budgets.")
    if not Membership.objects.filter(user=member, team=team).exists():
        raise BudgetPermissionDenied("This person is not a member of the team.")
    if member.pk == actor.pk and not actor.is_staff:
        raise BudgetPermissionDenied("A team admin cannot set their own budget: staff set it.")
    if not hard:
        raise ValueError("A team admin's budgets are always hard (refuse submits beyond them).")
    amount = _budget_amount(amount, period)
    with transaction.atomic():
        team_budgets = list(Budget.objects.select_for_update().filter(team=team, user__isnull=True, active=True).order_by("id"))
        for team_budget in team_budgets:
            if not _fits_inside(amount=amount, period=period, team_budget=team_budget):
                raise ValueError(
                    f"The team's budget is {format_usd(team_budget.amount)} {team_budget.get_period_display()}: "
                    f"a member's cannot be more (same period or shorter, and never more money in one of the team's periods)."
                )
        replaceable = Q(created_by_id__in=admins | {actor.pk}) if not actor.is_staff else Q()
        old = Budget.objects.filter(replaceable, user=member, team=team, active=True)
        for budget in old.select_for_update():
            budget.active = False
            budget.save(update_fields=["active"])
        return Budget.objects.create(user=member, team=team, amount=amount, period=period, hard=True, created_by=actor)


def budget_set_for_project(*, actor, project, amount: Decimal, period: str, hard: bool = True) -> Budget:
    """Set (or replace) ``project``'s budget: it caps all spend booked to the project (any member).

    Rules follow :func:`budget_set_for_member`: ``actor`` must be staff or a team admin of the
    project's team; a team admin's budget is always hard (staff may set a soft one). Replacing
    deactivates the project's active budgets a team admin of its team (or the actor) set; a
    team admin never replaces one staff set (both keep applying; the most restrictive wins).
    Returns the new Budget (``team`` = the project's team, ``created_by=actor``). Raises
    :class:`BudgetPermissionDenied` or ``ValueError`` (with a message for the form).
    """
    from accounts.models import Membership

    team_id = project.team_id
    admins = set(Membership.objects.filter(team_id=team_id, role=Membership.Role.TEAM_ADMIN).values_list("user_id", flat=True))
    if not (actor.pk in admins or actor.is_staff):
        raise BudgetPermissionDenied("Only staff or a team admin of the project's team can set its budget.")
    if not hard and not actor.is_staff:
        raise ValueError("A team admin's budgets are always hard (refuse submits beyond them).")
    amount = _budget_amount(amount, period)
    with transaction.atomic():
        replaceable = Q(created_by_id__in=admins | {actor.pk}) if not actor.is_staff else Q()
        for budget in Budget.objects.filter(replaceable, project=project, active=True).select_for_update():
            budget.active = False
            budget.save(update_fields=["active"])
        return Budget.objects.create(project=project, team_id=team_id, amount=amount, period=period, hard=hard, created_by=actor)
