"""Approvals in a real browser (Debian's Chromium), with a real django-q2 cluster and the APIXO
sandbox: a member's 1080p submits wait for approval; a team admin sees them in the approvals
queue (the menu's count badge), approves one, which the member watches run to a playable
video, and rejects the other with a reason the member reads on the card.
"""

from __future__ import annotations

import os
import re

import pytest

from accounts.models import Membership, User
from approvals.models import ApprovalRule
from billing.models import LedgerEntry
from generations.models import Generation

if os.environ.get("HAILUO_REQUIRE_BROWSER") == "1":
    from playwright.sync_api import expect
else:
    expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.browser,
    pytest.mark.e2e,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

LIVE_TIMEOUT = 40_000  # ms: the card's approval poll (5 s) → submit → sandbox → callback → archive
APPROVE_PROMPT = "a lighthouse in a storm at night, waves breaking over the rocks, cinematic"
REJECT_PROMPT = "a lighthouse at dawn, slow aerial orbit, golden light on the sea"


def card_for(page, prompt: str):
    return page.locator("#gallery-grid .gen-card", has_text=prompt[:40])


def generate_1080p(page, prompt: str):
    if page.get_by_label("Mode", exact=True).input_value() != "pro-text-to-video":
        page.get_by_label("Mode", exact=True).select_option("pro-text-to-video")  # the form is rebuilt for it
    expect(page.get_by_test_id("price")).to_have_text("$0.49")
    expect(page.get_by_label("Resolution")).to_have_value("1080p")
    expect(page.get_by_test_id("approval-hint")).to_contain_text("Needs a team admin's approval (resolution 1080p)")
    page.get_by_label("Prompt", exact=True).fill(prompt)
    expect(page.get_by_label("Prompt", exact=True)).to_have_value(prompt)
    page.get_by_role("button", name="Generate").click()


def test_a_team_admin_approves_one_1080p_request_and_rejects_another(
    new_page, login, screenshot, member, team, budget, apixo_account, sandbox, qcluster, live_server
):
    lead = User.objects.create_user("lead@example.com", "pw-lead-123")
    Membership.objects.create(user=lead, team=team, role=Membership.Role.TEAM_ADMIN)
    ApprovalRule.objects.create(team=team, resolutions=["1080p"])

    # The member's two 1080p submits wait, their price held.
    page = new_page()
    login(page, member.email, "pw-member-123", next_url="/studio/")
    generate_1080p(page, APPROVE_PROMPT)
    approved_card = card_for(page, APPROVE_PROMPT)
    expect(approved_card.get_by_test_id("awaiting-approval")).to_be_visible()
    expect(approved_card.get_by_test_id("state")).to_have_text("Waiting for approval")
    expect(approved_card.get_by_test_id("card-price")).to_have_text("held $0.49")
    generate_1080p(page, REJECT_PROMPT)
    rejected_card = card_for(page, REJECT_PROMPT)
    expect(rejected_card.get_by_test_id("awaiting-approval")).to_be_visible()
    expect(page.get_by_test_id("approvals-menu")).to_have_count(0)  # members have no queue

    # The team admin: the menu counts two; the queue lists them with member, specs and price.
    admin = new_page()
    login(admin, lead.email, "pw-lead-123", next_url="/studio/")
    expect(admin.get_by_test_id("approvals-count")).to_have_text("2")
    admin.get_by_test_id("approvals-menu").click()
    expect(admin).to_have_url(re.compile(r"/approvals/$"))
    rows = admin.get_by_test_id("approval-row")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("member@example.com")
    expect(rows.first.get_by_test_id("approval-specs")).to_have_text("APIXO · Hailuo 2.3 · 1080p · 5 s")
    expect(rows.first.get_by_test_id("approval-price")).to_have_text("$0.49")
    screenshot(admin, "approvals", full_page=True)

    # Approve the first: it is sent to the provider and the member watches it run to a video.
    admin.locator("[data-testid=approval-row]", has_text=APPROVE_PROMPT[:40]).get_by_test_id("approve").click()
    expect(admin.locator(".messages")).to_contain_text("Queued")
    expect(admin.get_by_test_id("approval-row")).to_have_count(1)
    expect(admin.get_by_test_id("approvals-count")).to_have_text("1")
    expect(approved_card.locator("video")).to_be_attached(timeout=LIVE_TIMEOUT)
    expect(approved_card.get_by_test_id("state")).to_have_text("Succeeded")
    expect(approved_card.get_by_test_id("card-price")).to_have_text("charged $0.49")

    # Reject the second with a reason: the member reads it on the card; the hold is released.
    row = admin.locator("[data-testid=approval-row]", has_text=REJECT_PROMPT[:40])
    row.get_by_test_id("reject-reason").fill("Use 768p for drafts, please")
    row.get_by_test_id("reject").click()
    expect(admin.get_by_test_id("approvals-empty")).to_be_visible()
    expect(admin.get_by_test_id("approvals-count")).to_have_count(0)
    expect(rejected_card.get_by_test_id("rejection-reason")).to_have_text("Use 768p for drafts, please", timeout=LIVE_TIMEOUT)
    expect(rejected_card.get_by_test_id("state")).to_have_text("Rejected")
    expect(rejected_card.get_by_test_id("card-price")).to_have_text("not charged")
    rejected_card.get_by_role("link", name=re.compile("^Details")).click()
    expect(page.get_by_test_id("detail-rejection-reason")).to_have_text("Use 768p for drafts, please")
    expect(page.get_by_test_id("timeline")).to_contain_text("Rejected by lead@example.com")
    expect(page.get_by_test_id("ledger")).to_contain_text("Release")

    rejected = Generation.objects.get(prompt=REJECT_PROMPT)
    assert list(LedgerEntry.objects.filter(generation=rejected).order_by("id").values_list("kind", flat=True)) == ["hold", "release"]
    assert len([r for r in sandbox.requests("api") if r["method"] == "POST" and "generateTask" in r["path"]]) == 1
