"""The studio in a real browser: Debian's Chromium (Playwright) against the live server, a real
django-q2 cluster process and the APIXO sandbox, whose callbacks reach the live server.

A member logs in through the form, makes a text-to-video and an image-to-video (uploaded PNG)
video and watches both cards go live to a playable video; filters the gallery; opens a
failure's details and retries it; remixes; is refused by the budget. An outsider gets a 404.
An admin's pages are captured too. Screenshots go to a temp dir (listed at the end of the run).
"""

from __future__ import annotations

import base64
import os
import re
from decimal import Decimal

import pytest

from billing.models import Budget
from generations.models import Generation

from .conftest import png_bytes

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

T2V_PROMPT = "a tiktok dancer is dancing on a small drone, doing flips and tricks"
I2V_PROMPT = "the camera slowly pushes in on this poster while the stripes shimmer"
FAIL_PROMPT = "一只白猫慵懒地躺在阳光下的窗台上 [fail]"
LIVE_TIMEOUT = 30_000  # ms: submit → sandbox (1 s) → callback → poll → archive → poster


def newest_card(page):
    return page.locator("#gallery-grid .gen-card").first


def card_for(page, prompt: str):
    return page.locator("#gallery-grid .gen-card", has_text=prompt[:40])


def wait_playable(card):
    """The card went live to a video whose metadata loads: readyState ≥ 1, a finite duration."""
    video = card.locator("video")
    expect(video).to_be_attached(timeout=LIVE_TIMEOUT)
    assert video.get_attribute("preload") == "none"  # lazy in the gallery
    handle = video.element_handle()
    handle.evaluate("v => v.load()")  # preload=none: ask for the metadata, as pressing play would
    card.page.wait_for_function(
        "v => v.readyState >= 1 && Number.isFinite(v.duration) && v.duration > 0", arg=handle, timeout=15_000
    )
    return handle.evaluate("v => ({readyState: v.readyState, duration: v.duration, width: v.videoWidth})")


def generate(page, prompt: str):
    page.get_by_label("Prompt", exact=True).fill(prompt)
    page.get_by_role("button", name="Generate").click()


def test_member_makes_videos_filters_retries_remixes_and_meets_the_budget(
    new_page, login, screenshot, member, teammate, budget, apixo_account, sandbox, qcluster, live_server
):
    page = new_page()
    page.goto("/studio/")
    assert "/accounts/login/" in page.url  # the studio needs a login
    login(page, member.email, "pw-member-123", next_url="/studio/")
    expect(page).to_have_title("Studio · Hailuo Studio")
    expect(page.get_by_test_id("gallery-empty")).to_contain_text("No videos yet")
    expect(page.get_by_test_id("price")).to_have_text("$0.336")
    expect(page.get_by_test_id("remaining")).to_have_text("Budget left $5.00")

    # Keyboard: the first Tab reaches the skip link, which leads to the content.
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"

    # Text-to-video: the card appears at once, goes live, and plays from our storage.
    generate(page, T2V_PROMPT)
    card = card_for(page, T2V_PROMPT)
    expect(card).to_be_visible()
    expect(page.get_by_test_id("gallery-empty")).to_be_hidden()
    expect(page.get_by_label("Prompt", exact=True)).to_have_value(T2V_PROMPT)  # kept: iterate on it
    info = wait_playable(card)
    assert info["readyState"] >= 1 and info["duration"] == pytest.approx(3.0, abs=0.2) and info["width"] == 320
    expect(card.get_by_test_id("state")).to_have_text("Succeeded")
    expect(card.get_by_test_id("card-price")).to_have_text("charged $0.336")
    expect(card.get_by_test_id("specs")).to_have_text("APIXO · Hailuo 2.3 · 6 s · 768p")
    expect(card.locator("video")).to_have_attribute("poster", re.compile(r"/poster\.jpg$"))
    expect(page.locator("#budget-badge")).to_contain_text("$4.66 left")  # the header followed the capture

    # Image-to-video: the mode narrows the form to the image inputs; a dropped image that is
    # too small is previewed with its size and the rule it breaks; the upload is previewed too.
    page.get_by_label("Mode", exact=True).select_option("standard-image-to-video")
    dropzone = page.locator("[data-dropzone]")
    expect(dropzone).to_be_visible()
    # Swapped in, the zone gets its listeners on htmx:load, after htmx's settle delay: a drop
    # before that is lost (seen once in CI). studio.js marks a bound zone.
    expect(dropzone).to_have_attribute("data-bound", "1")
    tiny = base64.b64encode(png_bytes(200, 200)).decode()
    dropzone.evaluate(
        """(zone, b64) => {
            const bytes = Uint8Array.from(atob(b64), c => c.charCodeAt(0));
            const data = new DataTransfer();
            data.items.add(new File([bytes], "tiny.png", {type: "image/png"}));
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true}));
        }""",
        tiny,
    )
    expect(page.get_by_test_id("image-dims")).to_contain_text("200 × 200 px · PNG")
    expect(page.get_by_test_id("image-dims")).to_contain_text("the short side must be over 300 px")
    # A URL is previewed too (the browser loads it; the server checks it again on submit).
    page.get_by_label("…or its URL").fill(f"{sandbox.origin}/_sandbox/image.png?w=640&h=360")
    page.get_by_label("…or its URL").press("Tab")
    expect(page.get_by_test_id("image-url-dims")).to_have_text("640 × 360 px")
    page.get_by_label("…or its URL").fill("")
    page.get_by_label("Upload the first frame").set_input_files(
        {"name": "poster.png", "mimeType": "image/png", "buffer": png_bytes(800, 450)}
    )
    expect(page.get_by_test_id("image-dims")).to_have_text(re.compile(r"^800 × 450 px · PNG · \d+ KB$"))
    expect(page.get_by_test_id("price")).to_have_text("$0.336")
    screenshot(page, "studio-image-to-video-form")
    generate(page, I2V_PROMPT)
    i2v = card_for(page, I2V_PROMPT)
    expect(i2v).to_be_visible()
    wait_playable(i2v)
    generation = Generation.objects.get(prompt=I2V_PROMPT)
    # The upload is stored and served to the provider from our public URL (the sandbox fetched it).
    assert generation.mode == "standard-image-to-video" and generation.image_url.startswith(f"{live_server.url}/u/")

    # A provider failure shows its code and message on the card, and nothing is charged.
    page.get_by_label("Mode", exact=True).select_option("standard-text-to-video")
    expect(page.locator("[data-dropzone]")).to_have_count(0)
    generate(page, FAIL_PROMPT)
    failed = card_for(page, FAIL_PROMPT)
    expect(failed.get_by_test_id("fail-code")).to_have_text("PromptInvalid", timeout=LIVE_TIMEOUT)
    expect(failed.get_by_test_id("card-price")).to_have_text("not charged")
    page.reload()  # (without the one-off "signed in" message)
    expect(page.locator("#gallery-grid video")).to_have_count(2)
    page.wait_for_load_state("networkidle")  # the poster frames
    page.wait_for_timeout(1000)  # the players' loading indicators fade out
    screenshot(page, "studio", animations="allow")

    # Filters: prompt search, status; the address bar follows, and Clear brings everything back.
    page.get_by_label("Search prompts").fill("drone")
    expect(page.locator("#gallery-grid .gen-card")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"/studio/\?q=drone$"))
    expect(page.get_by_label("Status")).to_be_hidden()  # folded into "More filters"
    page.get_by_text("More filters", exact=True).click()
    page.get_by_label("Status").select_option("failed")
    expect(page.get_by_test_id("gallery-empty")).to_contain_text("No videos match these filters")
    page.get_by_role("link", name="Clear the filters", exact=True).first.click()
    expect(page.locator("#gallery-grid .gen-card")).to_have_count(3)
    page.get_by_label("Status").select_option("failed")
    expect(page.locator("#gallery-grid .gen-card")).to_have_count(1)
    page.reload()  # a filtered address is a real page
    expect(page.locator("#gallery-grid .gen-card")).to_have_count(1)
    expect(page.get_by_label("Status")).to_have_value("failed")

    # The failure's details: the provider's code and message, the timeline, hold and release.
    failed = card_for(page, FAIL_PROMPT)
    failed.get_by_role("link", name=re.compile("^Details")).click()
    expect(page.get_by_test_id("detail-fail-code")).to_have_text("PromptInvalid")
    expect(page.get_by_test_id("full-prompt")).to_have_text(FAIL_PROMPT)
    expect(page.get_by_test_id("ledger")).to_contain_text("Hold")
    expect(page.get_by_test_id("ledger")).to_contain_text("Release")
    expect(page.get_by_test_id("timeline")).to_contain_text("failed")
    assert page.get_by_test_id("task-id").inner_text().startswith("task_")
    # Retry: a new generation with the same parameters (it fails again: the marker is in the prompt).
    page.get_by_test_id("retry").click()
    expect(page.locator(".messages")).to_contain_text("Retry submitted")
    expect(page.get_by_test_id("full-prompt")).to_have_text(FAIL_PROMPT)
    expect(page.get_by_test_id("detail-state")).to_have_text("Failed", timeout=LIVE_TIMEOUT)
    assert Generation.objects.filter(prompt=FAIL_PROMPT).count() == 2

    # The succeeded video's details, then remix: the form comes back prefilled.
    page.goto("/studio/")
    card_for(page, T2V_PROMPT).get_by_role("link", name=re.compile("^Details")).click()
    expect(page.get_by_test_id("detail-state")).to_have_text("Succeeded")
    expect(page.get_by_test_id("ledger")).to_contain_text("Capture")
    page.wait_for_function("() => document.querySelector('video').readyState >= 1")  # the detail page reads metadata
    page.locator("video").evaluate(  # a frame from the middle, fully buffered, for the screenshot
        """v => new Promise(done => {
            v.preload = "auto";
            v.addEventListener("seeked", done, {once: true});
            v.currentTime = 1.5;
        })"""
    )
    page.wait_for_function("() => document.querySelector('video').readyState === 4")
    page.wait_for_timeout(1500)  # the player's loading indicator fades out (frozen if animations are disabled)
    screenshot(page, "detail", full_page=True, animations="allow")
    page.get_by_test_id("remix").click()
    expect(page.get_by_test_id("remix-note")).to_be_visible()
    expect(page.get_by_label("Prompt", exact=True)).to_have_value(T2V_PROMPT)
    expect(page.get_by_label("Mode", exact=True)).to_have_value("standard-text-to-video")
    expect(page.get_by_label("Duration")).to_have_value("6")

    # The budget refuses: the price row warns before submitting, the refusal is announced.
    Budget.objects.filter(pk=budget.pk).update(amount=Decimal("0.80"))
    page.reload()
    expect(page.get_by_test_id("remaining")).to_contain_text("not enough for this video")
    page.get_by_label("Prompt", exact=True).fill("one more, over budget")
    page.get_by_label("Prompt", exact=True).press("Tab")
    for _ in range(10):  # keyboard only: Tab on to the Generate button and press Enter
        if page.evaluate("document.activeElement.textContent.trim()") == "Generate":
            break
        page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    alert = page.get_by_test_id("form-errors")
    expect(alert).to_contain_text("Refused by your budget of $0.80 per month")
    expect(alert).to_be_focused()
    assert not Generation.objects.filter(prompt="one more, over budget").exists()

    # A phone's width: one column, nothing wider than the screen.
    phone = new_page(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    login(phone, teammate.email, "pw-mate-123")
    expect(phone.locator("#gallery-grid .gen-card")).to_have_count(4)  # the team's videos
    assert phone.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    expect(phone.get_by_label("Status")).to_be_hidden()  # the filters fold away on a phone…
    phone.get_by_text("More filters", exact=True).click()
    expect(phone.get_by_label("Status")).to_be_visible()  # …and open with a tap
    phone.get_by_text("More filters", exact=True).click()
    phone.wait_for_load_state("networkidle")  # the poster frames
    phone.evaluate("document.getElementById('gallery-h').scrollIntoView({block: 'start'})")
    phone.wait_for_timeout(500)
    screenshot(phone, "studio-phone", animations="allow")


def test_an_outsider_cannot_open_another_teams_generation(new_page, login, member, outsider, apixo_account, monkeypatch):
    from generations import services

    from ..conftest import make_params

    monkeypatch.setattr(services, "enqueue_submit", lambda gid: None)
    generation = services.generation_create(user=member, params=make_params(apixo_account, prompt="team secret"))
    page = new_page()
    login(page, outsider.email, "pw-out-123")
    expect(page.get_by_test_id("gallery-empty")).to_contain_text("No videos yet")
    for path in (f"/g/{generation.pk}/", f"/g/{generation.pk}/video.mp4", f"/studio/?remix={generation.pk}"):
        response = page.goto(path)
        assert response.status == 404, path
    page.goto("/studio/?q=secret")
    expect(page.get_by_test_id("gallery-empty")).to_contain_text("No videos match these filters")


def test_admin_pages(new_page, login, screenshot, member, apixo_account, monkeypatch, django_user_model):
    from generations import services

    from ..conftest import make_params

    monkeypatch.setattr(services, "enqueue_submit", lambda gid: None)
    made = [
        services.generation_create(user=member, params=make_params(apixo_account, prompt=prompt, duration=duration))
        for prompt, duration in (
            ("a paper boat in a gutter stream", 6), ("neon koi in a rainy alley [fail]", 10), ("a slow dolly shot through a market", 6),
        )
    ]
    Generation.objects.filter(pk=made[0].pk).update(state="succeeded", charged_amount=Decimal("0.336"), provider_task_id="task_0a1b2c")
    Generation.objects.filter(pk=made[1].pk).update(
        state="failed", provider_task_id="task_3d4e5f", fail_code="PromptInvalid", fail_message="Prompt is invalid or rejected by provider"
    )
    Generation.objects.filter(pk=made[2].pk).update(state="running", provider_task_id="task_6a7b8c", progress=40)
    admin = django_user_model.objects.create_superuser("admin@example.com", "pw-admin-123")
    page = new_page(viewport={"width": 1366, "height": 720})
    login(page, admin.email, "pw-admin-123", next_url="/admin/")
    expect(page).to_have_title(re.compile("Hailuo Studio admin"))
    page.goto("/admin/providers/provideraccount/")
    expect(page.locator("#result_list")).to_contain_text("APIXO test")
    expect(page.locator("#result_list")).to_contain_text("••••0042")
    expect(page.locator("#result_list")).not_to_contain_text("sk-test-apixo-0042")  # the key never shows whole
    page.locator("#toggle-nav-sidebar").click()  # more room for the lists
    screenshot(page, "admin-provider-accounts")
    page.goto("/admin/generations/generation/")
    expect(page.locator("#result_list tbody tr")).to_have_count(3)
    expect(page.locator("#result_list")).to_contain_text(member.email)
    screenshot(page, "admin-generations")
