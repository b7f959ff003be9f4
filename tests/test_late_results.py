"""Late results never lost, and billed duration checked (issue 11, hole 3): real sandboxes over
loopback HTTP, PostgreSQL.

- a task we expired that the provider then finishes: captured late, exactly once, archived;
  a late failure changes nothing; qingbo's documented cancel is sent at expiry;
- a callback naming the task while our submit's answer is pending, or after it was lost into
  needs_reconciliation: resolved by our own status read, with no admin and no second submit;
- needs_reconciliation's age and amount at risk in admin, and the staff's daily email;
- a video that could not be saved: shown, saved again while the URL may still be valid,
  credited by staff with a reason;
- the archived video's measured duration, and the reconciliation flag when a per-second
  price was billed for a different length.
"""

from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from billing.models import Budget, LedgerEntry
from billing.money import format_usd
from billing.selectors import committed_in
from generations import services, tasks
from generations.models import ArchiveState, Generation, State
from generations.selectors import duration_mismatches

from . import test_faults
from .test_faults import (
    PROMPT,
    callback_path,
    create,
    ledger,
    make_due,
    poll_until_final,
    status_gets,
    submits,
    submitted,
    sweep,
    wait_for,
)

# test_faults' fixtures, used here too: the documented cadence, quick sandbox tasks, the
# recorded queue, and sandboxes of the other providers.
_documented_cadence = test_faults._documented_cadence
_quick_tasks = test_faults._quick_tasks
queued = test_faults.queued
other_provider = test_faults.other_provider

pytestmark = pytest.mark.django_db


def _expire_now(settings) -> int:
    """Expire every in-flight generation now (a lifetime of 0 s), as the sweep would after 6 h."""
    settings.HAILUO_MAX_TASK_LIFETIME = 0
    return services.generations_expire()


# --- late results ---------------------------------------------------------------------------------------
def test_a_late_success_is_captured_once_marked_late_and_archived(member, apixo_account, sandbox, settings, media_root, client):
    settings.HAILUO_POLL_TIME_SCALE = 0.02
    budget = Budget.objects.create(user=member, amount=Decimal("50.00"), period=Budget.Period.MONTH)
    generation = submitted(member, apixo_account, f"{PROMPT} [seconds:2]")
    assert _expire_now(settings) == 1
    generation.refresh_from_db()
    assert generation.state == State.EXPIRED and ledger(generation) == ["hold", "release"]
    assert generation.late_poll_until > timezone.now() + timezone.timedelta(hours=47)
    assert committed_in(budget=budget) == 0  # released at expiry

    # Still polled (slowly) in its grace; the provider finishes the task.
    deadline = time.monotonic() + 10
    while generation.state == State.EXPIRED and time.monotonic() < deadline:
        time.sleep(0.3)
        make_due(generation)
        sweep()
        generation.refresh_from_db()
    assert generation.state == State.SUCCEEDED and generation.late
    entries = list(LedgerEntry.objects.filter(generation=generation).order_by("id"))
    assert [(e.kind, e.late) for e in entries] == [("hold", False), ("release", False), ("capture", True)]
    hold, _, capture = entries
    assert capture.amount == hold.amount == generation.charged_amount and capture.hold_amount == 0
    assert capture.effective_at == hold.effective_at  # the cost stays in the period it was submitted in
    assert committed_in(budget=budget) == hold.amount  # charged exactly once

    # Archived (the sweep hands the download to a worker), and nothing is charged twice.
    wait_for(lambda: sweep() is not None and Generation.objects.get(pk=generation.pk).archive_state == ArchiveState.DONE,
             timeout=10, what="the archive")
    for _ in range(2):
        make_due(generation)
        sweep()
    generation.refresh_from_db()
    assert generation.has_video and ledger(generation) == ["hold", "release", "capture"]
    assert committed_in(budget=budget) == hold.amount
    assert len(submits(sandbox)) == 1

    client.force_login(member)
    card = client.get(f"/g/{generation.pk}/card/").content.decode()
    assert 'data-testid="late"' in card
    detail = client.get(f"/g/{generation.pk}/").content.decode()
    assert 'data-testid="detail-late"' in detail


def test_a_late_failure_changes_nothing_and_ends_the_grace(member, apixo_account, sandbox, settings):
    generation = submitted(member, apixo_account, f"{PROMPT} [seconds:1] [fail]")
    assert _expire_now(settings) == 1
    time.sleep(1.2)
    make_due(generation)
    sweep()
    generation.refresh_from_db()
    assert generation.state == State.EXPIRED and not generation.late and generation.charged_amount is None
    assert ledger(generation) == ["hold", "release"]
    assert generation.late_poll_until is None  # no more polls
    gets = len(status_gets(sandbox, generation.provider_task_id))
    make_due(generation)
    sweep()
    assert len(status_gets(sandbox, generation.provider_task_id)) == gets
    assert generation.events.filter(message__contains="nothing changes").exists()


def test_after_the_grace_an_expired_task_is_not_polled(member, apixo_account, sandbox, settings):
    settings.HAILUO_LATE_RESULT_GRACE = 0
    generation = submitted(member, apixo_account, f"{PROMPT} [seconds:1]")
    assert _expire_now(settings) == 1
    time.sleep(1.2)
    make_due(generation)
    sweep()
    generation.refresh_from_db()
    assert generation.state == State.EXPIRED and ledger(generation) == ["hold", "release"]
    assert status_gets(sandbox, generation.provider_task_id) == []


def test_expiry_cancels_at_the_provider_where_documented(member, other_provider, settings):
    """qingbo documents a cancel while the task is queued ("Cancel Task"): expiry sends it first."""
    handle, account = other_provider("qingbo", queue_seconds=30)
    generation = submitted(member, account, model="hailuo-2.3", mode="text-to-video", resolution="768p")
    assert _expire_now(settings) == 1
    generation.refresh_from_db()
    assert generation.state == State.CANCELED and ledger(generation) == ["hold", "release"]
    cancels = [r for r in handle.requests("api") if r["method"] == "POST" and r["path"].endswith("/cancel")]
    assert len(cancels) == 1 and handle.tasks()[0]["status"] == "cancelled"


# --- early callbacks ------------------------------------------------------------------------------------
@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_callback_before_the_submit_timed_out_resolves_it_without_an_admin(
    member, apixo_account, sandbox, live_server, settings, monkeypatch, media_root, queued
):
    """The sandbox calls back (over real HTTP) while our submit waits; then our submit times out."""
    settings.HAILUO_PUBLIC_BASE_URL = live_server.url
    settings.HAILUO_PROVIDER_READ_TIMEOUT = 1.0
    monkeypatch.setattr(services, "enqueue_poll", lambda ids: None)
    sandbox.configure(generation_seconds=0.2, hang_seconds=2.0, callback_retry_delays=[30])
    generation = create(member, apixo_account, f"{PROMPT} [hang]")
    assert services.generation_submit(generation_id=generation.pk) == State.NEEDS_RECONCILIATION
    generation.refresh_from_db()
    task_id = sandbox.tasks()[0]["taskId"]
    assert [c["status"] for c in sandbox.requests("callback")] == [200]
    assert generation.callback_task_id == task_id and generation.provider_task_id == ""
    assert generation.needs_reconciliation_at is not None

    # The next sweep checks that task with our own key and carries on from there.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        tasks.sweep_once()
        for item in list(queued):
            if item[0] == "archive":
                services.generation_archive(generation_id=item[1])
        generation.refresh_from_db()
        if generation.archive_state == ArchiveState.DONE:
            break
        time.sleep(0.2)
    assert generation.state == State.SUCCEEDED and generation.provider_task_id == task_id
    assert ledger(generation) == ["hold", "capture"]
    assert len(submits(sandbox)) == 1  # never sent twice
    assert status_gets(sandbox, task_id)  # our own status read decided it
    assert generation.events.filter(message__startswith="Resolved automatically").exists()


def test_a_callback_after_the_submit_was_lost_resolves_it(
    member, apixo_account, sandbox, client, settings, queued, django_capture_on_commit_callbacks
):
    settings.HAILUO_PUBLIC_BASE_URL = "http://testserver"
    settings.HAILUO_PROVIDER_READ_TIMEOUT = 0.5
    sandbox.configure(generation_seconds=0.3, hang_seconds=1.0)
    generation = create(member, apixo_account, f"{PROMPT} [hang]")
    assert services.generation_submit(generation_id=generation.pk) == State.NEEDS_RECONCILIATION
    task_id = sandbox.tasks()[0]["taskId"]
    # The callback says "success"; its word is not taken: nothing moves until our own read.
    body = json.dumps({"code": 200, "message": "success", "data": {"taskId": task_id, "state": "success"}})
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(callback_path(submits(sandbox)[-1]), body, content_type="application/json").status_code == 200
    generation.refresh_from_db()
    assert generation.state == State.NEEDS_RECONCILIATION and generation.callback_task_id == task_id
    assert ("poll", [generation.pk]) in queued
    # Another task id from the same callback URL is refused.
    other = json.dumps({"code": 200, "data": {"taskId": "forged", "state": "success"}})
    assert client.post(callback_path(submits(sandbox)[-1]), other, content_type="application/json").status_code == 400

    time.sleep(0.4)
    counts = services.generations_poll(ids=[generation.pk])  # the woken poll
    generation.refresh_from_db()
    assert counts.get("resolved") == 1
    assert generation.state == State.SUCCEEDED and generation.provider_task_id == task_id
    assert ledger(generation) == ["hold", "capture"] and len(submits(sandbox)) == 1


def test_a_callback_naming_a_task_our_key_cannot_read_is_dropped(
    member, apixo_account, sandbox, client, settings, queued, django_capture_on_commit_callbacks
):
    settings.HAILUO_PUBLIC_BASE_URL = "http://testserver"
    settings.HAILUO_PROVIDER_READ_TIMEOUT = 0.5
    sandbox.configure(hang_seconds=1.0)
    generation = create(member, apixo_account, f"{PROMPT} [hang]")
    assert services.generation_submit(generation_id=generation.pk) == State.NEEDS_RECONCILIATION
    body = json.dumps({"code": 200, "data": {"taskId": "no-such-task", "state": "success"}})
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(callback_path(submits(sandbox)[-1]), body, content_type="application/json").status_code == 200
    counts = services.generations_poll(ids=[generation.pk])
    generation.refresh_from_db()
    assert counts.get("unknown_task") == 1
    assert generation.state == State.NEEDS_RECONCILIATION and generation.callback_task_id == ""
    assert ledger(generation) == ["hold"] and len(submits(sandbox)) == 1


# --- needs_reconciliation: age, amount at risk, the daily email -------------------------------------------
def test_open_reconciliations_show_age_and_amount_and_staff_get_a_daily_email(member, apixo_account, sandbox, settings, client):
    from accounts.models import User

    settings.HAILUO_PROVIDER_READ_TIMEOUT = 0.5
    sandbox.configure(hang_seconds=1.0)
    generation = create(member, apixo_account, f"{PROMPT} [hang]")
    assert services.generation_submit(generation_id=generation.pk) == State.NEEDS_RECONCILIATION
    Generation.objects.filter(pk=generation.pk).update(needs_reconciliation_at=timezone.now() - timezone.timedelta(hours=5))
    staff = User.objects.create_user("ops@example.com", "pw-ops-123", is_staff=True, is_superuser=True)
    User.objects.create_user("ex@example.com", "pw-ex-123", is_staff=True, is_active=False)

    assert tasks.reconciliation_digest() == 1
    assert len(mail.outbox) == 1
    sent = mail.outbox[0]
    assert sent.to == ["ops@example.com"]
    amount = format_usd(generation.quoted_amount)
    assert "1 generation(s) need reconciliation" in sent.subject and amount in sent.subject
    assert str(generation.pk) in sent.body and "open 5.0 h" in sent.body

    client.force_login(staff)
    page = client.get("/admin/generations/generation/?state__exact=needs_reconciliation").content.decode()
    assert "5.0 h" in page and amount in page
    recon = client.get("/reports/reconciliation/", {"period": "month", "month": timezone.now().strftime("%Y-%m"), "tz": "UTC"}).content.decode()
    section = recon[recon.index('data-testid="open-reconciliations"'):]
    assert "1 open" in section and f'data-testid="open-at-risk">{amount}<' in section and 'data-testid="open-age">5 h' in section

    services.generation_reconcile_failed(generation_id=generation.pk, admin=staff)
    mail.outbox.clear()
    assert tasks.reconciliation_digest() == 0 and mail.outbox == []  # nothing open: no email


# --- a video that could not be saved ---------------------------------------------------------------------
def _archive_until_failed(generation) -> Generation:
    for _ in range(services.ARCHIVE_MAX_ATTEMPTS):
        Generation.objects.filter(pk=generation.pk).update(next_archive_at=timezone.now())
        services.generation_archive(generation_id=generation.pk)
    generation.refresh_from_db()
    assert generation.archive_state == ArchiveState.FAILED
    return generation


def test_a_video_not_saved_is_shown_saved_again_and_credited(
    member, other_provider, settings, client, media_root, queued, django_capture_on_commit_callbacks
):
    from accounts.models import User

    handle, account = other_provider("minimax", result_ttl=0)
    generation = poll_until_final(submitted(member, account, model="MiniMax-Hailuo-2.3", mode="text-to-video", resolution="768p"))
    time.sleep(1.1)
    generation = _archive_until_failed(generation)
    assert generation.state == State.SUCCEEDED and ledger(generation) == ["hold", "capture"]

    client.force_login(member)
    card = client.get(f"/g/{generation.pk}/card/").content.decode()
    assert "The video could not be saved" in card and 'data-testid="save-retry"' in card
    # MiniMax signs a fresh download URL on every read: the retry reads the task again.
    handle.configure(result_ttl=3600)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"/g/{generation.pk}/save-again/")
    assert response.status_code == 302 and ("archive", generation.pk) in queued
    queued.run()
    generation.refresh_from_db()
    assert generation.archive_state == ArchiveState.DONE and generation.has_video

    # Another one, past the URL's lifetime: no retry; staff credit it with a reason.
    handle.configure(result_ttl=0)
    lost = poll_until_final(submitted(member, account, model="MiniMax-Hailuo-2.3", mode="text-to-video", resolution="768p"))
    time.sleep(1.1)
    lost = _archive_until_failed(lost)
    Generation.objects.filter(pk=lost.pk).update(completed_at=timezone.now() - timezone.timedelta(hours=25))
    card = client.get(f"/g/{lost.pk}/card/").content.decode()
    assert "The video could not be saved" in card and "save-retry" not in card
    assert client.post(f"/g/{lost.pk}/save-again/").status_code == 422

    staff = User.objects.create_user("ops@example.com", "pw-ops-123", is_staff=True, is_superuser=True)
    client.force_login(staff)
    listing = client.get("/admin/generations/generation/?not_saved=1").content.decode()
    assert str(lost.pk) in listing and str(generation.pk) not in listing
    ask = client.post("/admin/generations/generation/", {"action": "credit_unsaved", "_selected_action": [str(lost.pk)]})
    assert ask.status_code == 200 and "Reason" in ask.content.decode()
    done = client.post(
        "/admin/generations/generation/",
        {"action": "credit_unsaved", "_selected_action": [str(lost.pk)], "apply": "1", "reason": "URL expired before we saved it"},
        follow=True,
    )
    assert "1 generation(s) credited" in done.content.decode()
    credit = LedgerEntry.objects.get(generation=lost, kind=LedgerEntry.Kind.CREDIT)
    assert credit.amount == lost.charged_amount and credit.created_by == staff and "URL expired" in credit.reason
    with pytest.raises(ValueError, match="already credited"):
        services.generation_credit_unsaved(generation_id=lost.pk, reason="again", admin=staff)
    assert ledger(lost) == ["hold", "capture", "credit"]


# --- billed duration ---------------------------------------------------------------------------------------
def test_the_archived_videos_duration_is_measured_and_a_per_second_mismatch_flagged(
    member, apixo_account, sandbox, media_root, client
):
    from accounts.models import User

    generation = poll_until_final(submitted(member, apixo_account))
    assert generation.price_rule["unit"] == "per_second" and generation.duration == 6
    assert services.generation_archive(generation_id=generation.pk) == ArchiveState.DONE
    generation.refresh_from_db()
    assert generation.video_seconds == Decimal("3.000")  # the sandbox's sample.mp4 is 3 s, billed 6 s

    flags = duration_mismatches(start=timezone.now() - timezone.timedelta(hours=1), end=timezone.now() + timezone.timedelta(hours=1))
    assert [(f.generation.pk, f.billed_seconds, f.difference) for f in flags] == [(generation.pk, 6, Decimal("-3.000"))]
    assert flags[0].charged == generation.charged_amount and flags[0].at_measured == generation.charged_amount / 2
    # Within half a second: not flagged.
    Generation.objects.filter(pk=generation.pk).update(video_seconds=Decimal("5.600"))
    assert duration_mismatches(start=timezone.now() - timezone.timedelta(hours=1), end=timezone.now() + timezone.timedelta(hours=1)) == []
    Generation.objects.filter(pk=generation.pk).update(video_seconds=Decimal("3.000"))

    staff = User.objects.create_user("ops@example.com", "pw-ops-123", is_staff=True)
    client.force_login(staff)
    page = client.get("/reports/reconciliation/", {"period": "month", "month": timezone.now().strftime("%Y-%m"), "tz": "UTC"}).content.decode()
    section = page[page.index('data-testid="duration-flags"'):]
    assert str(generation.pk)[:8] in section and 'data-testid="measured">3 s' in section and "-3 s" in section
