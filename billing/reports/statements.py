"""Team statements: a team's monthly chargeback (its spend entries), the month aligned to the team's zone."""

from __future__ import annotations

from datetime import date

from django.db.models import QuerySet

from billing.models import LedgerEntry
from billing.reports.cost import ReportQuery, report_entries
from billing.reports.periods import Period, period_resolve

Kind = LedgerEntry.Kind


def statement_entries(*, team_id: int, period: Period) -> QuerySet:
    """A team's spend entries (captures, adjustments, credits) of ``period``, oldest first.

    Holds and releases are left out: a statement charges back spend only.
    """
    query = ReportQuery(period=period, group_by=("member",), team_id=team_id)
    return report_entries(query).filter(kind__in=[Kind.CAPTURE, Kind.ADJUSTMENT, Kind.CREDIT])


def statement_period(*, team, month: str | date, tz: str | None = None) -> Period:
    """The calendar ``month`` (``YYYY-MM``) in ``tz``, by default the team's time zone."""
    return period_resolve("month", tz=tz or team.time_zone or "UTC", month=month)


