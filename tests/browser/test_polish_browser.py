"""Issue 14 in a real browser (Debian's Chromium): the provider options do not depend on the
click order (read in the qingbo sandbox's request log), an upload's rule error sits under the
upload and goes when a valid file is chosen, 403/404 pages in the site's layout, no htmx
selector errors, cancel only where the provider allows it; then the README's screenshots.
"""

from __future__ import annotations

import os
from decimal import Decimal

import pytest

from generations.models import Generation, State
from providers.models import ProviderAccount
from providers.sandbox import start_sandbox

from .conftest import png_bytes, settled

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


@pytest.fixture
def more_sandboxes(db):
    """PoYo and qingbo sandboxes with an account each (after the APIXO one in the list)."""
    handles, accounts = [], {}
    for priority, kind in ((20, "poyo"), (30, "qingbo")):
        key = f"sk-test-{kind}-5151"
        handle = start_sandbox(kind, generation_seconds=30, api_keys=[key])
        handles.append(handle)
        account = ProviderAccount(kind=kind, label=f"{kind} sandbox", base_url=handle.origin, priority=priority)
        account.set_api_key(key)
        account.save()
        accounts[kind] = (account, handle)
    yield accounts
    for handle in handles:
        handle.stop()


def _choose(page, account):
    """Choose the account and wait until htmx has swapped the new form in: a change on the
    old form while its request is still in flight is dropped by htmx (CI saw it time out)."""
    settled(page)
    with page.expect_response(lambda r: "/studio/form/" in r.url):
        page.locator("#id_provider_account").select_option(str(account.pk))
    settled(page)
    expect(page.locator("#id_provider_account")).to_have_value(str(account.pk))


def test_the_same_settings_send_the_same_request_whatever_the_click_order(
    new_page, login, member, budget, apixo_account, more_sandboxes, qcluster
):
    Budget = type(budget)
    Budget.objects.filter(pk=budget.pk).update(amount=Decimal("50"))
    qingbo, qingbo_sandbox = more_sandboxes["qingbo"]
    poyo, _ = more_sandboxes["poyo"]
    page = new_page()
    login(page, member.email, "pw-member-123", next_url="/studio/")
    bodies = []
    for order, prompt in (((poyo, qingbo), "a kite over the dunes, via PoYo"), ((qingbo,), "a kite over the dunes, directly")):
        page.goto("/studio/")
        page.wait_for_function("() => window.htmx !== undefined")  # htmx is loaded (deferred)
        for account in order:
            _choose(page, account)
        optimizer = page.get_by_label("Prompt optimizer")
        expect(optimizer).to_be_checked()  # qingbo's documented default, whatever came before
        expect(page.get_by_label("Model naming")).to_have_count(0)  # an admin's setting
        page.get_by_label("Prompt", exact=True).fill(prompt)
        page.get_by_role("button", name="Generate").click()
        expect(page.locator("#gallery-grid .gen-card", has_text=prompt[:30])).to_be_visible()
        generation = Generation.objects.get(prompt=prompt)
        for _ in range(100):
            sent = [e for e in qingbo_sandbox.requests("api") if e["method"] == "POST" and (e.get("body") or {}).get("prompt") == prompt]
            if sent:
                break
            page.wait_for_timeout(100)
        assert sent, f"qingbo never received {prompt!r} (state {generation.state})"
        bodies.append(sent[0]["body"])
    first, second = bodies
    assert first.get("extra") == second.get("extra")
    assert (first.get("extra") or {}).get("prompt_optimizer") in (None, True)  # on: absent or true, never false


def test_an_upload_error_sits_under_the_upload_and_clears_and_error_pages_are_the_sites(
    new_page, login, member, budget, apixo_account, qcluster
):
    page = new_page()
    console = []
    page.on("console", lambda message: console.append(message.text))
    login(page, member.email, "pw-member-123", next_url="/studio/")
    page.get_by_label("Mode", exact=True).select_option("standard-image-to-video")
    page.get_by_label("Upload the first frame").set_input_files({"name": "tiny.png", "mimeType": "image/png", "buffer": png_bytes(200, 200)})
    page.get_by_label("Prompt", exact=True).fill("the poster shimmers")
    page.get_by_label("Prompt", exact=True).press("Control+Enter")  # Ctrl+Enter submits
    error = page.locator("#id_image_file_error")
    expect(error).to_contain_text("300")
    expect(page.locator("#id_image_url_error")).to_have_count(0)
    expect(page.get_by_label("…or its URL")).not_to_be_focused()
    expect(page.get_by_label("Prompt", exact=True)).to_have_value("the poster shimmers")
    page.get_by_label("Upload the first frame").set_input_files({"name": "ok.png", "mimeType": "image/png", "buffer": png_bytes(800, 450)})
    expect(error).to_have_count(0)  # the stale error went with the file it was about
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#gallery-grid .gen-card", has_text="the poster shimmers")).to_be_visible()
    page.wait_for_timeout(500)
    assert not [text for text in console if "hx-disabled-elt" in text], console

    # Error pages: in the layout, with the server's message and a way back.
    response = page.goto("/reports/")
    assert response.status == 403
    expect(page.get_by_test_id("error-message")).to_have_text("Reports need the finance role.")
    expect(page.get_by_role("navigation", name="Main")).to_be_visible()
    response = page.goto("/g/00000000-0000-0000-0000-000000000000/")
    assert response.status == 404
    expect(page.get_by_role("heading", name="404 · Not found")).to_be_visible()
    page.get_by_role("link", name="Back to the studio").click()
    expect(page).to_have_title("Studio · Hailuo Studio")


def test_cancel_is_offered_on_a_queued_qingbo_task_only(new_page, login, member, more_sandboxes):
    qingbo, _ = more_sandboxes["qingbo"]
    common = dict(user=member, provider_account=qingbo, provider_kind="qingbo", model="hailuo-2.3", mode="text-to-video",
                  duration=6, resolution="768p", quoted_amount=Decimal("0.3"), provider_task_id="")
    queued = Generation.objects.create(prompt="queued at qingbo", state=State.SUBMITTED, provider_state="queued", **common)
    running = Generation.objects.create(prompt="running at qingbo", state=State.RUNNING, provider_state="processing", **common)
    page = new_page()
    login(page, member.email, "pw-member-123", next_url="/studio/")
    expect(page.locator(f"#gen-{queued.pk}").get_by_test_id("card-cancel")).to_be_visible()
    expect(page.locator(f"#gen-{running.pk}").get_by_test_id("card-cancel")).to_have_count(0)
    page.goto(f"/g/{running.pk}/")
    expect(page.get_by_test_id("cancel")).to_have_count(0)
    expect(page.get_by_role("heading", level=1)).to_contain_text("running at qingbo")  # the title is the prompt


def test_readme_screenshots(new_page, login, screenshot, member, teammate, team, budget, apixo_account, sandbox, qcluster):
    """The README's screenshots (``HAILUO_SCREENSHOT_DIR=docs/screenshots`` refreshes them): the
    studio on a desktop, a phone and in dark mode, a detail page and the reports."""
    from accounts.models import Membership, User

    prompts = [
        "a paper boat drifting down a rainy street, macro shot",
        "a tiktok dancer is dancing on a small drone, doing flips and tricks",
        "一只白猫慵懒地躺在阳光下的窗台上 [fail]",
    ]
    page = new_page()
    login(page, member.email, "pw-member-123", next_url="/studio/")
    for prompt in prompts:
        page.get_by_label("Prompt", exact=True).fill(prompt)
        page.get_by_role("button", name="Generate").click()
        expect(page.locator("#gallery-grid .gen-card", has_text=prompt[:20])).to_be_visible()
    for prompt in prompts[:2]:
        expect(page.locator("#gallery-grid .gen-card", has_text=prompt[:20]).locator("video")).to_be_attached(timeout=40_000)
    expect(page.locator("#gallery-grid .gen-card", has_text="白猫").get_by_test_id("state")).to_have_text("Failed", timeout=40_000)
    page.reload()
    page.wait_for_load_state("networkidle")
    screenshot(page, "studio")

    dark = new_page(color_scheme="dark")
    login(dark, member.email, "pw-member-123", next_url="/studio/")
    dark.wait_for_load_state("networkidle")
    assert dark.evaluate("getComputedStyle(document.body).backgroundColor") == "rgb(18, 20, 23)"
    screenshot(dark, "studio-dark")

    phone = new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    login(phone, member.email, "pw-member-123", next_url="/studio/")
    phone.wait_for_load_state("networkidle")
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    screenshot(phone, "studio-phone")

    page.locator("#gallery-grid .gen-card", has_text=prompts[0][:20]).get_by_role("link", name="Details").click()
    page.wait_for_load_state("networkidle")
    screenshot(page, "detail", full_page=True)

    finance = User.objects.create_user("finance@example.com", "pw-finance-123")
    Membership.objects.create(user=finance, team=team, role=Membership.Role.FINANCE)
    reports = new_page()
    login(reports, finance.email, "pw-finance-123", next_url="/reports/")
    reports.wait_for_load_state("networkidle")
    screenshot(reports, "reports", full_page=True)
