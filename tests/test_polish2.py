"""Issue 14, second round: the chart stops at today, the report splits failed / canceled /
expired, XLSX niceties, the time-zone select, hide/unhide, staff notified of account-level
provider problems, Budget admin multi-selects, ETAs and "My spending"."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from accounts.models import Membership, Team, User
from billing.models import LedgerEntry
from billing.money import ZERO, money
from billing.reports import ReportQuery, cost_report, period_resolve, spend_chart, spend_over_time

pytestmark = [pytest.mark.django_db]


def _adjust(user, team, amount: str, when: datetime) -> LedgerEntry:
    return LedgerEntry.objects.create(
        kind="adjustment", amount=Decimal(amount), user=user, team=team, reason="test charge",
        effective_at=when, created_at=when,
    )


@pytest.fixture
def finance_team(db):
    team = Team.objects.create(name="Money", time_zone="UTC")
    user = User.objects.create_user("fin2@example.com", "pw-fin-123")
    Membership.objects.create(user=user, team=team, role=Membership.Role.FINANCE)
    return team, user


# --- bug 6: no chart points after now ----------------------------------------------------------
def test_the_chart_of_a_running_month_has_no_point_after_today(finance_team):
    team, user = finance_team
    _adjust(user, team, "1.25", datetime(2026, 10, 3, 9, tzinfo=UTC))
    _adjust(user, team, "0.50", datetime(2026, 10, 12, 8, tzinfo=UTC))
    now = datetime(2026, 10, 12, 15, 0, tzinfo=UTC)
    query = ReportQuery(period=period_resolve("month", tz="UTC", month="2026-10"), group_by=("provider",))
    bucket, starts, series = spend_over_time(query, now=now)
    assert bucket == "day" and len(starts) == 31  # the axis still spans the month
    (line,) = series
    assert [s.day for s, _ in line.points] == list(range(1, 13))  # 1..12 October, nothing after today
    assert all(start <= now for start, _ in line.points)
    assert line.total == money(Decimal("1.75")) == cost_report(query).totals.spend
    chart = spend_chart(bucket, starts, series, query.period.zone)
    xs = [float(d["x"]) for d in chart["lines"][0]["dots"]]
    assert len(xs) == 12 and max(xs) < chart["plot"]["right"]
    step = (chart["plot"]["right"] - chart["plot"]["left"]) / 30
    assert max(xs) == pytest.approx(chart["plot"]["left"] + 11 * step, abs=0.1)  # 12 October's x
    # a finished month keeps a point for every day
    _, starts_done, series_done = spend_over_time(query, now=datetime(2026, 11, 5, tzinfo=UTC))
    assert len(series_done[0].points) == len(starts_done) == 31
    assert series_done[0].total == line.total != ZERO
