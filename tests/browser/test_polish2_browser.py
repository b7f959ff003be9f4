"""Issue 14, second round, in Debian's Chromium: the "this month" chart draws no point after
today; hide/unhide from a gallery card; the reports page and the studio screenshotted."""

from __future__ import annotations

import os
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

if os.environ.get("HAILUO_REQUIRE_BROWSER") == "1":
    from playwright.sync_api import expect
else:
    expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]


@pytest.fixture
def finance(team):
    from accounts.models import Membership, User

    team.time_zone = "UTC"
    team.save(update_fields=["time_zone"])
    user = User.objects.create_user("finance@example.com", "pw-finance-123")
    Membership.objects.create(user=user, team=team, role=Membership.Role.FINANCE)
    return user


def test_this_months_chart_has_no_point_after_today(new_page, login, finance, member, team, screenshot):
    from billing.models import LedgerEntry

    today = timezone.now()  # UTC, the zone the page is asked for
    days = sorted({today, today.replace(day=1, hour=0, minute=0, second=1)})  # the 1st and today
    for when in days:
        LedgerEntry.objects.create(kind="adjustment", amount=Decimal("0.75"), user=member, team=team,
                                   reason="chart test", effective_at=when, created_at=when)
    page = new_page()
    login(page, finance.email, "pw-finance-123", next_url="/reports/?period=this_month&tz=UTC")
    chart = page.get_by_test_id("spend-chart")
    expect(chart).to_be_visible()
    geometry = chart.evaluate("""svg => ({
        left: +svg.dataset.plotLeft, right: +svg.dataset.plotRight, buckets: +svg.dataset.buckets,
        lines: [...svg.querySelectorAll('g')].map(g => [...g.querySelectorAll('circle')].map(c => +c.getAttribute('cx'))),
    })""")
    assert geometry["lines"], geometry
    n = geometry["buckets"]
    assert n == ((today.replace(day=28) + timedelta(days=4)).replace(day=1) - timedelta(days=1)).day  # the whole month on the axis
    step = (geometry["right"] - geometry["left"]) / (n - 1)
    today_x = geometry["left"] + (today.day - 1) * step
    for xs in geometry["lines"]:
        assert len(xs) == today.day  # one point per day so far, none after today
        assert max(xs) == pytest.approx(today_x, abs=0.2)
    screenshot(page, "reports-this-month", full_page=True)


def test_hide_from_a_card_and_show_hidden(new_page, login, member, team, apixo_account):
    from billing.models import LedgerEntry
    from generations.models import Generation

    now = timezone.now()
    generation = Generation.objects.create(
        user=member, team=team, provider_account=apixo_account, provider_kind="apixo", model="hailuo-2-3",
        mode="standard-text-to-video", prompt="a lighthouse in a storm, to be hidden", duration=6, resolution="768p",
        quoted_amount=Decimal("0.336"), state="failed", fail_code="500", created_at=now, completed_at=now,
    )
    LedgerEntry.objects.create(kind="hold", amount=Decimal("0.336"), user=member, team=team, generation=generation)
    LedgerEntry.objects.create(kind="release", amount=Decimal("0.336"), user=member, team=team, generation=generation)
    page = new_page()
    login(page, member.email, "pw-member-123", next_url="/studio/")
    card = page.locator(f"#gen-{generation.pk}")
    card.get_by_test_id("card-hide").click()
    expect(card.get_by_test_id("hidden-badge")).to_be_visible()
    expect(card.get_by_test_id("card-unhide")).to_be_visible()
    page.reload()
    expect(page.locator(f"#gen-{generation.pk}")).to_have_count(0)
    page.locator("details[data-filters-more] summary").click()
    with page.expect_response(lambda r: "/studio/gallery/" in r.url):
        page.get_by_label("Show hidden").check()
    expect(card.get_by_test_id("hidden-badge")).to_be_visible()
    with page.expect_response(lambda r: "/unhide/" in r.url):
        card.get_by_test_id("card-unhide").click()
    expect(card.get_by_test_id("card-hide")).to_be_visible()
    assert LedgerEntry.objects.filter(generation=generation).count() == 2


def test_screenshots_of_the_reports_the_studio_and_my_spending(new_page, login, screenshot, finance, member, team, apixo_account):
    """Look at the result: the reports (failed / canceled / expired apart, the zone select, the
    chart stopping at today), the studio (an ETA on a running card, a hidden card) and My spending."""
    from billing.models import LedgerEntry
    from generations.models import Generation

    now = timezone.now()

    def make(state, prompt, *, took=60, ago=3600, price="0.336", settle=True, hidden=False):
        submitted = now - timedelta(seconds=ago)
        g = Generation.objects.create(
            user=member, team=team, provider_account=apixo_account, provider_kind="apixo", model="hailuo-2-3",
            mode="standard-text-to-video", prompt=prompt, duration=6, resolution="768p", quoted_amount=Decimal(price),
            state=state, submitted_at=submitted, created_at=submitted, hidden_at=now if hidden else None,
            completed_at=submitted + timedelta(seconds=took) if state not in ("running", "submitted") else None,
            fail_code="1026" if state == "failed" else "", fail_message="input new_sensitive" if state == "failed" else "",
        )
        when = min(submitted + timedelta(seconds=took), now)
        LedgerEntry.objects.create(kind="hold", amount=Decimal(price), user=member, team=team, provider_account=apixo_account,
                                   generation=g, effective_at=submitted, created_at=submitted)
        if settle and state not in ("running", "submitted"):
            extra = {"kind": "capture", "hold_amount": Decimal(price)} if state == "succeeded" else {"kind": "release"}
            LedgerEntry.objects.create(amount=Decimal(price), user=member, team=team, provider_account=apixo_account,
                                       generation=g, effective_at=submitted, created_at=when, **extra)
        return g

    for i in range(6):
        make("succeeded", f"a paper boat on a rainy street, take {i + 1}", took=70 + 10 * i, ago=7200 + 60 * i)
    make("failed", "a prompt the safety check refused", ago=5000)
    make("canceled", "a canceled kite", ago=4000)
    make("expired", "an expired lighthouse", ago=3000)
    make("succeeded", "an old test, hidden", hidden=True, ago=2500)
    running = make("running", "a fox running through fresh snow at dawn", ago=20)

    reports = new_page()
    login(reports, finance.email, "pw-finance-123", next_url="/reports/?period=this_month&tz=UTC")
    expect(reports.get_by_test_id("total-canceled")).to_have_text("1")
    expect(reports.get_by_test_id("total-expired")).to_have_text("1")
    expect(reports.get_by_test_id("total-failed")).to_have_text("1")
    assert reports.locator("select#f-tz").evaluate("s => s.value") == "UTC"
    reports.wait_for_load_state("networkidle")
    screenshot(reports, "polish2-reports", full_page=True)

    studio = new_page()
    login(studio, member.email, "pw-member-123", next_url="/studio/")
    card = studio.locator(f"#gen-{running.pk}")
    expect(card.get_by_test_id("eta")).to_contain_text("left")
    expect(studio.locator("#gallery-grid .gen-card", has_text="an old test, hidden")).to_have_count(0)
    studio.wait_for_load_state("networkidle")
    screenshot(studio, "polish2-studio")

    studio.get_by_test_id("my-spending-link").click()
    expect(studio).to_have_title("My spending · Hailuo Studio")
    expect(studio.get_by_test_id("my-total")).to_have_text("$2.352")  # seven captures of $0.336
    screenshot(studio, "polish2-my-spending", full_page=True)
