"""Cost reports (billing.reports), exports (billing.exports), the /reports/ pages and the
/api/v1/reports endpoints, on a dataset written through the real services with a
controlled clock: totals equal the ledger's sum across period boundaries in several time
zones, the CSV and XLSX read back to the same numbers, members without the finance role
are refused, reconciliation shows differences."""

from __future__ import annotations

import csv
import io
import random
import re
from collections import defaultdict
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest
from django.utils import timezone

from accounts.models import ApiToken, Membership, Team, User
from billing import exports
from billing.balances import balance_snapshot_take
from billing.models import BalanceSnapshot, LedgerEntry
from billing.money import ZERO, money
from billing.reports import (
    ReportParamError,
    ReportQuery,
    can_view_reports,
    cost_report,
    ledger_spend_total,
    parse_group_by,
    period_resolve,
    reconciliation,
    report_query_from_params,
    spend_over_time,
)
from billing.services import ledger_adjust, ledger_credit
from generations import services
from generations.models import Generation, State
from generations.services import CreateParams
from providers.base import TaskState, TaskUpdate
from providers.models import ProviderAccount

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_queue")]

ZONES = ("UTC", "Europe/Paris", "America/Los_Angeles", "Asia/Tokyo")
SIX_PLACES = re.compile(r"^-?\d+\.\d{6}$")

#: provider kind → (model, mode, duration, resolution, price USD)
OFFERS = {
    "apixo": [("hailuo-2-3", "standard-text-to-video", 6, "768p", "0.336"), ("hailuo-2-3", "standard-text-to-video", 10, "768p", "0.56"),
              ("hailuo-2-3", "pro-text-to-video", 5, "1080p", "0.49")],
    "piapi": [("v2.3", "text-to-video", 6, "768p", "0.23"), ("v2.3-fast", "text-to-video", 10, "768p", "0.26")],
    "poyo": [("hailuo-2.3", "text-to-video", 6, "768p", "0.175"), ("hailuo-2.3", "text-to-video", 6, "1080p", "0.30")],
}


class Clock:
    """``timezone.now`` under the test's control (the services date entries with it)."""

    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    c = Clock(datetime(2026, 9, 20, 12, 0, tzinfo=UTC))
    monkeypatch.setattr(timezone, "now", c)
    return c


@pytest.fixture
def finance(db):
    team = Team.objects.create(name="Finance", time_zone="Europe/Paris")
    user = User.objects.create_user("finance@example.com", "pw-finance-123")
    Membership.objects.create(user=user, team=team, role=Membership.Role.FINANCE)
    return user


@pytest.fixture
def accounts(apixo_account):
    """APIXO on its sandbox (balance endpoint), PiAPI and PoYo pointing at a closed local port."""
    out = {"apixo": apixo_account}
    for kind, label in (("piapi", "PiAPI test"), ("poyo", "PoYo test")):
        account = ProviderAccount(kind=kind, label=label, base_url="http://127.0.0.1:9")
        account.set_api_key(f"sk-{kind}-test-0001")
        account.save()
        out[kind] = account
    return out


class World:
    """Writes generations and money through the real services at chosen times."""

    def __init__(self, clock: Clock, accounts: dict):
        self.clock = clock
        self.accounts = accounts
        self.serial = 0
        self.admin = User.objects.create_superuser("admin@example.com", "pw-admin-123")

    def generation(self, user, kind: str, offer: int, *, at: datetime, outcome: str | None = "succeeded",
                   settle_after: timedelta = timedelta(minutes=3), provider_cost: dict | None = None, team=None) -> Generation:
        model, mode, duration, resolution, _ = OFFERS[kind][offer]
        self.clock.now = at
        g = services.generation_create(
            user=user, team=team,
            params=CreateParams(
                provider_account_id=self.accounts[kind].pk, model=model, mode=mode, prompt="a cat on a windowsill",
                duration=duration, resolution=resolution,
            ),
        )
        if outcome is None:
            return g  # still in flight: its hold stays outstanding
        self.serial += 1
        Generation.objects.filter(pk=g.pk).update(state=State.SUBMITTED, provider_task_id=f"task-{self.serial}")
        self.clock.now = at + settle_after
        if outcome == "succeeded":
            update = TaskUpdate(task_id=f"task-{self.serial}", state=TaskState.SUCCEEDED, provider_state="success",
                                result_urls=("http://127.0.0.1:1/v.mp4",), provider_cost=provider_cost)
        else:
            update = TaskUpdate(task_id=f"task-{self.serial}", state=TaskState.FAILED, provider_state="failed",
                                fail_code="X", provider_cost=provider_cost)
        assert services.generation_apply_update(generation_id=g.pk, update=update) == outcome
        return g

    def adjust(self, user, amount: str, *, at: datetime, team=None, generation=None):
        self.clock.now = at
        return ledger_adjust(user=user, amount=Decimal(amount), reason="correction", created_by=self.admin, team=team,
                             generation=generation)

    def credit(self, user, amount: str, *, at: datetime, team=None):
        self.clock.now = at
        return ledger_credit(user=user, amount=Decimal(amount), reason="goodwill", created_by=self.admin, team=team)


@pytest.fixture
def world(clock, accounts):
    return World(clock, accounts)


@pytest.fixture
def dataset(world, clock):
    """Two teams in different zones, three providers, ~70 generations from late September
    to early December, many right at month and day boundaries, failures, holds settled in
    the next month, holds never settled, adjustments and credits. Ends with the clock at
    2026-12-10 12:00 UTC."""
    paris = Team.objects.create(name="Paris studio", time_zone="Europe/Paris")
    la = Team.objects.create(name="LA studio", time_zone="America/Los_Angeles")
    users = []
    for i, team in enumerate((paris, paris, la)):
        user = User.objects.create_user(f"artist{i}@example.com", "pw-artist-123")
        Membership.objects.create(user=user, team=team)
        users.append(user)
    boundaries = [
        datetime(2026, 10, 31, 23, 30, tzinfo=UTC),  # Paris/Tokyo: 1 Nov; LA: 31 Oct
        datetime(2026, 11, 1, 6, 30, tzinfo=UTC),  # LA: 31 Oct 23:30; elsewhere 1 Nov
        datetime(2026, 10, 31, 15, 30, tzinfo=UTC),  # Tokyo: 1 Nov 00:30; elsewhere 31 Oct
        datetime(2026, 11, 30, 23, 10, tzinfo=UTC),  # Paris/Tokyo: 1 Dec
        datetime(2026, 12, 1, 7, 59, tzinfo=UTC),  # LA: 30 Nov 23:59
        datetime(2026, 10, 25, 0, 30, tzinfo=UTC),  # Paris: the night the clocks go back
        datetime(2026, 9, 30, 22, 15, tzinfo=UTC),  # Paris: 1 Oct 00:15
    ]
    rng = random.Random(7)
    start = datetime(2026, 9, 25, tzinfo=UTC)
    times = [start + timedelta(minutes=rng.randrange(0, 70 * 24 * 60)) for _ in range(55)] + boundaries
    for n, at in enumerate(sorted(times)):
        kind = rng.choice(("apixo", "apixo", "piapi", "poyo"))
        offer = rng.randrange(len(OFFERS[kind]))
        outcome = rng.choices(("succeeded", "failed", None), weights=(7, 2, 1))[0]
        cost = None
        price = Decimal(OFFERS[kind][offer][4])
        if outcome == "succeeded" and kind == "piapi":  # the provider's own report, as the adapters store it
            cost = {"type": "video", "frozen": 0, "consume": int(price * 10**7), "usd": str(price)}
        if outcome == "succeeded" and kind == "poyo":
            cost = {"credits": str(price / Decimal("0.005")), "usd": str(price)}
        # Every fifth one settles two hours later, so some holds and captures straddle a month.
        world.generation(users[n % 3], kind, offer, at=at, outcome=outcome, provider_cost=cost,
                         settle_after=timedelta(hours=2) if n % 5 == 0 else timedelta(minutes=3))
    world.adjust(users[0], "1.250000", at=datetime(2026, 10, 31, 23, 45, tzinfo=UTC), team=paris)
    world.adjust(users[2], "-0.400000", at=datetime(2026, 11, 1, 7, 0, tzinfo=UTC), team=la)
    world.credit(users[1], "0.336", at=datetime(2026, 11, 15, 12, 0, tzinfo=UTC), team=paris)
    world.credit(users[2], "0.10", at=datetime(2026, 11, 20, 23, 30, tzinfo=UTC))  # no team
    clock.now = datetime(2026, 12, 10, 12, 0, tzinfo=UTC)
    return {"paris": paris, "la": la, "users": users}


# --- the ledger as an independent oracle ---------------------------------------------------------
def entry_spend(e: LedgerEntry) -> Decimal:
    return {"capture": e.amount, "adjustment": e.amount, "credit": -e.amount}.get(e.kind, ZERO)


def oracle(start: datetime, end: datetime, **filters) -> list[LedgerEntry]:
    entries = [e for e in LedgerEntry.objects.select_related("generation").all() if start <= e.created_at < end]
    if "team_id" in filters:
        entries = [e for e in entries if e.team_id == filters["team_id"]]
    return entries


def month_bounds(year: int, month: int, tz: str) -> tuple[datetime, datetime]:
    zone = ZoneInfo(tz)
    end = datetime(year + (month == 12), month % 12 + 1, 1, tzinfo=zone)
    return datetime(year, month, 1, tzinfo=zone), end


def month_query(month: str, tz: str, group_by=("provider",), **kw) -> ReportQuery:
    return ReportQuery(period=period_resolve("month", tz=tz, month=month), group_by=tuple(group_by), **kw)


# --- periods -------------------------------------------------------------------------------------
def test_periods_are_aligned_in_the_chosen_zone():
    now = datetime(2026, 11, 30, 23, 30, tzinfo=UTC)  # already 1 December in Paris
    assert period_resolve("this_month", tz="UTC", now=now).slug == "2026-11"
    paris = period_resolve("this_month", tz="Europe/Paris", now=now)
    assert paris.slug == "2026-12" and paris.start.isoformat() == "2026-12-01T00:00:00+01:00"
    last = period_resolve("last_month", tz="America/Los_Angeles", now=now)
    assert last.slug == "2026-10" and last.start.isoformat() == "2026-10-01T00:00:00-07:00"
    assert last.end.isoformat() == "2026-11-01T00:00:00-07:00"  # PDT until 1 November
    quarter = period_resolve("this_quarter", tz="Asia/Tokyo", now=now)
    assert quarter.slug == "2026-Q4" and quarter.end.isoformat() == "2027-01-01T00:00:00+09:00"
    custom = period_resolve("custom", tz="Europe/Paris", date_from=date(2026, 10, 20), date_to=date(2026, 10, 26))
    assert custom.end.astimezone(UTC) - custom.start.astimezone(UTC) == timedelta(days=7, hours=1)  # clocks went back on the 25th
    assert custom.slug == "2026-10-20_2026-10-26" and custom.days == 7
    with pytest.raises(ReportParamError) as bad:
        period_resolve("custom", date_from=date(2026, 10, 2), date_to=date(2026, 10, 1))
    assert "to" in bad.value.fields
    with pytest.raises(ReportParamError):
        period_resolve("this_month", tz="Mars/Olympus")
    with pytest.raises(ReportParamError):
        parse_group_by("team,day,month")
    with pytest.raises(ReportParamError) as many:
        report_query_from_params({"period": "fortnight", "tz": "Nowhere", "group_by": "colour", "team_id": "x"})
    assert set(many.value.fields) >= {"period", "tz", "group_by", "team_id"} or set(many.value.fields) >= {"tz", "group_by", "team_id"}


# --- totals ------------------------------------------------------------------------------------
GROUPINGS = [("provider",), ("team", "month"), ("member", "day"), ("provider_account", "model", "week"), ("mode", "resolution")]


@pytest.mark.parametrize("tz", ZONES)
def test_totals_equal_the_ledger_in_every_zone_and_grouping(dataset, tz):
    for year, month in ((2026, 10), (2026, 11)):
        start, end = month_bounds(year, month, tz)
        entries = oracle(start, end)
        expected = money(sum((entry_spend(e) for e in entries), ZERO))
        assert ledger_spend_total(start=start, end=end) == expected
        for group_by in GROUPINGS:
            report = cost_report(month_query(f"{year}-{month:02d}", tz, group_by))
            t = report.totals
            assert t.spend == expected, (tz, month, group_by)
            assert t.succeeded == sum(e.kind == "capture" for e in entries)
            assert t.released_count == sum(e.kind == "release" for e in entries)
            assert t.canceled == sum(e.kind == "release" and e.generation.state == "canceled" for e in entries)
            assert t.expired == sum(e.kind == "release" and e.generation.state == "expired" for e in entries)
            assert t.entries == len(entries)
            assert t.captured == money(sum((e.amount for e in entries if e.kind == "capture"), ZERO))
            assert t.credits == money(sum((e.amount for e in entries if e.kind == "credit"), ZERO))
            assert t.adjustments == money(sum((e.amount for e in entries if e.kind == "adjustment"), ZERO))
            assert t.spend == t.captured + t.adjustments - t.credits
            assert money(sum((g.figures.spend for g in report.groups), ZERO)) == t.spend
            assert sum(g.figures.succeeded for g in report.groups) == t.succeeded
            assert sum(g.figures.entries for g in report.groups) == t.entries
            if t.succeeded:
                assert t.average_price == money(t.captured / t.succeeded)


def test_the_month_boundary_really_moves_money_between_zones(dataset):
    totals = {tz: cost_report(month_query("2026-11", tz)).totals.spend for tz in ZONES}
    assert len(set(totals.values())) >= 3, totals


@pytest.mark.parametrize("tz,bucket", [("Europe/Paris", "day"), ("America/Los_Angeles", "week"), ("Asia/Tokyo", "month")])
def test_time_buckets_are_truncated_in_the_report_zone(dataset, tz, bucket):
    zone = ZoneInfo(tz)
    query = ReportQuery(period=period_resolve("this_quarter", tz=tz, now=datetime(2026, 11, 1, tzinfo=UTC)), group_by=(bucket,))
    report = cost_report(query)
    expected: dict[date, Decimal] = defaultdict(lambda: ZERO)
    for e in oracle(query.period.start, query.period.end):
        local = e.created_at.astimezone(zone).date()
        if bucket == "week":
            local -= timedelta(days=local.weekday())
        elif bucket == "month":
            local = local.replace(day=1)
        expected[local] += entry_spend(e)
    got = {}
    for g in report.groups:
        start = g.key[bucket].astimezone(zone)
        assert (start.hour, start.minute) == (0, 0)
        got[start.date()] = g.figures.spend
    assert got == {k: money(v) for k, v in expected.items()}
    assert [g.key[bucket] for g in report.groups] == sorted(g.key[bucket] for g in report.groups)


def test_groups_and_filters(dataset):
    paris, la = dataset["paris"], dataset["la"]
    query = month_query("2026-11", "Europe/Paris", ("team",))
    report = cost_report(query)
    start, end = query.period.start, query.period.end
    by_team = {g.key["team"]: g for g in report.groups}
    for team in (paris, la):
        expected = money(sum((entry_spend(e) for e in oracle(start, end) if e.team_id == team.pk), ZERO))
        assert by_team[team.pk].figures.spend == expected
        assert by_team[team.pk].labels["team"] == team.name
        filtered = cost_report(month_query("2026-11", "Europe/Paris", ("provider",), team_id=team.pk))
        assert filtered.totals.spend == expected
    assert by_team[None].labels["team"] == "(no team)"  # the credit without a team
    by_provider = cost_report(month_query("2026-11", "Europe/Paris", ("provider", "model")))
    piapi = cost_report(month_query("2026-11", "Europe/Paris", ("model",), provider="piapi"))
    assert piapi.totals.spend == money(sum((g.figures.spend for g in by_provider.groups if g.key["provider"] == "piapi"), ZERO))
    assert {g.key["model"] for g in piapi.groups} <= {"v2.3", "v2.3-fast"}


def test_adjustment_on_a_generation_is_attributed_to_its_provider(world, clock, dataset):
    user = dataset["users"][0]
    g = world.generation(user, "poyo", 0, at=datetime(2026, 12, 2, 9, 0, tzinfo=UTC))
    world.adjust(user, "-0.025", at=datetime(2026, 12, 2, 10, 0, tzinfo=UTC), generation=g, team=dataset["paris"])
    report = cost_report(ReportQuery(
        period=period_resolve("custom", tz="UTC", date_from=date(2026, 12, 2), date_to=date(2026, 12, 2)),
        group_by=("provider", "model"),
    ))
    (poyo,) = [x for x in report.groups if x.key["provider"] == "poyo"]
    assert poyo.figures.spend == Decimal("0.150000") and poyo.figures.adjustments == Decimal("-0.025000")


def test_outstanding_holds_are_reported_apart_from_spend(dataset):
    query = month_query("2026-11", "UTC")
    report = cost_report(query)
    as_of = query.period.end
    settled_by = {e.generation_id for e in LedgerEntry.objects.filter(kind__in=["capture", "release"], created_at__lt=as_of)}
    open_holds = [e for e in LedgerEntry.objects.filter(kind="hold", created_at__lt=as_of) if e.generation_id not in settled_by]
    assert report.outstanding.count == len(open_holds) > 0
    assert report.outstanding.amount == money(sum((e.amount for e in open_holds), ZERO))


def test_spend_over_time_has_a_point_per_bucket_and_sums_to_the_total(dataset):
    query = month_query("2026-11", "Europe/Paris")
    bucket, starts, series = spend_over_time(query)
    assert bucket == "day" and len(starts) == 30
    assert all(len(s.points) == 30 for s in series)
    assert money(sum((s.total for s in series), ZERO)) == cost_report(query).totals.spend


# --- exports -----------------------------------------------------------------------------------
def read_csv(response) -> list[dict]:
    body = b"".join(response.streaming_content).decode("utf-8")
    return list(csv.DictReader(io.StringIO(body)))


@pytest.mark.parametrize("tz", ["Europe/Paris", "America/Los_Angeles"])
def test_entries_csv_parses_back_to_the_same_numbers(client, finance, dataset, tz):
    client.force_login(finance)
    response = client.get("/reports/export.csv", {"period": "month", "month": "2026-11", "tz": tz})
    assert response.status_code == 200 and response.streaming
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert 'filename="hailuo-costs-2026-11.csv"' in response["Content-Disposition"]
    rows = read_csv(response)
    assert list(rows[0]) == list(exports.ENTRY_COLUMNS)
    report = cost_report(month_query("2026-11", tz))
    start, end = month_bounds(2026, 11, tz)
    assert len(rows) == len(oracle(start, end)) == report.totals.entries
    assert sum(Decimal(r["spend_usd"]) for r in rows) == report.totals.spend
    assert sum(Decimal(r["amount_usd"]) for r in rows if r["kind"] == "capture") == report.totals.captured
    assert sum(r["kind"] == "capture" for r in rows) == report.totals.succeeded
    zone = ZoneInfo(tz)
    for r in rows:
        assert SIX_PLACES.match(r["amount_usd"]) and SIX_PLACES.match(r["spend_usd"])
        created = datetime.fromisoformat(r["created_at"])
        assert created.utcoffset() == created.astimezone(zone).utcoffset()  # written with the zone's offset
        assert start <= created < end
    entry = LedgerEntry.objects.get(pk=int(rows[0]["entry_id"]))
    assert datetime.fromisoformat(rows[0]["created_at"]) == entry.created_at


def test_groups_csv_has_one_row_per_group(client, finance, dataset):
    client.force_login(finance)
    response = client.get("/reports/export.csv", {"period": "month", "month": "2026-10", "tz": "UTC", "group_by": "team,week", "rows": "groups"})
    assert 'filename="hailuo-costs-2026-10-by-team-week.csv"' in response["Content-Disposition"]
    rows = read_csv(response)
    report = cost_report(month_query("2026-10", "UTC", ("team", "week")))
    assert len(rows) == len(report.groups)
    assert sum(Decimal(r["spend_usd"]) for r in rows) == report.totals.spend
    assert all(datetime.fromisoformat(r["week_start"]).weekday() == 0 for r in rows)


def _xlsx(response):
    import openpyxl

    body = b"".join(response.streaming_content)
    return openpyxl.load_workbook(io.BytesIO(body))


def _table(sheet, first: str):
    rows = list(sheet.iter_rows(values_only=True))
    header_at = next(i for i, r in enumerate(rows) if r and r[0] == first)
    return rows[:header_at], rows[header_at], rows[header_at + 1:]


def test_entries_xlsx_opens_with_typed_cells_and_matching_sums(client, finance, dataset):
    client.force_login(finance)
    response = client.get("/reports/export.xlsx", {"period": "month", "month": "2026-11", "tz": "Europe/Paris"})
    assert response.status_code == 200
    assert 'filename="hailuo-costs-2026-11.xlsx"' in response["Content-Disposition"]
    book = _xlsx(response)
    sheet = book["Entries"]
    title, header, body = _table(sheet, "entry_id")
    assert any("Europe/Paris" in str(r[0]) for r in title)  # the zone the times were converted to
    data, total = body[:-1], body[-1]
    col = {name: i for i, name in enumerate(header)}
    report = cost_report(month_query("2026-11", "Europe/Paris"))
    assert len(data) == report.totals.entries
    spend = sum(Decimal(str(r[col["spend_usd"]])) for r in data)
    assert money(spend) == report.totals.spend == money(Decimal(str(total[col["spend_usd"]])))
    assert total[0] == "Total"
    first = data[0]
    assert isinstance(first[col["created_at"]], datetime) and first[col["created_at"]].tzinfo is None
    entry = LedgerEntry.objects.get(pk=first[col["entry_id"]])
    assert first[col["created_at"]] == entry.created_at.astimezone(ZoneInfo("Europe/Paris")).replace(tzinfo=None)
    assert isinstance(first[col["amount_usd"]], (int, float))
    # Number formats survive: amounts with six places.
    rows = list(sheet.iter_rows(min_row=len(title) + 2, max_row=len(title) + 2))
    assert rows[0][col["amount_usd"]].number_format == exports.USD_FORMAT


def test_groups_xlsx_has_a_totals_row(client, finance, dataset):
    client.force_login(finance)
    response = client.get("/reports/export.xlsx", {"period": "month", "month": "2026-11", "tz": "UTC", "group_by": "provider,day", "rows": "groups"})
    book = _xlsx(response)
    _, header, body = _table(book["Report"], "provider")
    col = {name: i for i, name in enumerate(header)}
    total_at = next(i for i, r in enumerate(body) if r[0] == "Total")
    data, total = body[:total_at], body[total_at]
    report = cost_report(month_query("2026-11", "UTC", ("provider", "day")))
    assert len(data) == len(report.groups)
    assert money(sum(Decimal(str(r[col["spend_usd"]])) for r in data)) == report.totals.spend
    assert money(Decimal(str(total[col["spend_usd"]]))) == report.totals.spend
    assert total[col["succeeded"]] == report.totals.succeeded
    assert isinstance(data[0][col["day_start"]], datetime)


def test_team_statement_csv_and_xlsx(client, finance, dataset):
    paris = dataset["paris"]
    client.force_login(finance)
    response = client.get(f"/reports/statements/{paris.pk}/2026-11.csv")
    assert response.status_code == 200
    assert 'filename="hailuo-statement-paris-studio-2026-11.csv"' in response["Content-Disposition"]
    rows = read_csv(response)
    report = cost_report(month_query("2026-11", "Europe/Paris", team_id=paris.pk))  # the team's own zone
    assert sum(Decimal(r["amount_usd"]) for r in rows) == report.totals.spend
    assert {r["kind"] for r in rows} <= {"capture", "adjustment", "credit"}
    assert all(datetime.fromisoformat(r["date"]).utcoffset() in (timedelta(hours=1), timedelta(hours=2)) for r in rows)
    book = _xlsx(client.get(f"/reports/statements/{paris.pk}/2026-11.xlsx"))
    _, header, body = _table(book["Statement"], "date")
    col = {name: i for i, name in enumerate(header)}
    assert body[-1][0] == "Total" and money(Decimal(str(body[-1][col["amount_usd"]]))) == report.totals.spend
    _, _, members = _table(book["By member"], "member")
    assert money(Decimal(str(members[-1][2]))) == report.totals.spend


# --- the page and the API ----------------------------------------------------------------------
def test_reports_page_renders_totals_chart_and_htmx_fragment(client, finance, dataset):
    client.force_login(finance)
    params = {"period": "month", "month": "2026-11", "tz": "Europe/Paris", "group": "team", "time": "week"}
    response = client.get("/reports/", params)
    assert response.status_code == 200
    html = response.content.decode()
    report = cost_report(month_query("2026-11", "Europe/Paris"))
    from billing.money import format_usd

    assert format_usd(report.totals.spend) in html
    assert "<svg" in html and "<polyline" in html and "Paris studio" in html
    assert "hailuo-costs" not in html or "export.csv" in html
    fragment = client.get("/reports/", params, HTTP_HX_REQUEST="true")
    assert fragment.status_code == 200 and b"<html" not in fragment.content and b'id="report"' in fragment.content
    bad = client.get("/reports/", {"period": "custom", "from": "2026-11-05"})
    assert bad.status_code == 422 and b"Give an end date" in bad.content


def test_reconciliation_page_renders(client, finance, dataset):
    client.force_login(finance)
    bad = client.get("/reports/reconciliation/", {"period": "custom", "from": "2026-11-01"})
    assert bad.status_code == 422 and b"Give an end date" in bad.content
    response = client.get("/reports/reconciliation/", {"period": "month", "month": "2026-11"})
    assert response.status_code == 200 and b"PiAPI test" in response.content
    assert b'class="flagged"' not in response.content  # the dataset's provider reports agree with our captures
    rows = {r.account.kind: r for r in reconciliation(period=period_resolve("month", tz="UTC", month="2026-11"))}
    assert rows["piapi"].cost_difference == rows["poyo"].cost_difference == ZERO
    assert rows["piapi"].reported_count == rows["piapi"].captured_count > 0


def _bearer(user) -> dict:
    _, raw = ApiToken.issue(user=user, name="tests")
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def test_api_report_json_and_csv(client, finance, dataset):
    headers = _bearer(finance)
    response = client.get("/api/v1/reports/costs", {"period": "month", "month": "2026-11", "tz": "Asia/Tokyo", "group_by": "team,month"}, **headers)
    assert response.status_code == 200, response.content
    body = response.json()
    report = cost_report(month_query("2026-11", "Asia/Tokyo"))
    assert body["totals"]["spend_usd"] == f"{report.totals.spend:.6f}"
    assert body["period"]["start"].startswith("2026-11-01T00:00:00+09:00")
    assert sum(Decimal(g["figures"]["spend_usd"]) for g in body["groups"]) == report.totals.spend
    assert all(g["key"]["month"].startswith("2026-11-01T00:00:00+09:00") for g in body["groups"])
    custom = client.get("/api/v1/reports/costs", {"period": "custom", "from": "2026-11-01", "to": "2026-11-30", "tz": "Asia/Tokyo"}, **headers)
    assert custom.json()["totals"]["spend_usd"] == body["totals"]["spend_usd"]
    exported = client.get("/api/v1/reports/costs.csv", {"period": "month", "month": "2026-11", "tz": "Asia/Tokyo"}, **headers)
    assert exported.status_code == 200 and "hailuo-costs-2026-11.csv" in exported["Content-Disposition"]
    assert sum(Decimal(r["spend_usd"]) for r in read_csv(exported)) == report.totals.spend
    bad = client.get("/api/v1/reports/costs", {"tz": "Mars/Olympus", "group_by": "colour"}, **headers)
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_request" and set(bad.json()["fields"]) == {"tz", "group_by"}
    statement = client.get(f"/api/v1/reports/statements/{dataset['la'].pk}.csv", {"month": "2026-11"}, **headers)
    assert statement.status_code == 200 and "hailuo-statement-la-studio-2026-11.csv" in statement["Content-Disposition"]
    assert client.get("/api/v1/reports/statements/999999.csv", {"month": "2026-11"}, **headers).json()["code"] == "not_found"


# --- who may see ---------------------------------------------------------------------------------
def test_a_member_without_the_finance_role_is_refused_on_the_web_and_the_api(client, member, team, dataset):
    Membership.objects.filter(user=member).update(role=Membership.Role.TEAM_ADMIN)  # even a team admin
    assert not can_view_reports(member)
    client.force_login(member)
    for url in ("/reports/", "/reports/export.csv", "/reports/export.xlsx", f"/reports/statements/{team.pk}/2026-11.csv",
                "/reports/reconciliation/"):
        assert client.get(url).status_code == 403, url
    assert client.post("/reports/reconciliation/snapshot/").status_code == 403
    headers = _bearer(member)
    for url in ("/api/v1/reports/costs", "/api/v1/reports/costs.csv", "/api/v1/reports/costs.xlsx",
                "/api/v1/reports/reconciliation", f"/api/v1/reports/statements/{team.pk}.csv?month=2026-11"):
        response = client.get(url, **headers)
        assert response.status_code == 403 and response.json()["code"] == "forbidden", url
    assert client.get("/api/v1/reports/costs").status_code == 401
    client.logout()
    assert client.get("/reports/").status_code == 302  # to the login page


def test_finance_staff_and_superusers_may_see_reports(client, finance, world):
    staff = User.objects.create_user("staff@example.com", "pw-staff-123", is_staff=True)
    for user in (finance, staff, world.admin):
        assert can_view_reports(user)
        client.force_login(user)
        assert client.get("/reports/").status_code == 200
        assert client.get("/api/v1/reports/costs", **_bearer(user)).status_code == 200
    finance.is_active = False
    assert not can_view_reports(finance)


# --- reconciliation --------------------------------------------------------------------------------
def test_reconciliation_shows_reported_cost_and_balance_differences(world, clock, accounts, sandbox, member):
    apixo = accounts["apixo"]
    day = datetime(2026, 11, 10, 9, 0, tzinfo=UTC)
    # APIXO reports no per-task cost, but its balance endpoint answers (the sandbox).
    sandbox.configure(balance=100)
    clock.now = day
    opening = balance_snapshot_take(account=apixo)
    assert opening is not None and opening.balance == Decimal("100") and opening.unit == "USD"
    world.generation(member, "apixo", 0, at=day + timedelta(hours=1))  # 0.336
    world.generation(member, "apixo", 1, at=day + timedelta(hours=2))  # 0.56
    world.generation(member, "apixo", 0, at=day + timedelta(hours=3), outcome="failed")
    sandbox.configure(balance=98.904)  # the provider took 1.096: 0.20 more than we captured
    clock.now = day + timedelta(hours=5)
    balance_snapshot_take(account=apixo)
    # PiAPI reports its cost per task: one matches, one is 0.02 more, one failure charged 0.05.
    world.generation(member, "piapi", 0, at=day + timedelta(hours=1), provider_cost={"consume": 2300000, "usd": "0.23"})
    world.generation(member, "piapi", 0, at=day + timedelta(hours=2), provider_cost={"consume": 2500000, "usd": "0.25"})
    world.generation(member, "piapi", 0, at=day + timedelta(hours=3), outcome="failed", provider_cost={"consume": 500000, "usd": "0.05"})
    world.generation(member, "piapi", 0, at=day + timedelta(hours=4))  # no usage reported
    # PoYo in credits: exactly what we captured.
    world.generation(member, "poyo", 0, at=day + timedelta(hours=1), provider_cost={"credits": "35", "usd": "0.175"})
    clock.now = day + timedelta(days=1)

    period = period_resolve("month", tz="UTC", month="2026-11")
    rows = {r.account.kind: r for r in reconciliation(period=period)}

    a = rows["apixo"]
    assert a.captured == Decimal("0.896") and a.captured_count == 2 and a.reported_usd is None
    assert a.balance_drop == Decimal("1.096") and a.balance_drop_usd == Decimal("1.096")
    assert a.captured_between == Decimal("0.896") and a.balance_difference == Decimal("-0.2")
    assert a.balance_flagged and a.flagged

    p = rows["piapi"]
    assert p.captured == Decimal("0.69") and p.captured_count == 3
    assert p.reported_usd == Decimal("0.53") and p.reported_count == 3 and p.unreported_count == 1
    assert p.captured_on_reported == Decimal("0.46")
    assert p.cost_difference == Decimal("-0.07") and p.cost_flagged  # 0.02 over-charge + 0.05 for a failure
    assert p.opening is None and p.balance_difference is None

    y = rows["poyo"]
    assert y.reported_usd == Decimal("0.175") and y.reported_credits == Decimal("35")
    assert y.cost_difference == Decimal("0") and not y.flagged

    # Shown highlighted on the page, and in the API.
    from django.test import Client

    finance_user = User.objects.create_user("fin2@example.com", "pw", is_staff=True)
    web = Client()
    web.force_login(finance_user)
    html = web.get("/reports/reconciliation/", {"period": "month", "month": "2026-11", "tz": "UTC"}).content.decode()
    assert 'class="flagged"' in html and "-$0.07" in html and "-$0.20" in html
    api = web.get("/api/v1/reports/reconciliation", {"period": "month", "month": "2026-11"}, **_bearer(finance_user)).json()
    by_label = {r["label"]: r for r in api["accounts"]}
    assert by_label["PiAPI test"]["cost_difference_usd"] == "-0.070000" and by_label["PiAPI test"]["flagged"]
    assert by_label["APIXO test"]["balance_difference_usd"] == "-0.200000"


def test_snapshot_task_snapshots_every_enabled_account(accounts, sandbox):
    from billing.tasks import snapshot_balances

    sandbox.configure(balance=42.5)
    ProviderAccount.objects.filter(pk=accounts["poyo"].pk).update(enabled=False)
    result = snapshot_balances()
    assert result == {"taken": 1, "skipped": 1}  # APIXO answered; PiAPI is unreachable here; PoYo is disabled
    snap = BalanceSnapshot.objects.get()
    assert snap.provider_account_id == accounts["apixo"].pk and snap.balance == Decimal("42.5")


def test_poyo_balance_is_kept_in_credits_and_converted(accounts, monkeypatch):
    from providers import services as provider_services
    from providers.services import ConnectionCheck

    answers = iter([Decimal("1000"), Decimal("965")])
    monkeypatch.setattr(provider_services, "provider_account_check", lambda *, account: ConnectionCheck(True, next(answers), "ok"))
    poyo = accounts["poyo"]
    first = balance_snapshot_take(account=poyo)
    BalanceSnapshot.objects.filter(pk=first.pk).update(taken_at=datetime(2026, 11, 2, tzinfo=UTC))
    second = balance_snapshot_take(account=poyo)
    BalanceSnapshot.objects.filter(pk=second.pk).update(taken_at=datetime(2026, 11, 3, tzinfo=UTC))
    assert first.unit == "credits"
    (row,) = reconciliation(period=period_resolve("month", tz="UTC", month="2026-11"), provider_account_id=poyo.pk)
    assert row.balance_drop == Decimal("35") and row.balance_drop_usd == Decimal("0.175")
    assert row.captured_between == ZERO and row.balance_difference == Decimal("-0.175") and row.flagged
