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
