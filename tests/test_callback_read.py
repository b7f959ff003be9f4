"""A callback's status read done in the callback's own request (``HAILUO_CALLBACK_STATUS_READ =
"inline"``, the default; ``generations/services/callback_read.py``), over real HTTP to the APIXO
sandbox: the state still moves only from our own status read, exactly once, and any failure of
that read falls back to the queued poll. The queued path itself: tests/test_lifecycle.py and
tests/test_faults.py (``HAILUO_CALLBACK_STATUS_READ = "queue"``)."""

from __future__ import annotations

import json
import time

import pytest
from django.utils import timezone

from generations import services, tasks
from generations.models import Generation, State

from .conftest import record_queue
from .test_faults import (
    _final_callback_body,
    assert_settled,
    callback_path,
    ledger,
    status_gets,
    submits,
    submitted,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def queue(monkeypatch):
    return record_queue(monkeypatch)


@pytest.fixture(autouse=True)
def _inline(settings, sandbox):
    settings.HAILUO_PUBLIC_BASE_URL = "http://testserver"
    settings.HAILUO_CALLBACK_STATUS_READ = "inline"
    settings.HAILUO_POLL_TIME_SCALE = 1.0  # the sweep would not poll these yet: only the callback's read does
    sandbox.configure(generation_seconds=0.3)


def post(client, path: str, body: str, capture):
    with capture(execute=True):
        return client.post(path, body, content_type="application/json")


def test_a_callback_reads_the_status_in_its_request_and_captures_once(
    member, apixo_account, sandbox, client, queue, django_capture_on_commit_callbacks
):
    generation = submitted(member, apixo_account)
    path = callback_path(submits(sandbox)[-1])
    body = _final_callback_body(sandbox, generation)
    assert post(client, path, body, django_capture_on_commit_callbacks).status_code == 200
    # Answered after our own status read moved it: succeeded, captured, the download queued; no poll queued.
    generation = assert_settled(generation)
    assert generation.state == State.SUCCEEDED and ledger(generation) == ["hold", "capture"]
    assert len(status_gets(sandbox, generation.provider_task_id)) == 1
    assert queue == [("archive", generation.pk)]
    # The provider's retries of the same callback: no other read, no other capture, nothing queued.
    for _ in range(2):
        assert post(client, path, body, django_capture_on_commit_callbacks).status_code == 200
    assert len(status_gets(sandbox, generation.provider_task_id)) == 1
    assert ledger(generation) == ["hold", "capture"] and queue == [("archive", generation.pk)]
    assert len(submits(sandbox)) == 1


def test_a_forged_callback_body_never_moves_the_state(
    member, apixo_account, sandbox, client, queue, django_capture_on_commit_callbacks
):
    """Right URL and token, but a body that lies: the state follows the provider's status endpoint only."""
    generation = submitted(member, apixo_account, prompt="a long one [seconds:60]")
    path = callback_path(submits(sandbox)[-1])
    lie = json.dumps({"code": 200, "message": "success", "data": {
        "taskId": generation.provider_task_id, "state": "success", "resultJson": {"resultUrls": ["https://evil.example/x.mp4"]},
    }})
    assert post(client, path, lie, django_capture_on_commit_callbacks).status_code == 200
    generation.refresh_from_db()
    # Our read says the task is still queued or generating: in flight, nothing captured, no foreign URL kept.
    assert generation.state in (State.SUBMITTED, State.RUNNING) and generation.provider_state != "success"
    assert ledger(generation) == ["hold"] and generation.poll_count == 1
    assert not generation.result_urls
    assert len(status_gets(sandbox, generation.provider_task_id)) == 1 and queue == []

    # The opposite lie: the body says it failed while the provider says it succeeded.
    other = submitted(member, apixo_account)
    body = json.loads(_final_callback_body(sandbox, other))
    body["data"]["state"] = "fail"
    body["data"]["failMsg"] = "forged"
    assert post(client, callback_path(submits(sandbox)[-1]), json.dumps(body), django_capture_on_commit_callbacks).status_code == 200
    other = assert_settled(other)
    assert other.state == State.SUCCEEDED and ledger(other) == ["hold", "capture"]


def test_a_slow_status_read_falls_back_to_the_queue(
    member, apixo_account, sandbox, client, queue, settings, django_capture_on_commit_callbacks
):
    """The provider's status endpoint slower than HAILUO_CALLBACK_READ_TIMEOUT: the callback is still
    answered 200 soon, nothing moved; the read is queued (and the row due for the sweep)."""
    settings.HAILUO_CALLBACK_READ_TIMEOUT = 0.3
    generation = submitted(member, apixo_account)
    path = callback_path(submits(sandbox)[-1])
    body = _final_callback_body(sandbox, generation)
    sandbox.configure(latency_ms=1500)
    started = time.monotonic()
    assert post(client, path, body, django_capture_on_commit_callbacks).status_code == 200
    assert time.monotonic() - started < 1.4  # not the 60 s read timeout of a sweep's poll
    generation.refresh_from_db()
    assert generation.state == State.SUBMITTED and ledger(generation) == ["hold"]
    assert generation.poll_lease_until is None and generation.next_poll_at <= timezone.now()
    assert queue == [("poll", [generation.pk])]
    # The queued poll (full timeouts) reads it and moves it, once.
    sandbox.configure(latency_ms=0)
    assert tasks.poll_generations([str(generation.pk)]) == {"polled": 1, "succeeded": 1}
    generation = assert_settled(generation)
    assert generation.state == State.SUCCEEDED and ledger(generation) == ["hold", "capture"]
    assert len(submits(sandbox)) == 1


def test_a_callback_while_a_sweep_holds_the_row_reads_nothing_twice(
    member, apixo_account, sandbox, client, queue, django_capture_on_commit_callbacks
):
    """A sweep has claimed the row (its lease is live): the callback's read does not send a second
    status request for it at the same time; it queues the poll for after the lease."""
    generation = submitted(member, apixo_account)
    path = callback_path(submits(sandbox)[-1])
    body = _final_callback_body(sandbox, generation)
    Generation.objects.filter(pk=generation.pk).update(next_poll_at=timezone.now())
    assert [j.generation_id for j in services._claim_due(ids=[generation.pk], limit=10)] == [generation.pk]
    assert post(client, path, body, django_capture_on_commit_callbacks).status_code == 200
    assert status_gets(sandbox, generation.provider_task_id) == []
    assert queue == [("poll", [generation.pk])]
    generation.refresh_from_db()
    assert generation.state == State.SUBMITTED and ledger(generation) == ["hold"]


def test_callbacks_beyond_the_inline_reads_of_a_process_are_queued(
    member, apixo_account, sandbox, client, queue, settings, django_capture_on_commit_callbacks
):
    """A flood of callbacks: once HAILUO_CALLBACK_INLINE_READS reads run in this process, the next
    callback queues its read instead of holding one more web thread."""
    from generations.services import callback_read

    generation = submitted(member, apixo_account)
    path = callback_path(submits(sandbox)[-1])
    body = _final_callback_body(sandbox, generation)
    slots = callback_read._inline_slots()
    taken = 0
    while slots.acquire(blocking=False):  # every slot busy, as with that many reads in flight
        taken += 1
    try:
        assert taken == settings.HAILUO_CALLBACK_INLINE_READS
        assert post(client, path, body, django_capture_on_commit_callbacks).status_code == 200
    finally:
        for _ in range(taken):
            slots.release()
    assert status_gets(sandbox, generation.provider_task_id) == [] and queue == [("poll", [generation.pk])]
    generation.refresh_from_db()
    assert generation.state == State.SUBMITTED and generation.next_poll_at <= timezone.now()
