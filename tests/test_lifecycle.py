"""The generation lifecycle over real HTTP to the APIXO sandbox: submit outcomes, polls,
duplicate updates, callbacks, archive. django-q2 enqueueing is exercised by the e2e tests;
here the services are called directly, as the tasks do."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest
from django.test import override_settings

from billing.models import LedgerEntry
from generations import services, tasks
from generations.models import Generation, State
from providers.base import TaskState, TaskUpdate

from .conftest import make_params, record_queue

pytestmark = pytest.mark.django_db


_QUEUE: list = []


@pytest.fixture(autouse=True)
def _no_queue(monkeypatch):
    """Record what would be enqueued on django-q2; :func:`drive` performs it as a worker would."""
    _QUEUE[:] = [record_queue(monkeypatch)]
    return _QUEUE[0]


def kinds(generation):
    return list(LedgerEntry.objects.filter(generation=generation).order_by("id").values_list("kind", flat=True))


def drive(generation, timeout=10.0):
    """Sweep until the generation is final and archived (or failed to archive)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        tasks.sweep_once()
        _QUEUE[0].run()
        generation.refresh_from_db()
        if generation.is_final and generation.archive_state != "pending":
            return generation
        time.sleep(0.1)
    raise AssertionError(f"generation stuck in {generation.state}/{generation.archive_state}")


def submit_posts(sandbox):
    return [r for r in sandbox.requests("api") if r["method"] == "POST" and "generateTask" in r["path"]]


def test_success_path_holds_then_captures_and_archives(member, apixo_account, sandbox):
    generation = services.generation_create(user=member, params=make_params(apixo_account))
    assert generation.state == State.QUEUED and kinds(generation) == ["hold"]
    assert services.generation_submit(generation_id=generation.pk) == State.SUBMITTED
    generation.refresh_from_db()
    assert generation.provider_task_id.startswith("task_")
    with override_settings(HAILUO_POLL_TIME_SCALE=0):
        drive(generation)
    assert generation.state == State.SUCCEEDED and generation.has_video
    assert generation.video.open("rb").read(12)[4:8] == b"ftyp"
    assert generation.poster and generation.poster.open("rb").read(2) == b"\xff\xd8"  # a JPEG poster frame
    assert kinds(generation) == ["hold", "capture"]
    assert generation.charged_amount == Decimal("0.336")
    states = list(generation.events.exclude(state="").values_list("state", flat=True))
    assert states[:3] == ["queued", "submitting", "submitted"] and "succeeded" in states


def test_failure_path_keeps_provider_code_and_releases(member, apixo_account, sandbox):
    generation = services.generation_create(
        user=member, params=make_params(apixo_account, prompt="一只白猫慵懒地躺在阳光下的窗台上 [fail:SensitiveContentDetected]")
    )
    services.generation_submit(generation_id=generation.pk)
    with override_settings(HAILUO_POLL_TIME_SCALE=0):
        drive(generation)
    assert generation.state == State.FAILED
    assert generation.fail_code == "SensitiveContentDetected" and generation.fail_message
    assert kinds(generation) == ["hold", "release"]
    assert generation.charged_amount is None


def test_permanent_submit_error_fails_and_releases(member, apixo_account, sandbox):
    generation = services.generation_create(user=member, params=make_params(apixo_account, prompt="x [http:402]"))
    assert services.generation_submit(generation_id=generation.pk) == State.FAILED
    generation.refresh_from_db()
    assert generation.fail_code == "402" and generation.fail_message.startswith("APIXO:")
    assert kinds(generation) == ["hold", "release"]


def test_429_before_sending_is_retried_later_not_failed(member, apixo_account, sandbox):
    generation = services.generation_create(user=member, params=make_params(apixo_account, prompt="x [http:429]"))
    assert services.generation_submit(generation_id=generation.pk) == State.QUEUED
    generation.refresh_from_db()
    assert generation.next_submit_at is not None and generation.submit_attempts == 1
    assert kinds(generation) == ["hold"]
    # Not due yet: a second call does not send again.
    assert services.generation_submit(generation_id=generation.pk) == State.QUEUED
    assert len(submit_posts(sandbox)) == 1


def test_gives_up_after_max_attempts(member, apixo_account, sandbox, settings):
    settings.HAILUO_SUBMIT_MAX_ATTEMPTS = 2
    generation = services.generation_create(user=member, params=make_params(apixo_account, prompt="x [http:503]"))
    services.generation_submit(generation_id=generation.pk)
    Generation.objects.filter(pk=generation.pk).update(next_submit_at=None)
    assert services.generation_submit(generation_id=generation.pk) == State.FAILED
    generation.refresh_from_db()
    assert "gave up after 2 attempts" in generation.fail_message and kinds(generation) == ["hold", "release"]


def test_read_timeout_is_never_resent(member, apixo_account, sandbox, settings):
    settings.HAILUO_PROVIDER_READ_TIMEOUT = 0.5
    sandbox.configure(hang_seconds=2)
    generation = services.generation_create(user=member, params=make_params(apixo_account, prompt="slow [hang]"))
    assert services.generation_submit(generation_id=generation.pk) == State.NEEDS_RECONCILIATION
    for _ in range(3):
        tasks.sweep_once()
        services.generation_submit(generation_id=generation.pk)
    generation.refresh_from_db()
    assert generation.state == State.NEEDS_RECONCILIATION and generation.reconciliation_note
    assert len(submit_posts(sandbox)) == 1
    assert kinds(generation) == ["hold"]


def test_duplicate_and_late_updates_change_nothing(member, apixo_account, sandbox):
    generation = services.generation_create(user=member, params=make_params(apixo_account))
    services.generation_submit(generation_id=generation.pk)
    generation.refresh_from_db()
    success = TaskUpdate(task_id=generation.provider_task_id, state=TaskState.SUCCEEDED, provider_state="success", result_urls=("http://127.0.0.1:1/v.mp4",))
    failure = TaskUpdate(task_id=generation.provider_task_id, state=TaskState.FAILED, provider_state="failed", fail_code="X")
    running = TaskUpdate(task_id=generation.provider_task_id, state=TaskState.RUNNING, provider_state="processing")
    assert services.generation_apply_update(generation_id=generation.pk, update=success) == "succeeded"
    assert services.generation_apply_update(generation_id=generation.pk, update=success) == "ignored"
    assert services.generation_apply_update(generation_id=generation.pk, update=failure) == "ignored"
    services.generation_apply_update(generation_id=generation.pk, update=running)
    generation.refresh_from_db()
    assert generation.state == State.SUCCEEDED and kinds(generation) == ["hold", "capture"]


def test_unknown_provider_state_is_polled_again_never_success(member, apixo_account, sandbox):
    generation = services.generation_create(user=member, params=make_params(apixo_account))
    services.generation_submit(generation_id=generation.pk)
    generation.refresh_from_db()
    odd = TaskUpdate(task_id=generation.provider_task_id, state=TaskState.UNKNOWN, provider_state="archived?")
    assert services.generation_apply_update(generation_id=generation.pk, update=odd) == "in_progress"
    generation.refresh_from_db()
    assert generation.state == State.SUBMITTED and generation.next_poll_at is not None


def test_expiry_releases_the_hold(member, apixo_account, sandbox, settings):
    generation = services.generation_create(user=member, params=make_params(apixo_account, prompt="long one [seconds:60]"))
    services.generation_submit(generation_id=generation.pk)
    settings.HAILUO_MAX_TASK_LIFETIME = 0
    assert services.generations_expire() == 1
    generation.refresh_from_db()
    assert generation.state == State.EXPIRED and kinds(generation) == ["hold", "release"]


def test_callback_wakes_the_poll_and_is_authenticated(
    member, apixo_account, sandbox, client, settings, _no_queue, django_capture_on_commit_callbacks
):
    """The queued path (HAILUO_CALLBACK_STATUS_READ = "queue"; the inline read: tests/test_callback_read.py)."""
    settings.HAILUO_PUBLIC_BASE_URL = "http://testserver"
    settings.HAILUO_CALLBACK_STATUS_READ = "queue"
    generation = services.generation_create(user=member, params=make_params(apixo_account))
    services.generation_submit(generation_id=generation.pk)
    generation.refresh_from_db()
    post = [r for r in submit_posts(sandbox)][-1]
    callback_url = post["body"]["callback_url"]
    assert post["body"]["request_type"] == "callback" and callback_url.startswith("http://testserver/hooks/apixo/")
    path = callback_url.removeprefix("http://testserver")
    body = json.dumps({"code": 200, "message": "success", "data": {"taskId": generation.provider_task_id, "state": "success"}})
    # Wrong token, malformed body, another task: 4xx and nothing queued.
    assert client.post(path.replace(path.split("/")[-2], "wrong"), body, content_type="application/json").status_code == 403
    assert client.post(path, "nope", content_type="application/json").status_code == 400
    other = body.replace(generation.provider_task_id, "task_other")
    assert client.post(path, other, content_type="application/json").status_code == 400
    assert not [q for q in _no_queue if q[0] == "poll"]
    # The real one wakes a poll; the state itself still comes from the status endpoint.
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(path, body, content_type="application/json")
    assert response.status_code == 200
    generation.refresh_from_db()
    assert generation.state == State.SUBMITTED
    assert ("poll", [generation.pk]) in _no_queue
    unknown = f"/hooks/apixo/00000000-0000-0000-0000-000000000000/{path.split('/')[-2]}/"
    assert client.post(unknown, body, content_type="application/json").status_code == 404


def test_archive_refuses_a_non_mp4_and_retries_then_fails(member, apixo_account, sandbox, settings):
    generation = services.generation_create(user=member, params=make_params(apixo_account))
    services.generation_submit(generation_id=generation.pk)
    generation.refresh_from_db()
    bad = TaskUpdate(
        task_id=generation.provider_task_id, state=TaskState.SUCCEEDED, provider_state="success",
        result_urls=(f"{sandbox.origin}/_sandbox/image.png?w=400&h=400",),
    )
    services.generation_apply_update(generation_id=generation.pk, update=bad)
    assert services.generation_archive(generation_id=generation.pk) == "pending"
    generation.refresh_from_db()
    assert "not an MP4" in generation.archive_error
    assert kinds(generation) == ["hold", "capture"]  # charged: the provider delivered


def test_archive_refuses_private_hosts_unless_allowed(member, apixo_account, sandbox, settings):
    settings.HAILUO_ALLOWED_PRIVATE_HOSTS = []
    generation = services.generation_create(user=member, params=make_params(apixo_account))
    services.generation_submit(generation_id=generation.pk)
    generation.refresh_from_db()
    update = TaskUpdate(task_id=generation.provider_task_id, state=TaskState.SUCCEEDED, provider_state="success", result_urls=(f"{sandbox.origin}/files/x.mp4",))
    services.generation_apply_update(generation_id=generation.pk, update=update)
    services.generation_archive(generation_id=generation.pk)
    generation.refresh_from_db()
    assert "non-public address" in generation.archive_error


def test_many_generations_are_polled_concurrently(member, apixo_account, sandbox, settings):
    """40 tasks with a 200 ms provider answer in one sweep: concurrency, not one by one."""
    settings.HAILUO_POLL_TIME_SCALE = 0
    ids = []
    for i in range(40):
        g = services.generation_create(user=member, params=make_params(apixo_account, prompt=f"clip {i} [seconds:30]"))
        services.generation_submit(generation_id=g.pk)
        ids.append(g.pk)
    sandbox.configure(latency_ms=200)
    started = time.monotonic()
    counts = services.generations_poll()
    elapsed = time.monotonic() - started
    assert counts["polled"] == 40
    # Serial polling would need at least 8 s; the figure is measured in bench/, this only proves overlap.
    assert elapsed < 6, elapsed
    assert set(Generation.objects.filter(pk__in=ids).values_list("poll_count", flat=True)) == {1}
    status_gets = [r for r in sandbox.requests("api") if "statusTask" in r["path"]]
    assert len(status_gets) == 40


def test_admin_resolves_needs_reconciliation(member, apixo_account, sandbox, settings, admin_client, admin_user):
    settings.HAILUO_PROVIDER_READ_TIMEOUT = 0.5
    sandbox.configure(hang_seconds=1.5)
    lost = services.generation_create(user=member, params=make_params(apixo_account, prompt="lost [hang]"))
    found = services.generation_create(user=member, params=make_params(apixo_account, prompt="found [hang]"))
    for g in (lost, found):
        assert services.generation_submit(generation_id=g.pk) == State.NEEDS_RECONCILIATION
    page = admin_client.get(f"/admin/generations/generation/{found.pk}/change/").content.decode()
    assert "Attach provider task id" in page
    time.sleep(1.2)  # the sandbox created the tasks anyway: find found's task id there
    task_id = next(t["taskId"] if "taskId" in t else t["task_id"] for t in sandbox.tasks() if "found" in json.dumps(t))
    admin_client.post(f"/admin/generations/generation/{found.pk}/attach-task/", {"provider_task_id": task_id})
    admin_client.post("/admin/generations/generation/", {"action": "mark_failed_and_release", "_selected_action": [lost.pk]})
    lost.refresh_from_db()
    assert lost.state == State.FAILED and kinds(lost) == ["hold", "release"]
    found.refresh_from_db()
    assert found.state == State.SUBMITTED and found.provider_task_id == task_id
    with override_settings(HAILUO_POLL_TIME_SCALE=0):
        drive(found)
    assert found.state == State.SUCCEEDED and kinds(found) == ["hold", "capture"]


def test_a_429_pauses_the_whole_account_for_its_retry_after(member, apixo_account, sandbox, settings):
    settings.HAILUO_POLL_TIME_SCALE = 0
    ids = []
    for i in range(3):
        g = services.generation_create(user=member, params=make_params(apixo_account, prompt=f"clip {i} [seconds:30]"))
        services.generation_submit(generation_id=g.pk)
        ids.append(g.pk)
    sandbox.configure(rate_limit_every=1)  # every request answers 429 Retry-After: 1
    counts = services.generations_poll()
    assert counts["errors"] == 3
    apixo_account.refresh_from_db()
    assert apixo_account.paused_until is not None
    sandbox.configure(rate_limit_every=0)
    assert services.generations_poll() == {}  # paused: nothing sent
    time.sleep(1.1)
    assert services.generations_poll()["polled"] == 3


def test_failover_on_402_moves_the_generation_to_the_fallback_account(member, apixo_account, sandbox, _no_queue):
    from providers.models import ProviderAccount

    from .conftest import APIXO_KEY

    backup = ProviderAccount(kind="apixo", label="APIXO backup", base_url=sandbox.base_url)
    backup.set_api_key(APIXO_KEY)
    backup.save()
    apixo_account.fallback = backup
    apixo_account.save()
    sandbox.configure(balance=0.1)  # the first submit's price exceeds the balance: 402
    generation = services.generation_create(user=member, params=make_params(apixo_account))
    assert services.generation_submit(generation_id=generation.pk) == State.QUEUED
    generation.refresh_from_db()
    assert generation.provider_account == backup and generation.fallback_from == apixo_account
    sandbox.configure(balance=None)
    assert services.generation_submit(generation_id=generation.pk) == State.SUBMITTED
    with override_settings(HAILUO_POLL_TIME_SCALE=0):
        drive(generation)
    capture = LedgerEntry.objects.get(generation=generation, kind="capture")
    assert generation.state == State.SUCCEEDED and capture.provider_account == backup
    assert len(submit_posts(sandbox)) == 2  # the refused one (no task created) and the served one


def test_an_account_marked_down_sends_new_submits_to_its_fallback(member, apixo_account, sandbox):
    from providers.models import ProviderAccount

    from .conftest import APIXO_KEY

    backup = ProviderAccount(kind="apixo", label="APIXO backup", base_url=sandbox.base_url)
    backup.set_api_key(APIXO_KEY)
    backup.save()
    generation = services.generation_create(user=member, params=make_params(apixo_account))
    ProviderAccount.objects.filter(pk=apixo_account.pk).update(down=True, fallback=backup)
    assert services.generation_submit(generation_id=generation.pk) == State.QUEUED
    assert services.generation_submit(generation_id=generation.pk) == State.SUBMITTED
    generation.refresh_from_db()
    assert generation.provider_account == backup and len(submit_posts(sandbox)) == 1


def test_only_the_allowed_number_of_sweeps_run_at_once(settings):
    settings.HAILUO_POLL_SWEEPERS = 1
    first = services.sweep_slot_claim(seconds=60)
    assert first is not None
    assert tasks.poll_sweep(run_seconds=0.1) == {"skipped": 1}
    services.sweep_slot_release(slot=first)
    assert "skipped" not in tasks.poll_sweep(run_seconds=0.1)


def test_a_sigterm_ends_the_sweep_after_its_pass_then_takes_effect(settings, member, apixo_account, sandbox, monkeypatch):
    """A stopping cluster SIGTERMs its workers: the sweep finishes its pass, releases its slot,
    and only then does the signal act (here a recording handler stands for "the process ends")."""
    import os
    import signal
    import threading

    settings.HAILUO_POLL_SWEEPERS = 1
    in_flight = services.generation_create(user=member, params=make_params(apixo_account, prompt="clip [seconds:60]"))
    services.generation_submit(generation_id=in_flight.pk)
    released = []
    release = services.sweep_slot_release
    monkeypatch.setattr(services, "sweep_slot_release", lambda slot: (release(slot=slot), released.append(time.monotonic())))
    received = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: received.append(time.monotonic()))
    try:
        threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGTERM)).start()
        started = time.monotonic()
        totals = tasks.poll_sweep(run_seconds=30)
        ended = time.monotonic()
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert ended - started < 5, f"the sweep ran {ended - started:.1f} s after the SIGTERM"
    assert "skipped" not in totals and totals.get("polled", 0) >= 0
    assert len(received) == 1 and len(released) == 1
    assert received[0] >= released[0]  # held back until the sweep had let go of its slot
    slot = services.sweep_slot_claim(seconds=10)  # the slot was released
    assert slot is not None
    services.sweep_slot_release(slot=slot)


def test_the_sweep_hands_submits_to_the_workers_and_re_hands_a_lost_one(member, apixo_account, sandbox, _no_queue):
    from datetime import timedelta

    from django.utils import timezone

    fresh = services.generation_create(user=member, params=make_params(apixo_account, prompt="fresh"))
    lost = services.generation_create(user=member, params=make_params(apixo_account, prompt="lost"))
    retry = services.generation_create(user=member, params=make_params(apixo_account, prompt="retry"))
    now = timezone.now()
    Generation.objects.filter(pk=lost.pk).update(updated_at=now - timedelta(seconds=services.SUBMIT_REQUEUE_AFTER + 1))
    Generation.objects.filter(pk=retry.pk).update(next_submit_at=now - timedelta(seconds=1))
    del _no_queue[:]
    _no_queue.performed = 0
    counts = tasks.sweep_once()
    assert counts["submits_enqueued"] == 2
    assert sorted(_no_queue, key=str) == sorted([("submit", lost.pk), ("submit", retry.pk)], key=str)
    assert tasks.sweep_once()["submits_enqueued"] == 0  # handed over once, not on every pass
    _no_queue.run()  # a worker takes them
    assert set(Generation.objects.filter(pk__in=[lost.pk, retry.pk]).values_list("state", flat=True)) == {State.SUBMITTED}
    assert Generation.objects.get(pk=fresh.pk).state == State.QUEUED  # its own task is still on its way
    assert len(submit_posts(sandbox)) == 2


def test_the_sweep_claims_a_due_download_before_handing_it_over(member, apixo_account, sandbox, _no_queue):
    generation = services.generation_create(user=member, params=make_params(apixo_account))
    services.generation_submit(generation_id=generation.pk)
    generation.refresh_from_db()
    url = f"{sandbox.origin}/_sandbox/image.png?w=400&h=400"  # not an MP4: the attempt fails, and is counted
    update = TaskUpdate(task_id=generation.provider_task_id, state=TaskState.SUCCEEDED, provider_state="success", result_urls=(url,))
    services.generation_apply_update(generation_id=generation.pk, update=update)
    assert tasks.sweep_once()["archives_enqueued"] == 1
    assert _no_queue[-1] == ("archive", generation.pk, 1)
    generation.refresh_from_db()
    assert generation.archive_attempts == 1 and generation.next_archive_at > generation.completed_at
    assert tasks.sweep_once()["archives_enqueued"] == 0  # claimed: nobody else starts it
    # The download queued at success finds the attempt taken and does nothing.
    assert services.generation_archive(generation_id=generation.pk) == "pending"
    generation.refresh_from_db()
    assert generation.archive_attempts == 1 and generation.archive_error == ""
    # The claimed attempt runs once; a stale copy of it (a redelivered task) does nothing.
    assert services.generation_archive(generation_id=generation.pk, attempt=1) == "pending"
    generation.refresh_from_db()
    assert "not an MP4" in generation.archive_error
    assert services.generation_archive(generation_id=generation.pk, attempt=0) == "pending"
    generation.refresh_from_db()
    assert generation.archive_attempts == 1
