"""Issue 15 in a real browser (Debian's Chromium): a member stars a take, compares two side by
side with synchronised playback, shares the starred one, and the link plays logged out; and the
issue's whole flow: a project made, 3 variants filed under it, one starred, two compared, the
starred one shared and opened logged out.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.core.files.base import ContentFile

from generations import services
from generations.models import Generation, State
from teamwork.models import ShareLink

from ..conftest import make_params
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


def _archived_take(user, account, prompt: str) -> Generation:
    """A take through the real create (priced, held), then archived with a real MP4."""
    g = services.generation_create(user=user, params=make_params(account, prompt=prompt))
    g.video.save(f"{g.pk}.mp4", ContentFile(SAMPLE_MP4), save=False)
    g.archive_state = "done"
    g.state = State.SUCCEEDED
    g.save()
    return g


def test_member_stars_compares_shares_and_the_link_plays_logged_out(
    new_page, login, member, budget, apixo_account, no_queue, media_root, screenshot
):
    first = _archived_take(member, apixo_account, "a paper boat on a rainy street")
    second = _archived_take(member, apixo_account, "a paper boat on a sunny lake")
    page = new_page()
    login(page, "member@example.com", "pw-member-123")
    page.goto("/studio/")

    # Star the first take (htmx swaps the button in place).
    card = page.locator(f"#gen-{first.pk}")
    card.get_by_test_id("star").click()
    expect(card.get_by_test_id("star")).to_contain_text("★ Starred")
    expect(card.get_by_test_id("star")).to_have_attribute("aria-pressed", "true")
    assert Generation.objects.get(pk=first.pk).starred

    # Compare the two side by side: one play starts both, one pause stops both.
    card.get_by_test_id("compare-pick").check()
    page.locator(f"#gen-{second.pk}").get_by_test_id("compare-pick").check()
    page.get_by_test_id("compare-submit").click()
    expect(page.get_by_test_id("compare-take")).to_have_count(2)
    expect(page.locator("[data-compare][data-compare-ready]")).to_be_attached()
    expect(page.get_by_test_id("compare-params").first).to_contain_text("768p")
    page.get_by_test_id("compare-play").click()
    page.wait_for_function("() => [...document.querySelectorAll('video[data-compare-video]')].every(v => !v.paused && v.currentTime > 0)")
    page.locator("video[data-compare-video]").first.evaluate("v => v.pause()")
    page.wait_for_function("() => [...document.querySelectorAll('video[data-compare-video]')].every(v => v.paused)")
    screenshot(page, "teamwork-compare")

    # Share the starred take from its page; the address is shown once.
    page.goto(f"/g/{first.pk}/")
    page.get_by_test_id("share").click()
    url = page.get_by_test_id("share-url").input_value()
    assert "/s/" in url and ShareLink.objects.get().generation_id == first.pk

    # Logged out (a fresh context, no cookies): the video plays, no price, no email.
    visitor = new_page()
    visitor.goto(url)
    expect(visitor.get_by_test_id("shared-prompt")).to_have_text("a paper boat on a rainy street")
    video = visitor.get_by_test_id("shared-video")
    expect(video).to_be_visible()
    video.evaluate("v => { v.muted = true; return v.play(); }")
    visitor.wait_for_function("() => document.querySelector('[data-testid=shared-video]').currentTime > 0")
    text = visitor.locator("body").inner_text()
    assert "$" not in text and "member@example.com" not in text and "Log out" not in text
    screenshot(visitor, "teamwork-shared")

    # The opening was logged; the sharer sees it and can revoke the link.
    page.goto("/projects/")
    expect(page.get_by_test_id("open-count").first).to_have_text("1")
    page.get_by_role("button", name="Revoke").click()
    visitor.goto(url)
    expect(visitor.get_by_test_id("shared-video")).to_have_count(0)


def test_project_three_variants_star_compare_share_and_open_logged_out(
    new_page, login, member, budget, apixo_account, no_queue, media_root
):
    """Issue 15's flow end to end: a member makes a project, files 3 variants of one prompt under
    it from the studio form, stars one, compares two, shares the starred one, and the link plays
    logged out."""
    from billing.models import LedgerEntry
    from generations.models import Batch
    from providers.base import TaskState
    from teamwork.models import Project

    from .test_batch_browser import _finish

    page = new_page()
    login(page, "member@example.com", "pw-member-123")
    page.goto("/projects/")
    page.get_by_test_id("project-name").fill("Spring campaign")
    page.get_by_role("button", name="Create project").click()
    expect(page.get_by_test_id("project-row").filter(has_text="Spring campaign")).to_have_count(1)
    project = Project.objects.get(name="Spring campaign")

    page.goto("/studio/")
    page.get_by_label("Prompt", exact=True).fill("a paper lantern drifting over a lake")
    page.locator("#create-form").get_by_label("Project").select_option(str(project.pk))
    settled(page)  # the form is rebuilt for the project: a choice made meanwhile would be swapped away
    page.get_by_label("Variants").select_option("3")
    expect(page.get_by_test_id("price-total")).to_have_text("$1.008")
    page.get_by_role("button", name="Generate").click()
    expect(page.get_by_test_id("batch-group").locator("article.gen-card")).to_have_count(3)
    batch = Batch.objects.get()
    takes = list(batch.generations.order_by("batch_index"))
    assert [g.project_id for g in takes] == [project.pk] * 3
    assert LedgerEntry.objects.filter(generation__batch=batch, kind="hold").count() == 3
    for take in takes:
        _finish(take, TaskState.SUCCEEDED)

    page.goto(f"/studio/?project={project.pk}")
    first, second = takes[0], takes[1]
    card = page.locator(f"#gen-{first.pk}")
    expect(card.locator("video")).to_be_attached()
    card.get_by_test_id("star").click()
    expect(card.get_by_test_id("star")).to_have_attribute("aria-pressed", "true")
    card.get_by_test_id("compare-pick").check()
    page.locator(f"#gen-{second.pk}").get_by_test_id("compare-pick").check()
    page.get_by_test_id("compare-submit").click()
    expect(page.get_by_test_id("compare-take")).to_have_count(2)

    page.goto(f"/g/{first.pk}/")
    page.get_by_test_id("share").click()
    url = page.get_by_test_id("share-url").input_value()
    visitor = new_page()
    visitor.goto(url)
    expect(visitor.get_by_test_id("shared-prompt")).to_have_text("a paper lantern drifting over a lake")
    video = visitor.get_by_test_id("shared-video")
    video.evaluate("v => { v.muted = true; return v.play(); }")
    visitor.wait_for_function("() => document.querySelector('[data-testid=shared-video]').currentTime > 0")
    assert "$" not in visitor.locator("body").inner_text()
    assert ShareLink.objects.get().open_count == 1
