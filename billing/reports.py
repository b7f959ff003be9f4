"""Cost reports: reads over the ledger for finance (reports, statements, reconciliation).

Rules (ARCHITECTURE.md: "reports are computed from entries"):

- **Only ledger entries count**, never generations: a generation's model, mode and
  resolution are read through the entry's ``generation`` for grouping only.
- **Spend** = captures + adjustments (signed) − credits, in USD. Holds and releases are
  *not* spend: a hold reserves money for a video in progress and its release or capture
  settles it. Holds still open at the end of the period are reported separately as
  **outstanding holds** (money that may still be charged).
- **Dating**: an entry belongs to the period that contains its ``created_at`` (when the
  money moved: a capture when the video succeeded, a credit when it was given), read in
  the report's time zone. Budgets date by ``effective_at`` (the hold's time) instead, so a
  video submitted on 31 October and finished on 1 November is October in the budget and
  November in the reports.
- **Counts**: *succeeded* = capture entries; *failed* = release entries (failed, expired,
  canceled or refused at submit: every generation whose hold was released uncharged).
  *Average price* = captured ÷ succeeded.
- Periods are half-open ``[start, end)`` in an IANA zone; time buckets are truncated in
  that zone (``Trunc(..., tzinfo=zone)``), weeks start on Monday.

Who may read: superusers, staff, and users with a ``finance`` membership in any team
(finance sees every team): :func:`can_view_reports`.
"""

from __future__ import annotations

import calendar
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from django.db.models import Case, Count, DecimalField, Exists, F, OuterRef, Q, QuerySet, Sum, Value, When
from django.db.models.functions import Coalesce, Trunc
from django.utils import timezone

from billing.balances import balance_unit
from billing.models import BalanceSnapshot, LedgerEntry
from billing.money import DECIMAL_PLACES, MAX_DIGITS, ZERO, money
from config.errors import DomainError

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

PERIOD_KINDS = ("this_month", "last_month", "this_quarter", "month", "custom")
TIME_DIMENSIONS = ("day", "week", "month")
DIMENSIONS = ("team", "member", "provider", "provider_account", "model", "mode", "resolution", *TIME_DIMENSIONS)
DIMENSION_LABELS = {
    "team": "Team", "member": "Member", "provider": "Provider", "provider_account": "Provider account",
    "model": "Model", "mode": "Mode", "resolution": "Resolution", "day": "Day", "week": "Week", "month": "Month",
}
MAX_DIMENSIONS = 3
NONE_LABEL = "—"
#: How an absent value shows: adjustments and credits have no provider or generation.
NONE_LABELS = {
    "team": "(no team)", "provider": "(no provider)", "provider_account": "(no account)",
    "model": "(not a generation)", "mode": "(not a generation)", "resolution": "(not a generation)",
}

#: A reconciliation difference at least this large (USD) is highlighted.
RECONCILE_TOLERANCE = Decimal("0.01")


class ReportParamError(DomainError):
    """Bad report parameters: 422 ``invalid_request``; ``fields`` maps a parameter name to its messages."""

    status = 422

    def __init__(self, fields: dict[str, list[str]]):
        super().__init__("invalid_request", "The report parameters are invalid.", fields)

    def __str__(self) -> str:
        return "; ".join(f"{k}: {' '.join(v)}" for k, v in self.fields.items())


# --- access ---------------------------------------------------------------------------------
def can_view_reports(user) -> bool:
    """True for an active superuser or staff member, or a user with a finance membership (any team)."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if user.is_superuser or user.is_staff:
        return True
    from accounts.models import Membership

    return Membership.objects.filter(user=user, role=Membership.Role.FINANCE).exists()


# --- periods -------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def time_zone_names() -> tuple[str, ...]:
    """Every IANA zone name this machine knows, sorted."""
    return tuple(sorted(available_timezones()))


def zone_for(name: str) -> ZoneInfo:
    """``ZoneInfo(name)``; raises :class:`ReportParamError` (``tz``) for an unknown zone."""
    if name == "UTC" or (name and name in time_zone_names()):
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    raise ReportParamError({"tz": [f"Unknown time zone {name!r}: use an IANA name such as Europe/Paris."]})


@dataclass(frozen=True)
class Period:
    """A half-open reporting period ``[start, end)``.

    ``start``/``end`` are aware datetimes in zone ``tz`` (an IANA name); ``kind`` is one of
    :data:`PERIOD_KINDS`; ``label`` is for people ("November 2026"); ``slug`` is for file
    names ("2026-11", "2026-Q4", "2026-11-03_2026-11-20").
    """

    kind: str
    start: datetime
    end: datetime
    tz: str
    label: str
    slug: str

    @property
    def zone(self) -> ZoneInfo:
        """The period's zone as a ``ZoneInfo``."""
        return ZoneInfo(self.tz)

    @property
    def last_day(self) -> date:
        """The last calendar day inside the period (``end`` is exclusive)."""
        return (self.end - timedelta(microseconds=1)).astimezone(self.zone).date()

    @property
    def days(self) -> int:
        """Calendar days in the period (local)."""
        return (self.last_day - self.start.date()).days + 1


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def _add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _month_period(kind: str, first: date, zone: ZoneInfo, tz: str) -> Period:
    return Period(
        kind=kind, start=_local_midnight(first, zone), end=_local_midnight(_add_months(first, 1), zone), tz=tz,
        label=f"{calendar.month_name[first.month]} {first.year}", slug=f"{first:%Y-%m}",
    )


def parse_month(text: str) -> date:
    """``"2026-11"`` → ``date(2026, 11, 1)``; raises :class:`ReportParamError` (``month``)."""
    try:
        year, month = (int(part) for part in str(text).split("-"))
        return date(year, month, 1)
    except (TypeError, ValueError) as exc:
        raise ReportParamError({"month": [f"{text!r} is not a month: use YYYY-MM."]}) from exc


def period_resolve(
    kind: str = "this_month",
    *,
    tz: str = "UTC",
    now: datetime | None = None,
    date_from: date | None = None,
    date_to: date | None = None,
    month: str | date | None = None,
) -> Period:
    """The :class:`Period` for ``kind`` in zone ``tz``, relative to ``now`` (default: the clock).

    ``this_month``, ``last_month``, ``this_quarter`` (calendar quarters), ``month``
    (``month="YYYY-MM"``) and ``custom`` (``date_from``..``date_to``, both days included,
    from local midnight to the local midnight after ``date_to``). Raises
    :class:`ReportParamError` for an unknown kind or zone, a missing or reversed range, or
    a bad month.
    """
    zone = zone_for(tz)
    today = (now or timezone.now()).astimezone(zone).date()
    first = today.replace(day=1)
    if kind == "this_month":
        return _month_period(kind, first, zone, tz)
    if kind == "last_month":
        return _month_period(kind, _add_months(first, -1), zone, tz)
    if kind == "month":
        if not month:
            raise ReportParamError({"month": ["Give the month as YYYY-MM."]})
        return _month_period(kind, month if isinstance(month, date) else parse_month(month), zone, tz)
    if kind == "this_quarter":
        quarter = (today.month - 1) // 3
        q_first = date(today.year, quarter * 3 + 1, 1)
        return Period(
            kind=kind, start=_local_midnight(q_first, zone), end=_local_midnight(_add_months(q_first, 3), zone), tz=tz,
            label=f"Q{quarter + 1} {today.year}", slug=f"{today.year}-Q{quarter + 1}",
        )
    if kind == "custom":
        errors: dict[str, list[str]] = {}
        if date_from is None:
            errors["from"] = ["Give a start date (YYYY-MM-DD)."]
        if date_to is None:
            errors["to"] = ["Give an end date (YYYY-MM-DD)."]
        if not errors and date_to < date_from:
            errors["to"] = ["The end date is before the start date."]
        if errors:
            raise ReportParamError(errors)
        return Period(
            kind=kind, start=_local_midnight(date_from, zone), end=_local_midnight(date_to + timedelta(days=1), zone), tz=tz,
            label=f"{date_from.day} {date_from:%b %Y} – {date_to.day} {date_to:%b %Y}",
            slug=f"{date_from:%Y-%m-%d}_{date_to:%Y-%m-%d}",
        )
    raise ReportParamError({"period": [f"Unknown period {kind!r}: use one of {', '.join(PERIOD_KINDS)}."]})


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
    holds and releases written in the period (not spend); ``succeeded``/``failed`` count
    captures and releases; ``average_price`` = captured ÷ succeeded (None without successes).
    """

    spend: Decimal = ZERO
    captured: Decimal = ZERO
    adjustments: Decimal = ZERO
    credits: Decimal = ZERO
    held: Decimal = ZERO
    released: Decimal = ZERO
    succeeded: int = 0
    failed: int = 0
    entries: int = 0

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
            "succeeded": self.succeeded, "failed": self.failed, "entries": self.entries,
            "average_price_usd": None if avg is None else f"{avg:.6f}",
        }


def _sum(condition: Q | None = None, value=None):
    value = F("amount") if value is None else value
    expr = value if condition is None else Case(When(condition, then=value), default=Value(ZERO), output_field=_MONEY)
    return Coalesce(Sum(expr, output_field=_MONEY), Value(ZERO), output_field=_MONEY)


METRICS = {
    "m_spend": _sum(value=SPEND_DELTA),
    "m_captured": _sum(Q(kind=Kind.CAPTURE)),
    "m_adjustments": _sum(Q(kind=Kind.ADJUSTMENT)),
    "m_credits": _sum(Q(kind=Kind.CREDIT)),
    "m_held": _sum(Q(kind=Kind.HOLD)),
    "m_released": _sum(Q(kind=Kind.RELEASE)),
    "m_succeeded": Count("id", filter=Q(kind=Kind.CAPTURE)),
    "m_failed": Count("id", filter=Q(kind=Kind.RELEASE)),
    "m_entries": Count("id"),
}


def _figures(row: Mapping) -> Figures:
    return Figures(
        spend=money(row["m_spend"]), captured=money(row["m_captured"]), adjustments=money(row["m_adjustments"]),
        credits=money(row["m_credits"]), held=money(row["m_held"]), released=money(row["m_released"]),
        succeeded=row["m_succeeded"], failed=row["m_failed"], entries=row["m_entries"],
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
    for dim, model, attr in (("team", Team, "name"), ("member", User, "email"), ("provider_account", ProviderAccount, None)):
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
    row = holds.aggregate(amount=_sum(), count=Count("id"))
    return Outstanding(amount=money(row["amount"]), count=row["count"], as_of=as_of)


def ledger_spend_total(*, start: datetime, end: datetime) -> Decimal:
    """Spend (captures + adjustments − credits, USD) of every entry with ``start <= created_at < end``.

    The unfiltered ledger figure a report's total must equal.
    """
    total = LedgerEntry.objects.filter(created_at__gte=start, created_at__lt=end).aggregate(t=_sum(value=SPEND_DELTA))["t"]
    return money(total)


# --- chart data -------------------------------------------------------------------------------
def chart_bucket(period: Period) -> str:
    """The time bucket for the spend chart: day up to 62 days, week up to 190, else month."""
    if period.days <= 62:
        return "day"
    if period.days <= 190:
        return "week"
    return "month"


def bucket_starts(period: Period, bucket: str) -> list[datetime]:
    """Every bucket start (aware, local midnight) from the one containing ``period.start`` to ``period.end``."""
    zone = period.zone
    day = period.start.astimezone(zone).date()
    if bucket == "week":
        day -= timedelta(days=day.weekday())
    elif bucket == "month":
        day = day.replace(day=1)
    out = []
    while _local_midnight(day, zone) < period.end:
        out.append(_local_midnight(day, zone))
        day = _add_months(day, 1) if bucket == "month" else day + timedelta(days=7 if bucket == "week" else 1)
    return out


@dataclass
class SpendSeries:
    """Spend per time bucket of one provider: ``points`` are ``(bucket start, USD)`` for every bucket."""

    provider: str | None
    label: str
    points: list[tuple[datetime, Decimal]]

    @property
    def total(self) -> Decimal:
        return money(sum((v for _, v in self.points), ZERO))


def spend_over_time(query: ReportQuery, *, bucket: str | None = None) -> tuple[str, list[datetime], list[SpendSeries]]:
    """Spend per provider kind per time bucket over the query's period (filters applied).

    Returns ``(bucket, bucket starts, series)``; each series has a value (USD, 0 when no
    entry) for every bucket; series are ordered by total spend, largest first.
    """
    bucket = bucket or chart_bucket(query.period)
    sub = ReportQuery(
        period=query.period, group_by=("provider", bucket), team_id=query.team_id, user_id=query.user_id,
        provider=query.provider, provider_account_id=query.provider_account_id,
    )
    report = cost_report(sub)
    starts = bucket_starts(query.period, bucket)
    by_provider: dict[object, dict[datetime, Decimal]] = {}
    labels: dict[object, str] = {}
    for g in report.groups:
        provider = g.key["provider"]
        labels[provider] = g.labels["provider"]
        by_provider.setdefault(provider, {})[g.key[bucket]] = g.figures.spend
    series = [
        SpendSeries(provider=p, label=labels[p], points=[(s, values.get(s, ZERO)) for s in starts])
        for p, values in by_provider.items()
    ]
    series.sort(key=lambda s: (-s.total, s.label))
    return bucket, starts, series


# --- statements -------------------------------------------------------------------------------
def statement_entries(*, team_id: int, period: Period) -> QuerySet:
    """A team's spend entries (captures, adjustments, credits) of ``period``, oldest first.

    Holds and releases are left out: a statement charges back spend only.
    """
    query = ReportQuery(period=period, group_by=("member",), team_id=team_id)
    return report_entries(query).filter(kind__in=[Kind.CAPTURE, Kind.ADJUSTMENT, Kind.CREDIT])


def statement_period(*, team, month: str | date, tz: str | None = None) -> Period:
    """The calendar ``month`` (``YYYY-MM``) in ``tz``, by default the team's time zone."""
    return period_resolve("month", tz=tz or team.time_zone or "UTC", month=month)


# --- reconciliation ---------------------------------------------------------------------------
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
      ``balance_drop_usd`` converted (None for an unknown unit); ``captured_between`` = our
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
        unit, usd_per_unit = balance_unit(row.account.kind)
        row.balance_unit = unit
        if row.account.pk in with_snapshots:
            row.opening, row.closing = _snapshots(row.account, period)
        if row.opening is not None and row.closing is not None:
            row.balance_drop = money(row.opening.balance - row.closing.balance)
            if usd_per_unit is not None:
                row.balance_drop_usd = money(row.balance_drop * usd_per_unit)
            between = LedgerEntry.objects.filter(
                kind=Kind.CAPTURE, provider_account_id=row.account.pk,
                created_at__gte=row.opening.taken_at, created_at__lt=row.closing.taken_at,
            ).aggregate(t=_sum())["t"]
            row.captured_between = money(between)
        if row.captured_count or row.reported_count or row.opening is not None or provider_account_id is not None:
            out.append(row)
    return out
