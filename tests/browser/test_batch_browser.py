"""Issue 15, variants and batches, in a real browser (Debian's Chromium): a batch of 10 prompts
from a CSV upload with its total shown before confirming, grouped in the gallery with its
progress; a batch over budget refused whole, naming the budget; 3 variants from the studio form.

The member's budget is $5.00 a month; APIXO's 6 s standard video costs $0.336.
"""

from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

import pytest
from django.core.files.base import ContentFile

from billing.models import LedgerEntry
from generations import services
from generations.models import Batch, Generation
from providers.base import TaskState, TaskUpdate

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

SUBJECTS = [
    "a red kite over the dunes", "a paper boat on a rainy street", "a lighthouse at dusk", "a fox in fresh snow",
    "a hot-air balloon at sunrise", "a koi pond in the rain", "a neon alley at night", "a glass bird on a branch",
    "a tram crossing a bridge", "a comet over the sea",
]


def _finish(generation: Generation, state: TaskState) -> None:
    """Through the real lifecycle: submitted, then the provider's answer (captured or released);
    a success gets the sandbox's MP4 as its archived video."""
    task = f"task-{generation.pk.hex[:12]}"
    Generation.objects.filter(pk=generation.pk).update(state="submitted", provider_task_id=task)
    services.generation_apply_update(generation_id=generation.pk, update=TaskUpdate(
        task_id=task, state=state, provider_state=state.value, result_urls=("http://127.0.0.1:1/v.mp4",),
        fail_code="" if state == TaskState.SUCCEEDED else "PromptInvalid",
    ))
    if state == TaskState.SUCCEEDED:
        g = Generation.objects.get(pk=generation.pk)
        g.video.save(f"{g.pk}.mp4", ContentFile(SAMPLE_MP4), save=False)
        poster = services.make_poster(g.video.path)
        if poster:
            g.poster.save(f"{g.pk}.jpg", ContentFile(poster), save=False)
        g.archive_state = "done"
        g.save(update_fields=["video", "poster", "archive_state"])


def test_a_csv_batch_of_ten_is_previewed_with_its_total_confirmed_and_grouped(
    new_page, login, member, budget, apixo_account, no_queue, media_root, screenshot
):
    page = new_page()
    login(page, "member@example.com", "pw-member-123")
    page.goto("/studio/")
    page.get_by_test_id("new-batch").click()
    expect(page.get_by_role("heading", name="New batch")).to_be_visible()
    page.get_by_label("Title").fill("Spring teasers")
    csv_text = "prompt,duration\n" + "\n".join(f'"{s}, cinematic",6' for s in SUBJECTS) + "\n"
    page.get_by_label("…or upload a CSV").set_input_files(
        files=[{"name": "teasers.csv", "mimeType": "text/csv", "buffer": csv_text.encode()}]
    )
    page.get_by_test_id("batch-preview").click()

    # The preview: every row priced, the total and the budget left, nothing created yet.
    expect(page.get_by_test_id("batch-row")).to_have_count(10)
    expect(page.get_by_test_id("row-price").first).to_have_text("$0.336")
    expect(page.get_by_test_id("batch-total")).to_have_text("$3.36")
    expect(page.get_by_test_id("batch-budget-left")).to_have_text("Budget left $5.00")
    expect(page.get_by_test_id("batch-budget-after")).to_have_text("after this batch $1.64")
    assert not Generation.objects.exists()
    screenshot(page, "batch-preview", full_page=True)

    page.get_by_test_id("batch-confirm").click()
    page.wait_for_url("**/batches/*/")
    batch = Batch.objects.get()
    assert batch.size == 10 and batch.quoted_total == Decimal("3.36")
    holds = LedgerEntry.objects.filter(generation__batch=batch, kind="hold")
    assert holds.count() == 10 and sum(e.amount for e in holds) == batch.quoted_total
    expect(page.get_by_test_id("batch-counts")).to_have_text("0 succeeded, 0 failed, 10 running of 10")

    # The provider answers some: the gallery shows the batch as one group with its progress.
    gens = list(batch.generations.order_by("batch_index"))
    for g in gens[:6]:
        _finish(g, TaskState.SUCCEEDED)
    _finish(gens[6], TaskState.FAILED)
    page.goto("/studio/")
    group = page.get_by_test_id("batch-group")
    expect(group).to_have_count(1)
    expect(group.locator("article.gen-card")).to_have_count(10)
    expect(group.get_by_test_id("batch-counts")).to_have_text("6 succeeded, 1 failed, 3 running of 10")
    expect(group.get_by_test_id("batch-money")).to_have_text("quoted $3.36, charged $2.02")
    expect(group.get_by_test_id("video")).to_have_count(6)
    expect(group.locator("article.gen-card .prompt").first).to_have_text("a red kite over the dunes, cinematic")  # batch order
    screenshot(page, "batch-gallery", full_page=True)


def test_a_batch_over_budget_is_refused_whole_naming_the_budget(new_page, login, member, budget, apixo_account, no_queue):
    page = new_page()
    login(page, "member@example.com", "pw-member-123")
    page.goto("/batches/new/")
    page.get_by_label("Prompts, one per line").fill("\n".join(f"{s}, take {n}" for n in (1, 2) for s in SUBJECTS[:8]))
    page.get_by_test_id("batch-preview").click()
    expect(page.get_by_test_id("batch-row")).to_have_count(16)
    expect(page.get_by_test_id("batch-total")).to_have_text("$5.376")
    expect(page.get_by_test_id("batch-over")).to_contain_text("your budget of $5.00 per month: $5.00 left")
    page.get_by_test_id("batch-confirm").click()
    expect(page.get_by_test_id("batch-refused")).to_contain_text(
        "Refused by your budget of $5.00 per month: $5.00 left, this batch of 16 costs $5.376 (over by $0.376)."
    )
    assert not Batch.objects.exists() and not Generation.objects.exists() and not LedgerEntry.objects.exists()


def test_three_variants_from_the_studio_form(new_page, login, member, budget, apixo_account, no_queue):
    page = new_page()
    login(page, "member@example.com", "pw-member-123")
    page.goto("/studio/")
    page.get_by_label("Prompt", exact=True).fill("a paper lantern drifting over a lake")
    page.get_by_label("Variants").select_option("3")
    expect(page.get_by_test_id("price-total")).to_have_text("$1.008")
    page.get_by_role("button", name="Generate").click()
    group = page.get_by_test_id("batch-group")
    expect(group).to_have_count(1)
    expect(group.locator("article.gen-card")).to_have_count(3)
    expect(group.get_by_test_id("batch-counts")).to_have_text("0 succeeded, 0 failed, 3 running of 3")
    batch = Batch.objects.get()
    assert batch.kind == "variants" and batch.generations.count() == 3 and batch.quoted_total == Decimal("1.008")
    assert LedgerEntry.objects.filter(generation__batch=batch, kind="hold").count() == 3
