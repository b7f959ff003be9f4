"""The one period calculator: calendar periods in an IANA zone, for reports and budgets.

Periods are half-open ``[start, end)`` from local midnight to local midnight, as aware
datetimes in the zone (DST changes inside a period are honoured); weeks start on Monday,
quarters are calendar quarters. :func:`calendar_bounds` is the core; :func:`period_resolve`
builds report periods (:class:`Period`) on it and :func:`period_bounds` a budget's current
period (``billing.selectors``).
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from django.utils import timezone

from billing.reports.errors import ReportParamError

#: Report periods (:func:`period_resolve`).
PERIOD_KINDS = ("this_month", "last_month", "this_quarter", "month", "custom")
#: Calendar units of :func:`calendar_bounds`; a budget's period is one of day/week/month or "none".
CALENDAR_UNITS = ("day", "week", "month", "quarter")


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


def local_midnight(day: date, zone: ZoneInfo) -> datetime:
    """``day`` at 00:00 in ``zone``, aware (the first occurrence if a DST change repeats it)."""
    return datetime(day.year, day.month, day.day, tzinfo=zone)


def add_months(day: date, months: int) -> date:
    """The first day of the month ``months`` after (negative: before) ``day``'s month."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def calendar_first_day(unit: str, day: date) -> date:
    """The first day of the calendar ``unit`` (day, week from Monday, month, quarter) containing ``day``.

    Raises ``ValueError`` for another unit.
    """
    if unit == "day":
        return day
    if unit == "week":
        return day - timedelta(days=day.weekday())
    if unit == "month":
        return day.replace(day=1)
    if unit == "quarter":
        return date(day.year, (day.month - 1) // 3 * 3 + 1, 1)
    raise ValueError(f"unknown calendar unit {unit!r}: use one of {', '.join(CALENDAR_UNITS)}")


def calendar_next_first_day(unit: str, first: date) -> date:
    """The first day of the ``unit`` after the one starting on ``first``."""
    if unit == "day":
        return first + timedelta(days=1)
    if unit == "week":
        return first + timedelta(days=7)
    return add_months(first, 3 if unit == "quarter" else 1)


def calendar_bounds(unit: str, day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    """``[start, end)`` of the calendar ``unit`` containing the local ``day``, as aware local midnights.

    ``unit``: day, week (Monday first), month or quarter (calendar quarters). The bounds
    are built from calendar dates, so a DST change inside the period moves ``end`` by the
    change, never the day. Raises ``ValueError`` for another unit.
    """
    first = calendar_first_day(unit, day)
    return local_midnight(first, zone), local_midnight(calendar_next_first_day(unit, first), zone)


def _month_period(kind: str, first: date, zone: ZoneInfo, tz: str) -> Period:
    start, end = calendar_bounds("month", first, zone)
    return Period(
        kind=kind, start=start, end=end, tz=tz,
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
    """The report :class:`Period` for ``kind`` in zone ``tz``, relative to ``now`` (default: the clock).

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
        return _month_period(kind, add_months(first, -1), zone, tz)
    if kind == "month":
        if not month:
            raise ReportParamError({"month": ["Give the month as YYYY-MM."]})
        return _month_period(kind, month if isinstance(month, date) else parse_month(month), zone, tz)
    if kind == "this_quarter":
        start, end = calendar_bounds("quarter", today, zone)
        quarter = (today.month - 1) // 3
        return Period(
            kind=kind, start=start, end=end, tz=tz, label=f"Q{quarter + 1} {today.year}", slug=f"{today.year}-Q{quarter + 1}",
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
            kind=kind, start=local_midnight(date_from, zone), end=local_midnight(date_to + timedelta(days=1), zone), tz=tz,
            label=f"{date_from.day} {date_from:%b %Y} – {date_to.day} {date_to:%b %Y}",
            slug=f"{date_from:%Y-%m-%d}_{date_to:%Y-%m-%d}",
        )
    raise ReportParamError({"period": [f"Unknown period {kind!r}: use one of {', '.join(PERIOD_KINDS)}."]})


def period_bounds(period: str, *, tz_name: str = "UTC", now: datetime | None = None) -> tuple[datetime | None, datetime | None]:
    """A budget's current period: start (inclusive) and end (exclusive) of the ``period``
    (day, week, month) containing ``now`` (default: the clock) in zone ``tz_name`` (empty: UTC).

    ``none`` (a lifetime budget) → ``(None, None)``. Weeks start on Monday. Raises
    ``ValueError`` for an unknown period; an unknown zone raises ``ZoneInfoNotFoundError``.
    """
    zone = ZoneInfo(tz_name or "UTC")
    if period == "none":
        return None, None
    if period not in ("day", "week", "month"):
        raise ValueError(f"unknown budget period {period!r}")
    return calendar_bounds(period, (now or timezone.now()).astimezone(zone).date(), zone)
