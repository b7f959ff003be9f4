"""The cost report: its query (:class:`ReportQuery`, built from request parameters), the
filtered ledger entries, and the grouped figures (:func:`cost_report`).

Rules: see :mod:`billing.reports`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db.models import Case, Count, DecimalField, Exists, F, OuterRef, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce, Trunc
from django.utils import timezone

from billing.models import LedgerEntry
from billing.money import DECIMAL_PLACES, MAX_DIGITS, ZERO, money
from billing.reports.errors import ReportParamError
from billing.reports.periods import Period, period_resolve

_MONEY = DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES)
Kind = LedgerEntry.Kind

#: An entry's contribution to spend (USD): captures and adjustments add, credits subtract,
#: holds and releases count zero.
SPEND_DELTA = Case(
    When(kind=Kind.CAPTURE, then=F("amount")),
    When(kind=Kind.ADJUSTMENT, then=F("amount")),
    When(kind=Kind.CREDIT, then=-F("amount")),
    default=Value(ZERO),
    output_field=_MONEY,
)

#: The provider kind of an entry: its account's, else its generation's (an adjustment
#: written against a generation); NULL for entries tied to neither.
PROVIDER_KIND = Coalesce(F("provider_account__kind"), F("generation__provider_kind"))
PROVIDER_ACCOUNT_ID = Coalesce(F("provider_account_id"), F("generation__provider_account_id"))

TIME_DIMENSIONS = ("day", "week", "month")
DIMENSIONS = (
    "team", "member", "project", "kept", "provider", "provider_account", "model", "mode", "resolution", *TIME_DIMENSIONS,
)
DIMENSION_LABELS = {
    "team": "Team", "member": "Member", "project": "Project", "kept": "Starred",
    "provider": "Provider", "provider_account": "Provider account",
    "model": "Model", "mode": "Mode", "resolution": "Resolution", "day": "Day", "week": "Week", "month": "Month",
}
MAX_DIMENSIONS = 3
NONE_LABEL = "—"
#: How an absent value shows: adjustments and credits have no provider or generation.
NONE_LABELS = {
    "team": "(no team)", "provider": "(no provider)", "provider_account": "(no account)",
    "project": "(no project)", "kept": "(not a generation)",
    "model": "(not a generation)", "mode": "(not a generation)", "resolution": "(not a generation)",
}


# --- report query --------------------------------------------------------------------------
@dataclass(frozen=True)
class ReportQuery:
    """What to report: a period, up to three group dimensions, optional filters.

    ``group_by`` items come from :data:`DIMENSIONS` (at most one time dimension);
    ``team_id``/``user_id``/``provider_account_id`` are primary keys, ``provider`` a kind.
    """

    period: Period
    group_by: tuple[str, ...] = ("provider",)
    team_id: int | None = None
    user_id: int | None = None
    provider: str | None = None
    provider_account_id: int | None = None

    @property
    def time_dimension(self) -> str | None:
        """The day/week/month dimension of ``group_by``, if any."""
        return next((d for d in self.group_by if d in TIME_DIMENSIONS), None)

    def filter_params(self) -> dict[str, str]:
        """The query as URL parameters (for export links and the API)."""
        p = self.period
        params = {"period": p.kind, "tz": p.tz, "group_by": ",".join(self.group_by)}
        if p.kind == "custom":
            params["from"], params["to"] = p.start.date().isoformat(), p.last_day.isoformat()
        if p.kind == "month":
            params["month"] = p.slug
        for name in ("team_id", "user_id", "provider", "provider_account_id"):
            value = getattr(self, name)
            if value not in (None, ""):
                params[name] = str(value)
        return params


def _parse_date(params: Mapping, name: str, errors: dict) -> date | None:
    raw = (params.get(name) or "").strip()
    if not raw:
        return None
    try:
        return date.fromisoformat(raw)
    except ValueError:
        errors.setdefault(name, []).append(f"{raw!r} is not a date: use YYYY-MM-DD.")
        return None


def _parse_int(params: Mapping, name: str, errors: dict) -> int | None:
    raw = str(params.get(name) or "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        errors.setdefault(name, []).append(f"{raw!r} is not a number.")
        return None


def parse_group_by(raw: str | list | tuple | None, default: tuple[str, ...] = ("provider",)) -> tuple[str, ...]:
    """``"team,month"`` → ``("team", "month")``; raises :class:`ReportParamError` (``group_by``).

    Unknown dimensions, duplicates, more than :data:`MAX_DIMENSIONS` or two time dimensions are refused.
    """
    if raw is None or raw == "" or raw == []:
        return default
    items = [part.strip() for part in (raw.split(",") if isinstance(raw, str) else raw) if part and part.strip()]
    unknown = [d for d in items if d not in DIMENSIONS]
    messages = []
    if unknown:
        messages.append(f"Unknown {', '.join(unknown)}: use {', '.join(DIMENSIONS)}.")
    if len(set(items)) != len(items):
        messages.append("A dimension is repeated.")
    if len(items) > MAX_DIMENSIONS:
        messages.append(f"At most {MAX_DIMENSIONS} dimensions.")
    if sum(d in TIME_DIMENSIONS for d in items) > 1:
        messages.append("At most one of day, week, month.")
    if messages:
        raise ReportParamError({"group_by": messages})
    return tuple(items) or default


def report_query_from_params(params: Mapping, *, now: datetime | None = None, default_tz: str = "UTC") -> ReportQuery:
    """Build a :class:`ReportQuery` from request parameters (web form or API query string).

    Parameters: ``period`` (default ``this_month``), ``tz`` (IANA, default ``default_tz``),
    ``from``/``to`` (YYYY-MM-DD, custom), ``month`` (YYYY-MM), ``group_by`` (comma list, or
    ``group`` + ``time`` as the web form sends them), ``team_id``, ``user_id``, ``provider``,
    ``provider_account_id``. Raises :class:`ReportParamError` with every field's problem.
    """
    errors: dict[str, list[str]] = {}
    date_from = _parse_date(params, "from", errors)
    date_to = _parse_date(params, "to", errors)
    ints = {name: _parse_int(params, name, errors) for name in ("team_id", "user_id", "provider_account_id")}
    raw_group = params.get("group_by")
    if not raw_group and (params.get("group") or params.get("time")):
        raw_group = ",".join(x for x in (params.get("group"), params.get("time")) if x)
    period = group_by = None
    try:
        group_by = parse_group_by(raw_group)
    except ReportParamError as exc:
        errors.update(exc.fields)
    if "from" not in errors and "to" not in errors:
        try:
            period = period_resolve(
                (params.get("period") or "this_month").strip(), tz=(params.get("tz") or default_tz).strip(), now=now,
                date_from=date_from, date_to=date_to, month=params.get("month") or None,
            )
        except ReportParamError as exc:
            errors.update(exc.fields)
    if errors:
        raise ReportParamError(errors)
    return ReportQuery(period=period, group_by=group_by, provider=(params.get("provider") or "").strip() or None, **ints)


def _filtered(query: ReportQuery, *, in_period: bool = True) -> QuerySet:
    entries = LedgerEntry.objects.annotate(r_provider=PROVIDER_KIND, r_account=PROVIDER_ACCOUNT_ID)
    if in_period:
        entries = entries.filter(created_at__gte=query.period.start, created_at__lt=query.period.end)
    if query.team_id is not None:
        entries = entries.filter(team_id=query.team_id)
    if query.user_id is not None:
        entries = entries.filter(user_id=query.user_id)
    if query.provider:
        entries = entries.filter(r_provider=query.provider)
    if query.provider_account_id is not None:
        entries = entries.filter(r_account=query.provider_account_id)
    return entries


def report_entries(query: ReportQuery) -> QuerySet:
    """The ledger entries of the report (period and filters applied), oldest first.

    Annotated with ``r_provider`` (provider kind or None) and ``r_account`` (provider
    account id or None), the values :func:`cost_report` groups by.
    """
    return _filtered(query).order_by("created_at", "id")


# --- the report ---------------------------------------------------------------------------
@dataclass
class Figures:
    """Money (USD, six places) and counts of a set of entries.

    ``spend`` = ``captured`` + ``adjustments`` − ``credits``; ``held``/``released`` are the
    holds and releases written in the period (not spend); ``succeeded`` counts
    captures; ``failed``/``canceled``/``expired`` split the releases by how the generation
    ended (its state: canceled or rejected by a team admin, expired, anything else — failed,
    refused at submit, reconciled as failed — counts as failed), so ``failed + canceled + expired`` = release entries;
    ``average_price`` = captured ÷ succeeded (None without successes).
    """

    spend: Decimal = ZERO
    captured: Decimal = ZERO
    adjustments: Decimal = ZERO
    credits: Decimal = ZERO
    held: Decimal = ZERO
    released: Decimal = ZERO
    succeeded: int = 0
    failed: int = 0
    canceled: int = 0
    expired: int = 0
    entries: int = 0

    @property
    def released_count(self) -> int:
        """Release entries: failed + canceled + expired."""
        return self.failed + self.canceled + self.expired

    @property
    def average_price(self) -> Decimal | None:
        """Captured ÷ succeeded, USD six places; None without successes."""
        return money(self.captured / self.succeeded) if self.succeeded else None

    def as_dict(self) -> dict:
        """Amounts as fixed six-place strings (USD), counts as ints."""
        avg = self.average_price
        return {
            "spend_usd": f"{self.spend:.6f}", "captured_usd": f"{self.captured:.6f}",
            "adjustments_usd": f"{self.adjustments:.6f}", "credits_usd": f"{self.credits:.6f}",
            "held_usd": f"{self.held:.6f}", "released_usd": f"{self.released:.6f}",
            "succeeded": self.succeeded, "failed": self.failed, "canceled": self.canceled, "expired": self.expired,
            "entries": self.entries,
            "average_price_usd": None if avg is None else f"{avg:.6f}",
        }


def amount_sum(condition: Q | None = None, value=None):
    """``SUM(value)`` (default ``amount``) over the rows matching ``condition`` (all by default), 0 when none; USD."""
    value = F("amount") if value is None else value
    expr = value if condition is None else Case(When(condition, then=value), default=Value(ZERO), output_field=_MONEY)
    return Coalesce(Sum(expr, output_field=_MONEY), Value(ZERO), output_field=_MONEY)


METRICS = {
    "m_spend": amount_sum(value=SPEND_DELTA),
    "m_captured": amount_sum(Q(kind=Kind.CAPTURE)),
    "m_adjustments": amount_sum(Q(kind=Kind.ADJUSTMENT)),
    "m_credits": amount_sum(Q(kind=Kind.CREDIT)),
    "m_held": amount_sum(Q(kind=Kind.HOLD)),
    "m_released": amount_sum(Q(kind=Kind.RELEASE)),
    "m_succeeded": Count("id", filter=Q(kind=Kind.CAPTURE)),
    "m_failed": Count("id", filter=Q(kind=Kind.RELEASE) & ~Q(generation__state__in=("canceled", "rejected", "expired"))),
    # Canceled counts the requests a team admin rejected too (approvals): released, never charged.
    "m_canceled": Count("id", filter=Q(kind=Kind.RELEASE, generation__state__in=("canceled", "rejected"))),
    "m_expired": Count("id", filter=Q(kind=Kind.RELEASE, generation__state="expired")),
    "m_entries": Count("id"),
}


def _figures(row: Mapping) -> Figures:
    return Figures(
        spend=money(row["m_spend"]), captured=money(row["m_captured"]), adjustments=money(row["m_adjustments"]),
        credits=money(row["m_credits"]), held=money(row["m_held"]), released=money(row["m_released"]),
        succeeded=row["m_succeeded"], failed=row["m_failed"], canceled=row["m_canceled"], expired=row["m_expired"],
        entries=row["m_entries"],
    )


@dataclass
class GroupRow:
    """One group of a report: ``key`` maps each dimension to its raw value (an id, a kind,
    a model, or an aware datetime for time buckets, None when absent); ``labels`` to its
    display text; ``figures`` its :class:`Figures`."""

    key: dict[str, object]
    labels: dict[str, str]
    figures: Figures


@dataclass
class Outstanding:
    """Holds still open at ``as_of`` (written before it, settled neither by capture nor release before it)."""

    amount: Decimal
    count: int
    as_of: datetime


@dataclass
class CostReport:
    """A computed report: its query, groups (ordered), totals over all entries, outstanding holds."""

    query: ReportQuery
    groups: list[GroupRow]
    totals: Figures
    outstanding: Outstanding
    computed_at: datetime = field(default_factory=timezone.now)

    @property
    def period(self) -> Period:
        return self.query.period


def _dimension_exprs(zone: ZoneInfo) -> dict[str, object]:
    return {
        "team": F("team_id"),
        "member": F("user_id"),
        "provider": F("r_provider"),
        "provider_account": F("r_account"),
        "model": F("generation__model"),
        "mode": F("generation__mode"),
        "resolution": F("generation__resolution"),
        # Through the entry's generation (the ledger has no project of its own): finance
        # charges back by client; "kept" is the take's star (spend on kept takes vs the rest).
        "project": F("generation__project_id"),
        "kept": F("generation__starred"),
        "day": Trunc("created_at", "day", tzinfo=zone),
        "week": Trunc("created_at", "week", tzinfo=zone),
        "month": Trunc("created_at", "month", tzinfo=zone),
    }


def _bucket_label(dimension: str, value: datetime | None, zone: ZoneInfo) -> str:
    if value is None:
        return NONE_LABEL
    local = value.astimezone(zone)
    if dimension == "month":
        return f"{local:%Y-%m}"
    if dimension == "week":
        iso = local.isocalendar()
        return f"{iso.year}-W{iso.week:02d} ({local:%Y-%m-%d})"
    return f"{local:%Y-%m-%d}"


def _labeller(group_by: tuple[str, ...], rows: list[dict], zone: ZoneInfo):
    from accounts.models import Team, User
    from providers.models import ProviderAccount
    from providers.registry import kind_choices

    kinds = dict(kind_choices())
    lookups: dict[str, dict] = {}
    from teamwork.models import Project

    for dim, model, attr in (
        ("team", Team, "name"), ("member", User, "email"), ("provider_account", ProviderAccount, None), ("project", Project, "name"),
    ):
        if dim in group_by:
            ids = {r[f"g_{dim}"] for r in rows if r[f"g_{dim}"] is not None}
            objects = model.objects.in_bulk(ids)
            lookups[dim] = {pk: (getattr(o, attr) if attr else str(o)) for pk, o in objects.items()}

    def label(dim: str, value) -> str:
        if dim in TIME_DIMENSIONS:
            return _bucket_label(dim, value, zone)
        if value is None or value == "":
            return NONE_LABELS.get(dim, NONE_LABEL)
        if dim in lookups:
            return lookups[dim].get(value, f"#{value}")
        if dim == "kept":
            return "Starred" if value else "Not starred"
        if dim == "provider":
            return str(kinds.get(value, value))
        return str(value)

    return label


def cost_report(query: ReportQuery, *, now: datetime | None = None) -> CostReport:
    """Compute the report: one :class:`GroupRow` per distinct combination of ``query.group_by``.

    Groups are ordered by time bucket (if any) then spend, largest first. ``totals`` is
    aggregated over all entries of the period (equal to the sum of the groups), and
    ``outstanding`` covers holds open at the period's end (or ``now``, if earlier).
    Amounts are Decimal USD with six places. Queries: two aggregates, one per label table.
    """
    zone = query.period.zone
    entries = _filtered(query)
    exprs = _dimension_exprs(zone)
    grouped = (
        entries.values(**{f"g_{d}": exprs[d] for d in query.group_by}).annotate(**METRICS).order_by()
    )
    rows = list(grouped)
    label = _labeller(query.group_by, rows, zone)
    groups = [
        GroupRow(
            key={d: r[f"g_{d}"] for d in query.group_by},
            labels={d: label(d, r[f"g_{d}"]) for d in query.group_by},
            figures=_figures(r),
        )
        for r in rows
    ]
    time_dim = query.time_dimension
    far = datetime.max.replace(tzinfo=zone)

    def order(g: GroupRow):
        bucket = g.key.get(time_dim) if time_dim else None
        return (bucket or far, -g.figures.spend, tuple(g.labels.values()))

    groups.sort(key=order)
    totals = _figures(entries.aggregate(**METRICS))
    return CostReport(query=query, groups=groups, totals=totals, outstanding=outstanding_holds(query, now=now))


def outstanding_holds(query: ReportQuery, *, now: datetime | None = None) -> Outstanding:
    """Holds written before the period's end (or ``now``, if earlier) that no capture or
    release written before that moment settles, within the query's filters (not its start:
    a hold from an earlier period still open counts). Amount in USD."""
    as_of = min(query.period.end, now or timezone.now())
    settled = LedgerEntry.objects.filter(
        generation_id=OuterRef("generation_id"), kind__in=[Kind.CAPTURE, Kind.RELEASE], created_at__lt=as_of
    )
    holds = _filtered(query, in_period=False).filter(kind=Kind.HOLD, created_at__lt=as_of).filter(~Exists(settled))
    row = holds.aggregate(amount=amount_sum(), count=Count("id"))
    return Outstanding(amount=money(row["amount"]), count=row["count"], as_of=as_of)


def ledger_spend_total(*, start: datetime, end: datetime) -> Decimal:
    """Spend (captures + adjustments − credits, USD) of every entry with ``start <= created_at < end``.

    The unfiltered ledger figure a report's total must equal.
    """
    total = LedgerEntry.objects.filter(created_at__gte=start, created_at__lt=end).aggregate(t=amount_sum(value=SPEND_DELTA))["t"]
    return money(total)


