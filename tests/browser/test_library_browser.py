"""Issue 15 in a real browser (Debian's Chromium): a member fills the studio form from a team
template with a placeholder and submits it, reuses a past prompt from the History menu, and
gets a browser notification when one of their videos finishes while the tab is hidden.

The Notification API is recorded by an init script (``new Notification(...)`` calls land in
``window.__notes``), and ``document.hidden`` follows ``window.__hidden``: the page cannot be
put in the background for real in headless Chromium.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.core.files.base import ContentFile

from generations import services
from generations.models import Generation, State
from providers.base import TaskState, TaskUpdate
from teamwork.models import PromptTemplate

from .conftest import settled

if os.environ.get("HAILUO_REQUIRE_BROWSER") == "1":
    from playwright.sync_api import expect
else:
    expect = pytest.importorskip("playwright.sync_api", reason="playwright is not installed").expect

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, serialized_rollback=True),
]

SAMPLE_MP4 = (Path(__file__).resolve().parents[2] / "providers" / "sandbox" / "assets" / "sample.mp4").read_bytes()

RECORD_NOTIFICATIONS = """
(() => {
  window.__notes = []; window.__asked = 0; window.__hidden = false;
  const Real = window.Notification;
  function Recorded(title, options) {
    window.__notes.push({title: title, body: (options || {}).body || "", tag: (options || {}).tag || ""});
    this.close = function () {};
  }
  Object.defineProperty(Recorded, "permission", {get: () => (Real ? Real.permission : "denied")});
  Recorded.requestPermission = function (callback) { window.__asked += 1; return Real.requestPermission(callback); };
  window.Notification = Recorded;
  Object.defineProperty(Document.prototype, "hidden", {configurable: true, get() { return window.__hidden; }});
  Object.defineProperty(Document.prototype, "visibilityState", {configurable: true, get() { return window.__hidden ? "hidden" : "visible"; }});
})();
"""


def test_member_fills_the_form_from_a_template_and_from_the_history(
    new_page, login, member, team, budget, apixo_account, no_queue, media_root, screenshot
):
    PromptTemplate.objects.create(
        team=team, created_by=member, name="Product turntable", prompt="{product} turning slowly on a white turntable, soft light",
        provider_account=apixo_account, model="hailuo-2-3", mode="standard-text-to-video", duration=10, resolution="768p",
    )
    page = new_page()
    login(page, "member@example.com", "pw-member-123", next_url="/studio/")
    page.get_by_test_id("templates-menu").locator("summary").click()
    expect(page.get_by_test_id("template-choice")).to_be_visible()
    settled(page)
    page.get_by_test_id("template-choice").select_option(label="Product turntable · Studio A")
    expect(page.get_by_test_id("template-prompt")).to_contain_text("{product} turning slowly")
    settled(page)
    # Left empty, the placeholder is named.
    page.get_by_test_id("template-apply").click()
    expect(page.get_by_test_id("template-error")).to_have_text("Fill in the placeholder {product}.")
    settled(page)
    page.get_by_label("product").fill("a red sneaker")
    page.get_by_test_id("template-apply").click()
    prompt = page.get_by_label("Prompt", exact=True)
    expect(prompt).to_have_value("a red sneaker turning slowly on a white turntable, soft light")
    expect(page.get_by_label("Duration")).to_have_value("10")
    expect(page.get_by_test_id("price")).to_have_text("$0.56")
    expect(page.get_by_test_id("template-error")).to_have_count(0)
    expect(page.get_by_test_id("template-filled")).to_be_visible()
    page.locator("[data-dismiss]").first.click()  # the login message
    screenshot(page, "templates", full_page=True)
    page.get_by_role("button", name="Generate").click()
    expect(page.locator("#gallery-grid .gen-card").first).to_contain_text("a red sneaker turning slowly")
    made = Generation.objects.get()
    assert (made.prompt, made.duration, made.user) == ("a red sneaker turning slowly on a white turntable, soft light", 10, member)

    # The History menu brings the prompt back with its settings.
    prompt.fill("something else")
    page.get_by_test_id("history-menu").locator("summary").click()
    expect(page.get_by_test_id("history-item").first).to_be_visible()
    settled(page)
    page.get_by_test_id("history-item").first.click()
    expect(page.get_by_label("Prompt", exact=True)).to_have_value("a red sneaker turning slowly on a white turntable, soft light")
    expect(page.get_by_label("Duration")).to_have_value("10")


def _settle(generation: Generation, state: TaskState, task: str) -> None:
    Generation.objects.filter(pk=generation.pk).update(state=State.SUBMITTED, provider_task_id=task)
    services.generation_apply_update(generation_id=generation.pk, update=TaskUpdate(
        task_id=task, state=state, provider_state=str(state), fail_code="X" if state == TaskState.FAILED else "",
        result_urls=("http://127.0.0.1:1/v.mp4",) if state == TaskState.SUCCEEDED else (),
    ))


def test_a_browser_notification_fires_when_my_video_finishes_in_a_background_tab(
    new_page, login, member, budget, apixo_account, no_queue, media_root
):
    page = new_page(permissions=["notifications"])
    page.add_init_script(RECORD_NOTIFICATIONS)
    login(page, "member@example.com", "pw-member-123", next_url="/studio/")
    expect(page.get_by_test_id("notify-enable").first).to_have_text("Browser notifications on")
    assert page.evaluate("window.__asked") == 0  # never asked on page load

    def submit(prompt: str) -> Generation:
        page.get_by_label("Prompt", exact=True).fill(prompt)
        page.get_by_role("button", name="Generate").click()
        expect(page.locator("#gallery-grid .gen-card").first).to_contain_text(prompt)
        return Generation.objects.get(prompt=prompt)

    # Finished while the tab is in front: no notification.
    seen = submit("a lighthouse at dusk, seen")
    _settle(seen, TaskState.FAILED, "t-seen")
    expect(page.locator(f"#gen-{seen.pk}")).to_have_attribute("data-state", "failed", timeout=15_000)
    assert page.evaluate("window.__notes") == []

    # In the background: one notification per video, failed and then ready.
    failing = submit("a lighthouse at dusk, failing")
    ready = submit("a lighthouse at dusk, ready")
    page.evaluate("window.__hidden = true")
    _settle(failing, TaskState.FAILED, "t-failing")
    page.wait_for_function("() => window.__notes.length === 1", timeout=15_000)
    _settle(ready, TaskState.SUCCEEDED, "t-ready")
    g = Generation.objects.get(pk=ready.pk)
    g.video.save(f"{g.pk}.mp4", ContentFile(SAMPLE_MP4), save=False)
    g.archive_state = "done"
    g.save()
    page.wait_for_function("() => window.__notes.length === 2", timeout=15_000)
    notes = page.evaluate("window.__notes")
    assert [n["title"] for n in notes] == ["Your video failed", "Your video is ready"]
    assert notes[0]["body"] == "a lighthouse at dusk, failing" and notes[1]["tag"] == f"gen-{ready.pk}"
    assert page.evaluate("window.__asked") == 0


def test_the_permission_is_asked_only_when_the_member_presses_the_button(new_page, login, member, apixo_account, no_queue):
    page = new_page()
    page.add_init_script(RECORD_NOTIFICATIONS)
    login(page, "member@example.com", "pw-member-123", next_url="/settings/notifications/")
    button = page.get_by_test_id("notify-enable")
    expect(button).to_have_text("Notify me when my videos finish")
    assert page.evaluate("window.__asked") == 0
    button.click()
    page.wait_for_function("() => window.__asked === 1")
