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


# --- rough edge 8: failed / canceled / expired apart; XLSX layout; the zone select --------------
def _generation(user, team, account, state: str, when: datetime, *, price: str = "0.336"):
    from generations.models import Generation

    g = Generation.objects.create(
        user=user, team=team, provider_account=account, provider_kind=account.kind, model="hailuo-2-3",
        mode="standard-text-to-video", prompt=f"a {state} kite", duration=6, resolution="768p",
        quoted_amount=Decimal(price), state=state, created_at=when, submitted_at=when, completed_at=when,
    )
    LedgerEntry.objects.create(kind="hold", amount=Decimal(price), user=user, team=team, provider_account=account,
                               generation=g, effective_at=when, created_at=when)
    settle = {"kind": "capture", "hold_amount": Decimal(price)} if state == "succeeded" else {"kind": "release", "reason": state}
    LedgerEntry.objects.create(amount=Decimal(price), user=user, team=team, provider_account=account, generation=g,
                               effective_at=when, created_at=when, **settle)
    return g


@pytest.fixture
def outcomes(finance_team, apixo_account):
    team, user = finance_team
    when = datetime(2026, 10, 5, 10, tzinfo=UTC)
    states = ("succeeded", "failed", "failed", "canceled", "expired", "expired", "expired")
    return [_generation(user, team, apixo_account, s, when) for s in states]


def _xlsx(response):
    import io

    import openpyxl

    return openpyxl.load_workbook(io.BytesIO(b"".join(response.streaming_content)))


def test_failed_canceled_and_expired_are_counted_apart_everywhere(client, finance_team, outcomes):
    import csv
    import io

    from accounts.models import ApiToken

    team, user = finance_team
    query = ReportQuery(period=period_resolve("month", tz="UTC", month="2026-10"), group_by=("provider",))
    totals = cost_report(query).totals
    assert (totals.succeeded, totals.failed, totals.canceled, totals.expired) == (1, 2, 1, 3)
    assert totals.released_count == LedgerEntry.objects.filter(kind="release").count() == 6

    client.force_login(user)
    page = client.get("/reports/", {"period": "month", "month": "2026-10", "tz": "UTC"}).content.decode()
    assert "Failed (released)" not in page
    for name, value in (("failed", 2), ("canceled", 1), ("expired", 3)):
        assert f'data-testid="total-{name}">{value}</dd>' in page

    _, raw = ApiToken.issue(user=user, name="tests")
    api = client.get("/api/v1/reports/costs", {"period": "month", "month": "2026-10", "tz": "UTC", "group_by": "provider"},
                     HTTP_AUTHORIZATION=f"Bearer {raw}").json()
    assert {k: api["totals"][k] for k in ("succeeded", "failed", "canceled", "expired")} == {
        "succeeded": 1, "failed": 2, "canceled": 1, "expired": 3}

    params = {"period": "month", "month": "2026-10", "tz": "UTC", "group_by": "provider", "rows": "groups"}
    body = b"".join(client.get("/reports/export.csv", params).streaming_content).decode()
    (row,) = list(csv.DictReader(io.StringIO(body)))
    assert (row["provider"], row["failed"], row["canceled"], row["expired"]) == ("apixo", "2", "1", "3")

    sheet = _xlsx(client.get("/reports/export.xlsx", params))["Report"]
    header = [c.value for c in sheet[5]]
    assert header[:2] == ["provider", "spend_usd"] and {"failed", "canceled", "expired"} <= set(header)
    values = dict(zip(header, [c.value for c in sheet[6]], strict=True))
    assert (values["failed"], values["canceled"], values["expired"]) == (2, 1, 3)
    assert sheet.freeze_panes == "A6"  # the header row stays in view
    assert sheet.auto_filter.ref == f"A5:{sheet.cell(5, len(header)).column_letter}6"
    assert sheet.column_dimensions["B"].width >= 14  # spend_usd


def test_entries_xlsx_has_a_frozen_filtered_header_with_widths(client, finance_team, outcomes):
    team, user = finance_team
    client.force_login(user)
    book = _xlsx(client.get("/reports/export.xlsx", {"period": "month", "month": "2026-10", "tz": "UTC"}))
    sheet = book["Entries"]
    header = [c.value for c in sheet[5]]
    assert header[0] == "entry_id" and sheet.freeze_panes == "A6"
    entries = LedgerEntry.objects.count()
    last = sheet.cell(5, len(header)).column_letter
    assert sheet.auto_filter.ref == f"A5:{last}{5 + entries}"  # the entries, not the totals row
    assert sheet.cell(6 + entries, 1).value == "Total"
    widths = {c.value: sheet.column_dimensions[c.column_letter].width for c in sheet[5]}
    assert widths["created_at"] >= 20 and widths["member"] >= 28 and widths["kind"] >= 7


def test_the_time_zone_field_is_a_select_of_iana_zones(client, finance_team):
    from zoneinfo import available_timezones

    team, user = finance_team
    client.force_login(user)
    page = client.get("/reports/", {"tz": "Asia/Tokyo"}).content.decode()
    assert '<select id="f-tz" name="tz">' in page and 'type="text" name="tz"' not in page
    assert "<option selected>Asia/Tokyo</option>" in page
    assert page.count("<option>") + page.count("<option selected>") >= len(available_timezones()) - 5
    assert "<option>Europe/Paris</option>" in page


# --- rough edge 5: hide / unhide ------------------------------------------------------------------
def _gallery_ids(client, **params) -> set[str]:
    import re

    page = client.get("/studio/gallery/", params).content.decode()
    return set(re.findall(r'id="gen-([0-9a-f-]{36})"', page))


def test_hide_and_unhide_keep_the_ledger_and_follow_the_permission(client, team, member, teammate, apixo_account):
    from accounts.models import ApiToken
    from generations.models import Generation

    when = datetime(2026, 10, 5, 10, tzinfo=UTC)
    mine = _generation(member, team, apixo_account, "failed", when)
    other = _generation(member, team, apixo_account, "succeeded", when)
    entries_before = list(LedgerEntry.objects.order_by("id").values_list("id", "kind", "amount"))

    client.force_login(member)
    assert _gallery_ids(client) == {str(mine.pk), str(other.pk)}
    response = client.post(f"/g/{mine.pk}/hide/", HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    card = response.content.decode()
    assert 'data-testid="hidden-badge"' in card and 'data-testid="card-unhide"' in card and "is-hidden" in card
    mine.refresh_from_db()
    assert mine.hidden_at is not None and mine.state == "failed"
    assert _gallery_ids(client) == {str(other.pk)}  # gone from the gallery
    assert _gallery_ids(client, show_hidden="on") == {str(mine.pk), str(other.pk)}  # "Show hidden"
    _, raw = ApiToken.issue(user=member, name="t")
    auth = {"HTTP_AUTHORIZATION": f"Bearer {raw}"}
    assert [g["id"] for g in client.get("/api/v1/generations", **auth).json()["items"]] == [str(other.pk)]
    listed = client.get("/api/v1/generations", {"include_hidden": "true"}, **auth).json()["items"]
    assert {g["id"]: g["hidden_at"] is not None for g in listed} == {str(mine.pk): True, str(other.pk): False}
    # the ledger and the reports do not change
    assert list(LedgerEntry.objects.order_by("id").values_list("id", "kind", "amount")) == entries_before

    # a teammate may look, not hide; a team admin may
    client.force_login(teammate)
    refused = client.post(f"/g/{other.pk}/hide/")
    assert refused.status_code == 403 and Generation.objects.get(pk=other.pk).hidden_at is None
    assert 'data-testid="hide"' not in client.get(f"/g/{other.pk}/").content.decode()
    Membership.objects.filter(user=teammate, team=team).update(role=Membership.Role.TEAM_ADMIN)
    assert 'data-testid="hide"' in client.get(f"/g/{other.pk}/").content.decode()
    response = client.post(f"/g/{other.pk}/hide/")
    assert response.status_code == 302 and Generation.objects.get(pk=other.pk).hidden_at is not None

    client.force_login(member)
    assert client.post(f"/g/{mine.pk}/unhide/", HTTP_HX_REQUEST="true").status_code == 200
    assert _gallery_ids(client) == {str(mine.pk)}
    assert list(LedgerEntry.objects.order_by("id").values_list("id", "kind", "amount")) == entries_before


# --- rough edge 3: account-level provider problems reach staff, once an hour ----------------------
def test_a_402_at_submit_emails_staff_once_an_hour_and_members_see_a_sentence(
    member, apixo_account, mailoutbox, no_queue, django_capture_on_commit_callbacks
):
    from datetime import timedelta

    from django.utils import timezone

    from billing.models import Budget
    from generations import services
    from generations.models import Generation, State
    from providers.models import ProviderAccount
    from tests.conftest import make_params

    Budget.objects.create(user=member, amount=Decimal("10"), period=Budget.Period.MONTH)
    User.objects.create_user("ops@example.com", "pw-ops-12345", is_staff=True)
    User.objects.create_user("boss@example.com", "pw-boss-12345", is_superuser=True, is_staff=True)
    User.objects.create_user("gone@example.com", "pw-gone-12345", is_staff=True, is_active=False)

    def submit(prompt):
        g = services.generation_create(user=member, params=make_params(apixo_account, prompt=prompt))
        with django_capture_on_commit_callbacks(execute=True):
            services.generation_submit(generation_id=g.pk)
        return Generation.objects.get(pk=g.pk)

    first = submit("a fox in the snow [http:402]")  # the APIXO sandbox answers HTTP 402
    assert first.state == State.FAILED
    assert first.fail_summary.startswith("The company's account at this provider is out of credit; admins have been told.")
    assert len(mailoutbox) == 1
    mail = mailoutbox[0]
    assert sorted(mail.to) == ["boss@example.com", "ops@example.com"]
    assert "out of credit (HTTP 402)" in mail.subject and apixo_account.label in mail.subject
    assert "402" in mail.body
    account = ProviderAccount.objects.get(pk=apixo_account.pk)
    assert account.problem_notified_at is not None and account.problem_note.startswith("402")

    submit("a fox in the rain [http:402]")
    assert len(mailoutbox) == 1  # at most once per account per hour
    ProviderAccount.objects.filter(pk=account.pk).update(problem_notified_at=timezone.now() - timedelta(minutes=61))
    second = submit("a fox at dawn [http:401]")
    assert second.fail_summary.startswith("The company's account at this provider was refused (its key)")
    assert len(mailoutbox) == 2 and "API key refused (HTTP 401)" in mailoutbox[1].subject
    ok = submit("a fox at noon")  # an ordinary submit tells nobody anything
    assert ok.state == State.SUBMITTED and len(mailoutbox) == 2


# --- rough edge 9: Budget's allowed providers / models are multi-selects ---------------------------
def test_budget_admin_picks_providers_and_models_from_the_registry(client, member):
    from billing.models import Budget
    from providers.registry import ADAPTERS

    admin_user = User.objects.create_superuser("root@example.com", "pw-root-12345")
    client.force_login(admin_user)
    budget = Budget.objects.create(user=member, amount=Decimal("5"), allowed_models=["retired-model"])
    page = client.get(f"/admin/billing/budget/{budget.pk}/change/").content.decode()
    assert '<select name="allowed_providers"' in page and "multiple" in page
    for kind, cls in ADAPTERS.items():
        assert f'<option value="{kind}">{cls.label}</option>' in page
    assert 'value="hailuo-2-3"' in page and 'value="MiniMax-Hailuo-2.3"' in page
    assert '<option value="retired-model" selected>retired-model (unknown now)</option>' in page
    response = client.post(f"/admin/billing/budget/{budget.pk}/change/", {
        "user": member.pk, "amount": "7.50", "period": "month", "hard": "on", "active": "on",
        "allowed_providers": ["apixo", "piapi"], "allowed_models": ["hailuo-2-3", "v2.3"],
        "created_at_0": "2026-10-01", "created_at_1": "10:00:00",
    })
    assert response.status_code == 302, response.content.decode()[:2000]
    budget.refresh_from_db()
    assert budget.allowed_providers == ["apixo", "piapi"] and budget.allowed_models == ["hailuo-2-3", "v2.3"]
    assert budget.allows(provider_kind="apixo", model="hailuo-2-3") and not budget.allows(provider_kind="poyo", model="hailuo-2.3")
    bad = client.post(f"/admin/billing/budget/{budget.pk}/change/", {
        "user": member.pk, "amount": "7.50", "period": "month", "allowed_providers": ["nosuch"],
        "created_at_0": "2026-10-01", "created_at_1": "10:00:00",
    })
    assert bad.status_code == 200 and "Select a valid choice" in bad.content.decode()


# --- rough edge 10: ETAs and "My spending" ------------------------------------------------------
def test_in_flight_cards_without_progress_show_an_eta_from_the_median(client, team, member, apixo_account, django_assert_max_num_queries):
    import re
    from datetime import timedelta

    from django.core.cache import cache
    from django.utils import timezone

    from generations.eta import SAMPLE, median_durations
    from generations.models import Generation

    cache.clear()
    now = timezone.now()

    def make(state, *, took=None, ago=0, model="hailuo-2-3", progress=None, prompt="done"):
        submitted = now - timedelta(seconds=ago)
        return Generation.objects.create(
            user=member, team=team, provider_account=apixo_account, provider_kind="apixo", model=model,
            mode="standard-text-to-video", prompt=prompt, duration=6, resolution="768p", quoted_amount=Decimal("0.336"),
            state=state, submitted_at=submitted, progress=progress,
            completed_at=submitted + timedelta(seconds=took) if took is not None else None, created_at=submitted,
        )

    # 60 old successes of 500 s, then the last 50 (what counts): 40 s ×25, 120 s ×25 → median 80 s
    for i in range(60):
        make("succeeded", took=500, ago=100_000 + i)
    for i in range(SAMPLE):
        make("succeeded", took=40 if i % 2 else 120, ago=1000 + i)
    make("failed", took=5, ago=900)  # failures do not count
    for _ in range(2):
        make("succeeded", took=30, ago=800, model="hailuo-2-3-fast")  # too few for an estimate
    running = make("running", ago=20, prompt="waiting for the fox")
    late = make("submitted", ago=300, prompt="a late fox")
    with_progress = make("running", ago=20, progress=40, prompt="a fox with progress")
    no_history = make("running", ago=20, model="hailuo-2-3-fast", prompt="a fast fox")

    assert median_durations([("apixo", "hailuo-2-3"), ("apixo", "hailuo-2-3-fast")]) == {("apixo", "hailuo-2-3"): 80.0}
    with django_assert_max_num_queries(0):  # cached
        assert median_durations([("apixo", "hailuo-2-3")]) == {("apixo", "hailuo-2-3"): 80.0}

    cache.clear()
    client.force_login(member)
    page = client.get("/studio/gallery/", {"size": 12, "state": "in_progress"}).content.decode()
    etas = dict(re.findall(r'id="gen-([0-9a-f-]{36})".*?(?:data-testid="eta"[^>]*>([^<]*)<|</article>)', page, re.S))
    assert re.fullmatch(r"about (5[89]|60) s left", etas[str(running.pk)])
    assert etas[str(late.pk)] == "taking longer than usual (about 80 s)"
    assert etas[str(with_progress.pk)] == etas[str(no_history.pk)] == ""
    card = client.get(f"/g/{running.pk}/card/").content.decode()
    assert 'data-testid="eta"' in card


def test_my_spending_shows_the_members_own_ledger_by_day_and_model(client, team, member, teammate, apixo_account):
    import re

    oct_ = lambda d, h=10: datetime(2026, 10, d, h, tzinfo=UTC)  # noqa: E731
    _generation(member, team, apixo_account, "succeeded", oct_(3), price="0.336")
    _generation(member, team, apixo_account, "succeeded", oct_(3, 14), price="0.56")
    _generation(member, team, apixo_account, "succeeded", oct_(17), price="0.49")
    _generation(member, team, apixo_account, "failed", oct_(17))
    _generation(member, team, apixo_account, "succeeded", datetime(2026, 11, 1, 1, tzinfo=UTC), price="9")  # next month
    _generation(teammate, team, apixo_account, "succeeded", oct_(4), price="7")  # not mine
    _adjust(member, team, "0.105", oct_(20))
    expected = Decimal("0.336") + Decimal("0.56") + Decimal("0.49") + Decimal("0.105")
    mine = LedgerEntry.objects.filter(user=member, created_at__gte=oct_(1, 0), created_at__lt=datetime(2026, 11, 1, tzinfo=UTC))
    assert money(sum((e.amount for e in mine if e.kind in ("capture", "adjustment")), ZERO)) == expected

    client.force_login(member)
    assert 'data-testid="my-spending-link"' in client.get("/studio/").content.decode()
    response = client.get("/me/spending/", {"month": "2026-10"})
    assert response.status_code == 200
    page = response.content.decode()
    assert re.search(r'data-testid="my-total">\$1\.491<', page)
    day_table = page.split('data-testid="by-day"')[1].split("</table>")[0]
    model_table = page.split('data-testid="by-model"')[1].split("</table>")[0]
    day_amounts = [Decimal(a) for a in re.findall(r'<td class="num">\$([0-9.]+)</td></tr>', day_table.split("<tfoot>")[0])]
    assert day_amounts == [Decimal("0.896"), Decimal("0.49"), Decimal("0.105")]  # 3, 17, 20 October
    assert sum(day_amounts) == expected
    assert "Hailuo 2.3" in model_table and "APIXO" in model_table and "hailuo-2-3" in model_table
    model_amounts = [Decimal(a) for a in re.findall(r'<td class="num">\$([0-9.]+)</td></tr>', model_table.split("<tfoot>")[0])]
    assert sum(model_amounts) == expected and "$7" not in page and "$9" not in page
    assert client.get("/me/spending/", {"month": "2026-13"}).status_code == 422
    assert client.get("/me/spending/").status_code == 200
