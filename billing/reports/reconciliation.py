"""Reconciliation: per provider account, our captures beside the provider-reported cost and
the change in the provider's balance over a period."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from billing.balances import balance_unit
from billing.models import BalanceSnapshot, LedgerEntry
from billing.money import ZERO, money
from billing.reports.cost import amount_sum
from billing.reports.periods import Period

Kind = LedgerEntry.Kind

#: A reconciliation difference at least this large (USD) is highlighted.
RECONCILE_TOLERANCE = Decimal("0.01")


def _usd_of(cost) -> Decimal | None:
    if not isinstance(cost, Mapping) or cost.get("usd") in (None, ""):
        return None
    try:
        value = Decimal(str(cost["usd"]))
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() else None


def _credits_of(cost) -> Decimal | None:
    if not isinstance(cost, Mapping) or cost.get("credits") in (None, ""):
        return None
    try:
        value = Decimal(str(cost["credits"]))
    except (InvalidOperation, ValueError):
        return None
    return value if value.is_finite() else None


@dataclass
class ReconciliationRow:
    """One provider account over a period. Money in USD unless said otherwise.

    - ``captured``/``captured_count``: our captures in the period.
    - Provider-reported cost (``Generation.provider_cost``: PiAPI ``usd`` from
      ``meta.usage.consume``, PoYo ``usd`` and ``credits`` from ``credits_amount``) of the
      generations settled in the period: ``reported_usd`` (None when the provider reported
      none), ``reported_credits`` (PoYo), ``reported_count`` (generations with a report,
      captured or released), ``unreported_count`` (captures without one), and
      ``captured_on_reported`` (our captures of the reported generations).
      ``cost_difference`` = ``captured_on_reported`` − ``reported_usd``: positive, we
      booked more than the provider says it charged; negative, it charged more (e.g. for a
      failure we released).
    - Balance (:class:`~billing.models.BalanceSnapshot`): ``opening`` = the last snapshot at
      or before the start (else the first in the period), ``closing`` = the last one before
      the end. ``balance_drop`` = opening − closing in the provider's ``balance_unit``,
      ``balance_drop_usd`` converted at the rate the adapter reports
      (:func:`billing.balances.balance_unit`; None without one); ``captured_between`` = our
      captures between the two snapshots' times; ``balance_difference`` = captured_between −
      balance_drop_usd (a top-up inside the window makes it positive).
    """

    account: object
    captured: Decimal = ZERO
    captured_count: int = 0
    reported_usd: Decimal | None = None
    reported_credits: Decimal | None = None
    reported_count: int = 0
    unreported_count: int = 0
    captured_on_reported: Decimal = ZERO
    opening: BalanceSnapshot | None = None
    closing: BalanceSnapshot | None = None
    balance_unit: str = ""
    balance_drop: Decimal | None = None
    balance_drop_usd: Decimal | None = None
    captured_between: Decimal | None = None

    @property
    def cost_difference(self) -> Decimal | None:
        return None if self.reported_usd is None else money(self.captured_on_reported - self.reported_usd)

    @property
    def balance_difference(self) -> Decimal | None:
        if self.balance_drop_usd is None or self.captured_between is None:
            return None
        return money(self.captured_between - self.balance_drop_usd)

    @property
    def cost_flagged(self) -> bool:
        diff = self.cost_difference
        return diff is not None and abs(diff) >= RECONCILE_TOLERANCE

    @property
    def balance_flagged(self) -> bool:
        diff = self.balance_difference
        return diff is not None and abs(diff) >= RECONCILE_TOLERANCE

    @property
    def flagged(self) -> bool:
        return self.cost_flagged or self.balance_flagged

    def as_dict(self) -> dict:
        """JSON-ready: amounts as six-place strings (or None), snapshots as ``{balance, unit, taken_at}``."""

        def s(value):
            return None if value is None else f"{value:.6f}"

        def snap(x):
            return None if x is None else {"balance": s(x.balance), "unit": x.unit, "taken_at": x.taken_at.isoformat()}

        return {
            "provider_account_id": self.account.pk, "provider": self.account.kind, "label": self.account.label,
            "captured_usd": s(self.captured), "captured_count": self.captured_count,
            "reported_usd": s(self.reported_usd), "reported_credits": s(self.reported_credits),
            "reported_count": self.reported_count, "unreported_count": self.unreported_count,
            "captured_on_reported_usd": s(self.captured_on_reported), "cost_difference_usd": s(self.cost_difference),
            "opening_snapshot": snap(self.opening), "closing_snapshot": snap(self.closing),
            "balance_unit": self.balance_unit, "balance_drop": s(self.balance_drop), "balance_drop_usd": s(self.balance_drop_usd),
            "captured_between_snapshots_usd": s(self.captured_between), "balance_difference_usd": s(self.balance_difference),
            "flagged": self.flagged,
        }


def _snapshots(account, period: Period) -> tuple[BalanceSnapshot | None, BalanceSnapshot | None]:
    snaps = BalanceSnapshot.objects.filter(provider_account=account)
    opening = snaps.filter(taken_at__lte=period.start).order_by("-taken_at", "-id").first()
    if opening is None:
        opening = snaps.filter(taken_at__gt=period.start, taken_at__lt=period.end).order_by("taken_at", "id").first()
    if opening is None:
        return None, None
    closing = snaps.filter(taken_at__gt=opening.taken_at, taken_at__lt=period.end).order_by("-taken_at", "-id").first()
    return opening, closing


def reconciliation(*, period: Period, provider_account_id: int | None = None) -> list[ReconciliationRow]:
    """Per provider account, our captured total beside the provider-reported cost and the balance change.

    Accounts listed: every account with a settlement in the period or a balance snapshot
    (optionally only ``provider_account_id``). See :class:`ReconciliationRow` for each
    figure. Reads: one pass over the period's captures and releases (with their
    generation's ``provider_cost``), two snapshot lookups and one aggregate per account.
    """
    from providers.models import ProviderAccount

    settlements = LedgerEntry.objects.filter(
        kind__in=[Kind.CAPTURE, Kind.RELEASE], created_at__gte=period.start, created_at__lt=period.end,
        provider_account__isnull=False,
    )
    accounts = ProviderAccount.objects.order_by("kind", "label")
    if provider_account_id is not None:
        settlements = settlements.filter(provider_account_id=provider_account_id)
        accounts = accounts.filter(pk=provider_account_id)
    rows = {a.pk: ReconciliationRow(account=a) for a in accounts}
    for account_id, kind, amount, cost in settlements.values_list(
        "provider_account_id", "kind", "amount", "generation__provider_cost"
    ).iterator(chunk_size=2000):
        row = rows.get(account_id)
        if row is None:
            continue
        usd, credits = _usd_of(cost), _credits_of(cost)
        if kind == Kind.CAPTURE:
            row.captured += amount
            row.captured_count += 1
        if usd is not None:
            row.reported_usd = (row.reported_usd or ZERO) + usd
            row.reported_count += 1
            if kind == Kind.CAPTURE:
                row.captured_on_reported += amount
        elif kind == Kind.CAPTURE:
            row.unreported_count += 1
        if credits is not None:
            row.reported_credits = (row.reported_credits or ZERO) + credits
    with_snapshots = set(
        BalanceSnapshot.objects.filter(taken_at__lt=period.end).values_list("provider_account_id", flat=True).distinct()
    )
    out = []
    for row in rows.values():
        row.captured = money(row.captured)
        row.captured_on_reported = money(row.captured_on_reported)
        if row.reported_usd is not None:
            row.reported_usd = money(row.reported_usd)
        if row.reported_credits is not None:
            row.reported_credits = money(row.reported_credits)
        unit = balance_unit(row.account)
        row.balance_unit = unit.name
        if row.account.pk in with_snapshots:
            row.opening, row.closing = _snapshots(row.account, period)
        if row.opening is not None and row.closing is not None:
            row.balance_drop = money(row.opening.balance - row.closing.balance)
            drop_usd = unit.usd(row.balance_drop)
            if drop_usd is not None:
                row.balance_drop_usd = money(drop_usd)
            between = LedgerEntry.objects.filter(
                kind=Kind.CAPTURE, provider_account_id=row.account.pk,
                created_at__gte=row.opening.taken_at, created_at__lt=row.closing.taken_at,
            ).aggregate(t=amount_sum())["t"]
            row.captured_between = money(between)
        if row.captured_count or row.reported_count or row.opening is not None or provider_account_id is not None:
            out.append(row)
    return out
