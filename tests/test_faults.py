"""Fault injection against the provider sandboxes over real loopback HTTP (issue 5, "Proof").

Every test drives one or a few generations through the services (as django-q2 tasks would)
into a provider fault and asserts three things at the end:

- the final state: terminal (succeeded, failed, expired, canceled) or needs_reconciliation;
- the ledger: hold then capture, or hold then release, or the hold alone while in flight or
  needing reconciliation; never a capture and a release, never two of either;
- the submits the provider received: never two accepted submits for one generation.

Faults the sandboxes cannot produce (a dropped connection after the provider read the
request, half a response, garbage from the status endpoint) come from :class:`RawServer`,
a few lines of socket code that reads one request per connection and then misbehaves.
Tests that need several threads and a live server are marked ``postgres``.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
import urllib.error
import urllib.request
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from urllib.parse import parse_qs

import pytest
from django.db import connection
from django.utils import timezone

from billing.models import LedgerEntry
from generations import services, tasks
from generations.models import FINAL_STATES, ArchiveState, Generation, State
from generations.services import poll as poll_step
from generations.services import submit as submit_step
from providers.base import TaskState, TaskUpdate
from providers.models import ProviderAccount
from providers.sandbox import start_sandbox
from providers.sandbox.testing import AnswerTimes

from .conftest import make_params, record_queue

pytestmark = pytest.mark.django_db

PROMPT = "a paper boat drifting down a rainy street, macro shot"


# --- helpers -----------------------------------------------------------------------------------
@pytest.fixture(autouse=True)
def _documented_cadence(settings):
    """Polls at the documented cadence (30 s, then ~12.5 s): "not due yet" is really not due;
    tests bring a poll forward with :func:`make_due`, as time passing would."""
    settings.HAILUO_POLL_TIME_SCALE = 1.0


@pytest.fixture(autouse=True)
def _quick_tasks(request):
    """APIXO sandbox tasks take 0.3 s (the knob is set back for every test by ``sandbox``)."""
    if "sandbox" in request.fixturenames:
        request.getfixturevalue("sandbox").configure(generation_seconds=0.3)


_QUEUE: list = []


@pytest.fixture(autouse=True)
def queued(monkeypatch):
    """Record what would be enqueued on django-q2; :func:`sweep` performs it as a worker would."""
    _QUEUE[:] = [record_queue(monkeypatch)]
    return _QUEUE[0]


def sweep() -> dict:
    """One scheduled sweep pass, then what it enqueued (submit retries, downloads) done by a worker."""
    counts = tasks.sweep_once()
    _QUEUE[0].run()
    return counts


def ledger(generation) -> list[str]:
    return list(LedgerEntry.objects.filter(generation=generation).order_by("id").values_list("kind", flat=True))


def submits(handle, fragment: str = "generateTask") -> list[dict]:
    """The submit requests a sandbox received (POSTs to its submit path)."""
    return [r for r in handle.requests("api") if r["method"] == "POST" and fragment in r["path"]]


def status_gets(handle, task_id: str | None = None) -> list[dict]:
    gets = [r for r in handle.requests("api") if r["method"] == "GET" and "statusTask" in r["path"]]
    return [r for r in gets if task_id is None or r["query"].get("taskId") == task_id]


def assert_settled(generation, *, may_be_in_flight: bool = False) -> Generation:
    """The final state and the ledger agree: capture xor release, each at most once."""
    generation.refresh_from_db()
    kinds = ledger(generation)
    entries = {e.kind: e for e in LedgerEntry.objects.filter(generation=generation)}
    if not may_be_in_flight:
        assert generation.state in FINAL_STATES | {State.NEEDS_RECONCILIATION}, generation.state
    if generation.state == State.SUCCEEDED:
        assert kinds == ["hold", "capture"], kinds
        assert entries["capture"].amount == entries["hold"].amount == generation.charged_amount
    elif generation.state in FINAL_STATES:
        assert kinds == ["hold", "release"], kinds
        assert entries["release"].amount == entries["hold"].amount and generation.charged_amount is None
    else:
        assert kinds == ["hold"], kinds
        assert generation.charged_amount is None
    return generation


def create(member, account, prompt=PROMPT, **overrides):
    return services.generation_create(user=member, params=make_params(account, prompt=prompt, **overrides))


def submitted(member, account, prompt=PROMPT, **overrides) -> Generation:
    generation = create(member, account, prompt, **overrides)
    assert services.generation_submit(generation_id=generation.pk) == State.SUBMITTED
    generation.refresh_from_db()
    return generation


def make_due(generation, *, submit=False):
    """Bring the next poll (or submit retry) forward to now, as time passing would."""
    past = timezone.now() - timedelta(seconds=1)
    fields = {"next_submit_at": past} if submit else {"next_poll_at": past}
    Generation.objects.filter(pk=generation.pk).update(**fields)


def poll_until_final(generation, timeout=10.0) -> Generation:
    """Poll (only poll: no archive) until the generation is final."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        make_due(generation)
        services.generations_poll(ids=[generation.pk])
        generation.refresh_from_db()
        if generation.is_final:
            return generation
        time.sleep(0.1)
    raise AssertionError(f"stuck in {generation.state}")


def sweep_until_final(generation, timeout=10.0) -> Generation:
    """Run the scheduled sweep until the generation is final and its archive settled."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        make_due(generation)
        sweep()
        generation.refresh_from_db()
        if generation.is_final and generation.archive_state != ArchiveState.PENDING:
            return generation
        time.sleep(0.1)
    raise AssertionError(f"stuck in {generation.state}/{generation.archive_state}")


def point_account_at(account, base_url: str) -> None:
    ProviderAccount.objects.filter(pk=account.pk).update(base_url=base_url)


def wait_for(predicate, timeout=5.0, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def callback_path(post: dict, origin: str = "http://testserver") -> str:
    url = post["body"]["callback_url"]
    assert url.startswith(origin + "/hooks/"), url
    return url.removeprefix(origin)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- a misbehaving HTTP server --------------------------------------------------------------
def http_answer(status: int, body: bytes | str | dict, headers: dict | None = None) -> bytes:
    """A complete HTTP/1.1 response (Connection: close)."""
    if isinstance(body, dict):
        body = json.dumps(body)
    if isinstance(body, str):
        body = body.encode()
    head = [f"HTTP/1.1 {status} X", f"Content-Length: {len(body)}", "Connection: close"]
    head += [f"{k}: {v}" for k, v in (headers or {"Content-Type": "application/json"}).items()]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + body


class RawServer:
    """Reads one HTTP request per connection, records it, then does what ``behave`` returns.

    ``behave(method, path, query, body)`` returns the bytes to send (then the socket is
    closed), ``"close"`` (close without answering: the provider read the request and the
    connection dropped), or ``"rst"`` (reset the connection: TCP RST).
    """

    def __init__(self, behave):
        self.behave = behave
        self.requests: list[dict] = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.origin = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn):
        try:
            conn.settimeout(5)
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            while len(body) < int(headers.get("content-length") or 0):
                chunk = conn.recv(65536)
                if not chunk:
                    break
                body += chunk
            path, _, query = target.partition("?")
            query = {k: v[0] for k, v in parse_qs(query).items()}
            self.requests.append({"method": method, "path": path, "query": query, "body": body, "time": time.time()})
            action = self.behave(method, path, query, body)
            if action == "rst":
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            elif action != "close":
                conn.sendall(action)
        except OSError:
            pass
        finally:
            conn.close()

    def stop(self):
        self.sock.close()


@pytest.fixture
def raw_server():
    servers = []

    def start(behave):
        server = RawServer(behave)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


# --- provider 5xx ----------------------------------------------------------------------------
@pytest.mark.parametrize("status", [500, 502, 503])
def test_submit_5xx_is_retried_with_backoff_then_failed_and_released(status, member, apixo_account, sandbox, settings):
    settings.HAILUO_SUBMIT_MAX_ATTEMPTS = 3
    generation = create(member, apixo_account, f"{PROMPT} [http:{status}]")
    for attempt in (1, 2):
        before = timezone.now()
        assert services.generation_submit(generation_id=generation.pk) == State.QUEUED
        generation.refresh_from_db()
        assert generation.submit_attempts == attempt and ledger(generation) == ["hold"]
        backoff = (generation.next_submit_at - before).total_seconds()
        assert 2**attempt - 0.5 <= backoff <= 2**attempt + 1.5, backoff  # exponential backoff
        # Not due yet: neither the task nor the sweep sends it again.
        assert services.generation_submit(generation_id=generation.pk) == State.QUEUED
        sweep()
        assert len(submits(sandbox)) == attempt
        make_due(generation, submit=True)
    sweep()  # the sweep retries due submits: the third and last attempt
    generation = assert_settled(generation)
    assert generation.state == State.FAILED and generation.fail_code == str(status)
    assert "gave up after 3 attempts" in generation.fail_message
    for _ in range(3):
        make_due(generation, submit=True)
        sweep()
    assert len(submits(sandbox)) == 3 and sandbox.tasks() == []  # each 5xx created no task


def test_submit_503_then_the_retry_is_accepted_once(member, apixo_account, sandbox):
    sandbox.configure(error_5xx_every=1)
    generation = create(member, apixo_account)
    assert services.generation_submit(generation_id=generation.pk) == State.QUEUED
    sandbox.configure(error_5xx_every=0)
    make_due(generation, submit=True)
    sweep()
    generation.refresh_from_db()
    assert generation.state in (State.SUBMITTED, State.RUNNING)
    generation = assert_settled(sweep_until_final(generation))
    assert generation.state == State.SUCCEEDED
    assert len(submits(sandbox)) == 2 and len(sandbox.tasks()) == 1


def test_submit_connection_refused_is_retried_then_failed(member, apixo_account, sandbox, settings):
    settings.HAILUO_SUBMIT_MAX_ATTEMPTS = 2
    point_account_at(apixo_account, f"http://127.0.0.1:{closed_port()}/api/v1")
    generation = create(member, apixo_account)
    assert services.generation_submit(generation_id=generation.pk) == State.QUEUED
    make_due(generation, submit=True)
    assert services.generation_submit(generation_id=generation.pk) == State.FAILED
    generation = assert_settled(generation)
    assert generation.fail_code == "connect_error"


@pytest.mark.parametrize("status", [500, 502, 503])
def test_poll_5xx_is_polled_again_later_without_state_change(status, member, apixo_account, sandbox, raw_server):
    generation = submitted(member, apixo_account)
    if status == 503:
        sandbox.configure(error_5xx_every=1)  # the sandbox's own 503
        received = lambda: status_gets(sandbox)  # noqa: E731
    else:
        error = {"code": status, "message": "Server error", "data": {"error": "upstream"}}
        server = raw_server(lambda *_: http_answer(status, error))
        point_account_at(apixo_account, server.origin + "/api/v1")
        received = lambda: server.requests  # noqa: E731
    for round_ in (1, 2):
        make_due(generation)
        before = timezone.now()
        counts = services.generations_poll()
        assert counts == {"polled": 1, "errors": 1}
        generation.refresh_from_db()
        assert generation.state == State.SUBMITTED and generation.poll_lease_until is None
        assert generation.next_poll_at > before  # polled again later
        assert generation.poll_count == round_ and len(received()) == round_
        assert ledger(generation) == ["hold"]
    assert services.generations_poll() == {}  # not due: not polled
    sandbox.configure(error_5xx_every=0)
    point_account_at(apixo_account, sandbox.base_url)
    generation = assert_settled(poll_until_final(generation))
    assert generation.state == State.SUCCEEDED and len(submits(sandbox)) == 1


def test_poll_read_timeout_is_polled_again_later(member, apixo_account, sandbox, settings):
    generation = submitted(member, apixo_account)
    settings.HAILUO_PROVIDER_READ_TIMEOUT = 0.3
    sandbox.configure(latency_ms=900)
    make_due(generation)
    assert services.generations_poll() == {"polled": 1, "errors": 1}
    generation.refresh_from_db()
    assert generation.state == State.SUBMITTED and generation.poll_lease_until is None and ledger(generation) == ["hold"]
    sandbox.configure(latency_ms=0)
    generation = assert_settled(poll_until_final(generation))
    assert generation.state == State.SUCCEEDED and len(submits(sandbox)) == 1


# --- 429 with Retry-After ------------------------------------------------------------------------
def test_submit_429_waits_for_its_retry_after_then_is_accepted_once(member, apixo_account, sandbox):
    sandbox.configure(rate_limit_every=1)  # every request: 429 with Retry-After: 1
    generation = create(member, apixo_account)
    before = timezone.now()
    assert services.generation_submit(generation_id=generation.pk) == State.QUEUED
    generation.refresh_from_db()
    assert (generation.next_submit_at - before).total_seconds() >= 0.9  # Retry-After honoured
    sandbox.configure(rate_limit_every=0)
    assert services.generation_submit(generation_id=generation.pk) == State.QUEUED  # not before it
    sweep()
    assert len(submits(sandbox)) == 1
    time.sleep(max(0.0, (generation.next_submit_at - timezone.now()).total_seconds()) + 0.05)
    sweep()
    generation.refresh_from_db()
    assert generation.state == State.SUBMITTED
    generation = assert_settled(sweep_until_final(generation))
    assert generation.state == State.SUCCEEDED
    assert len(submits(sandbox)) == 2 and len(sandbox.tasks()) == 1


def test_submit_429_pauses_the_provider_account_for_its_retry_after(member, apixo_account, sandbox):
    """A 429 is about the account (the key), not one request: submits and polls of the
    whole account wait for its Retry-After, as they do after a 429 on a poll."""
    in_flight = submitted(member, apixo_account, f"{PROMPT} [seconds:30]")
    sandbox.configure(rate_limit_every=1)
    first = create(member, apixo_account, "first clip")
    before = timezone.now()
    assert services.generation_submit(generation_id=first.pk) == State.QUEUED
    apixo_account.refresh_from_db()
    assert apixo_account.paused_until is not None and (apixo_account.paused_until - before).total_seconds() >= 0.9
    sandbox.configure(rate_limit_every=0)
    sent = len(sandbox.requests("api"))
    second = create(member, apixo_account, "second clip")
    assert services.generation_submit(generation_id=second.pk) == State.QUEUED  # paused: not sent
    make_due(in_flight)
    assert services.generations_poll() == {}  # paused: not polled
    assert len(sandbox.requests("api")) == sent
    time.sleep(max(0.0, (apixo_account.paused_until - timezone.now()).total_seconds()) + 0.05)
    for generation in (first, second):
        make_due(generation, submit=True)
        assert services.generation_submit(generation_id=generation.pk) == State.SUBMITTED
        assert_settled(generation, may_be_in_flight=True)
    assert len(sandbox.tasks()) == 3


def test_poll_429_pauses_the_account_then_polls_resume(member, apixo_account, sandbox):
    generations = [submitted(member, apixo_account, f"clip {i}") for i in range(3)]
    for generation in generations:
        make_due(generation)
    sandbox.configure(rate_limit_every=1)
    before = timezone.now()
    assert services.generations_poll() == {"polled": 3, "errors": 3}
    apixo_account.refresh_from_db()
    assert (apixo_account.paused_until - before).total_seconds() >= 0.9
    sandbox.configure(rate_limit_every=0)
    for generation in generations:
        generation.refresh_from_db()
        assert generation.state == State.SUBMITTED and generation.poll_lease_until is None
        assert (generation.next_poll_at - before).total_seconds() >= 0.9  # not before Retry-After
        make_due(generation)
    gets = len(status_gets(sandbox))
    assert services.generations_poll() == {} and services.generations_poll(ids=[g.pk for g in generations]) == {}
    assert len(status_gets(sandbox)) == gets  # paused: nothing sent, not even a callback's wake-up
    time.sleep(max(0.0, (apixo_account.paused_until - timezone.now()).total_seconds()) + 0.05)
    for generation in generations:
        generation = assert_settled(poll_until_final(generation))
        assert generation.state == State.SUCCEEDED
    assert len(submits(sandbox)) == 3


# --- the request may have arrived: never resent ----------------------------------------------------
def _never_resent(generation, count_submits, rounds=3):
    for _ in range(rounds):
        Generation.objects.filter(pk=generation.pk).update(next_submit_at=None, next_poll_at=None)
        sweep()
        services.generation_submit(generation_id=generation.pk)
        services.generations_stuck_submitting(older_than=0)
    assert count_submits() == 1


def test_submit_read_timeout_needs_reconciliation_and_is_never_resent(member, apixo_account, sandbox, settings):
    settings.HAILUO_PROVIDER_READ_TIMEOUT = 0.5
    sandbox.configure(hang_seconds=1.5)
    generation = create(member, apixo_account, f"{PROMPT} [hang]")
    assert services.generation_submit(generation_id=generation.pk) == State.NEEDS_RECONCILIATION
    _never_resent(generation, lambda: len(submits(sandbox)))
    time.sleep(1.2)  # the provider created the task anyway and finishes it
    sweep()
    generation = assert_settled(generation)
    assert generation.state == State.NEEDS_RECONCILIATION and "no answer within 0.5 s" in generation.reconciliation_note
    assert len(sandbox.tasks()) == 1 and generation.poll_count == 0


HALF_ANSWERS = {
    "closed without an answer": "close",
    "reset": "rst",
    "half a status line": b"HTTP/1.1 20",
    "headers without the body": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 80\r\n\r\n",
    "half the body": b'HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 80\r\n\r\n{"code":200,"message":"succ',
}


@pytest.mark.parametrize("answer", list(HALF_ANSWERS), ids=list(HALF_ANSWERS))
def test_connection_lost_after_the_provider_read_the_submit(answer, member, apixo_account, sandbox, raw_server):
    server = raw_server(lambda *_: HALF_ANSWERS[answer])
    point_account_at(apixo_account, server.origin + "/api/v1")
    generation = create(member, apixo_account)
    assert services.generation_submit(generation_id=generation.pk) == State.NEEDS_RECONCILIATION
    _never_resent(generation, lambda: len(server.requests))
    generation = assert_settled(generation)
    assert generation.reconciliation_note and generation.events.filter(state=State.NEEDS_RECONCILIATION).count() == 1
    assert server.requests[0]["method"] == "POST" and server.requests[0]["path"] == "/api/v1/generateTask/hailuo-2-3"


ACCEPTED_BUT_UNREADABLE = {
    "not JSON": "<html>ok</html>",
    "truncated JSON": '{"code":200,"message":"success","data":{"taskId":"task_',
    "a JSON array": "[]",
    "no task id": {"code": 200, "message": "success", "data": {}},
    "empty body": "",
}


@pytest.mark.parametrize("body", list(ACCEPTED_BUT_UNREADABLE), ids=list(ACCEPTED_BUT_UNREADABLE))
def test_a_2xx_submit_answer_without_a_readable_task_id_is_never_resent(body, member, apixo_account, raw_server):
    """HTTP 200 means the provider took the request: it may have created the task even if
    we cannot read its id, so sending it again could create (and bill) a second one."""
    server = raw_server(lambda *_: http_answer(200, ACCEPTED_BUT_UNREADABLE[body]))
    point_account_at(apixo_account, server.origin + "/api/v1")
    generation = create(member, apixo_account)
    services.generation_submit(generation_id=generation.pk)
    _never_resent(generation, lambda: len(server.requests))
    generation = assert_settled(generation)
    assert generation.state == State.NEEDS_RECONCILIATION


# --- malformed and unknown status answers --------------------------------------------------------
MALFORMED = {
    "not JSON": (200, "<html><body>502 Bad Gateway</body></html>"),
    "truncated JSON": (200, '{"code":200,"message":"success","data":{"taskId":"t'),
    "a JSON array": (200, "[1, 2]"),
    "a JSON string": (200, '"success"'),
    "empty body": (200, ""),
    "data is not an object": (200, {"code": 200, "message": "success", "data": "success"}),
    "non-JSON 5xx": (502, "<html>Bad Gateway</html>"),
}


@pytest.mark.parametrize("answer", list(MALFORMED), ids=list(MALFORMED))
def test_malformed_status_answers_are_polled_again_never_charged(answer, member, apixo_account, sandbox, raw_server):
    generation = submitted(member, apixo_account)
    status, body = MALFORMED[answer]
    server = raw_server(lambda *_: http_answer(status, body))
    point_account_at(apixo_account, server.origin + "/api/v1")
    for round_ in (1, 2, 3):
        make_due(generation)
        before = timezone.now()
        counts = services.generations_poll()
        assert counts.get("polled") == 1 and not counts.get("succeeded"), counts
        generation.refresh_from_db()
        assert generation.state in (State.SUBMITTED, State.RUNNING) and generation.poll_lease_until is None
        assert generation.next_poll_at > before and len(server.requests) == round_
        assert ledger(generation) == ["hold"]
    point_account_at(apixo_account, sandbox.base_url)
    generation = assert_settled(poll_until_final(generation))
    assert generation.state == State.SUCCEEDED


UNKNOWN = {
    "an undocumented state": {"state": "archived"},
    "no state": {},
    "an empty state": {"state": ""},
    "success without resultJson": {"state": "success"},
    "success with unreadable resultJson": {"state": "success", "resultJson": "{not json"},
    "success with no URL": {"state": "success", "resultJson": '{"resultUrls": []}'},
    "success with resultJson of another shape": {"state": "success", "resultJson": "[1]"},
}


@pytest.mark.parametrize("data", list(UNKNOWN), ids=list(UNKNOWN))
def test_unknown_states_are_polled_again_never_success(data, member, apixo_account, sandbox, raw_server):
    generation = submitted(member, apixo_account)
    answer = {"code": 200, "message": "success", "data": {"taskId": generation.provider_task_id, **UNKNOWN[data]}}
    server = raw_server(lambda *_: http_answer(200, answer))
    point_account_at(apixo_account, server.origin + "/api/v1")
    for _ in range(2):
        make_due(generation)
        before = timezone.now()
        counts = services.generations_poll()
        assert counts.get("polled") == 1 and not counts.get("succeeded"), counts
        generation.refresh_from_db()
        assert generation.state == State.SUBMITTED and generation.next_poll_at > before
        assert ledger(generation) == ["hold"] and generation.archive_state == ArchiveState.NONE
    assert len(server.requests) == 2
    point_account_at(apixo_account, sandbox.base_url)
    generation = assert_settled(poll_until_final(generation))
    assert generation.state == State.SUCCEEDED


# --- callbacks ------------------------------------------------------------------------------------------
def _final_callback_body(sandbox, generation) -> str:
    task = wait_for(
        lambda: next((t for t in sandbox.tasks() if t["taskId"] == generation.provider_task_id and t["state"] == "success"), None),
        what="the sandbox task to finish",
    )
    return json.dumps({"code": 200, "message": "success", "data": task["status"]})


def test_duplicate_callbacks_in_sequence_capture_once(
    member, apixo_account, sandbox, client, settings, queued, django_capture_on_commit_callbacks
):
    """The queued path (the inline read: tests/test_callback_read.py)."""
    settings.HAILUO_PUBLIC_BASE_URL = "http://testserver"
    settings.HAILUO_CALLBACK_STATUS_READ = "queue"
    sandbox.configure(generation_seconds=0.3)
    generation = submitted(member, apixo_account)
    path = callback_path(submits(sandbox)[-1])
    body = _final_callback_body(sandbox, generation)
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            assert client.post(path, body, content_type="application/json").status_code == 200
    wakes = [ids for kind, ids in queued if kind == "poll"]
    assert wakes == [[generation.pk]] * 3
    with django_capture_on_commit_callbacks(execute=True):
        outcomes = [tasks.poll_generations([str(g) for g in ids]) for ids in wakes]
    assert outcomes[0] == {"polled": 1, "succeeded": 1} and outcomes[1:] == [{}, {}]
    # A duplicate after the success changes nothing and wakes nothing.
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(path, body, content_type="application/json").status_code == 200
    assert len([q for q in queued if q[0] == "poll"]) == 3
    generation = assert_settled(generation)
    assert generation.state == State.SUCCEEDED and len(status_gets(sandbox)) == 1
    assert [q for q in queued if q[0] == "archive"] == [("archive", generation.pk)]  # archived once
    assert len(submits(sandbox)) == 1


def assert_no_overlap(requests: list[dict]) -> None:
    spans = sorted((r["time"], r["end"]) for r in requests)
    for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
        assert start >= end, f"two polls of one task overlapped: {spans}"


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("read", ["inline", "queue"])
def test_duplicate_callbacks_concurrently_capture_once(read, member, apixo_account, sandbox, live_server, settings, monkeypatch):
    """Twelve copies of the final callback at once, to the live server; each wakes a poll at once
    (inline: in the callback's request; queue: the queued poll run at once).

    The sandbox's own delivery goes to a closed port, so that the generation is still in
    flight when the twelve arrive.
    """
    dead = f"http://127.0.0.1:{closed_port()}"
    settings.HAILUO_PUBLIC_BASE_URL = dead
    settings.HAILUO_CALLBACK_STATUS_READ = read
    monkeypatch.setattr(services, "enqueue_poll", lambda ids: tasks.poll_generations([str(i) for i in ids]))
    sandbox.configure(generation_seconds=0.3, callback_retry_delays=[30])
    generation = submitted(member, apixo_account)
    url = live_server.url + callback_path(submits(sandbox)[-1], dead)
    body = _final_callback_body(sandbox, generation).encode()
    sandbox.configure(latency_ms=150)  # slow status answers: overlapping polls would show
    barrier = threading.Barrier(12)

    def post(_):
        barrier.wait()
        request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=20) as response:
                return response.status
        finally:
            connection.close()

    results: list[int] = []
    with AnswerTimes(sandbox):
        threads = [threading.Thread(target=lambda i=i: results.append(post(i))) for i in range(12)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        wait_for(lambda: all(r.get("end") for r in status_gets(sandbox)) or None, what="the polls to end")
    assert results == [200] * 12
    generation = assert_settled(generation)
    assert generation.state == State.SUCCEEDED
    gets = status_gets(sandbox, generation.provider_task_id)
    assert 1 <= len(gets) == generation.poll_count
    assert_no_overlap(gets)
    assert len(submits(sandbox)) == 1


def test_callback_before_the_submit_answer_is_stored(
    member, apixo_account, sandbox, client, settings, queued, monkeypatch, django_capture_on_commit_callbacks
):
    """The provider's callback arrives while our row is still ``submitting`` (no task id yet)."""
    settings.HAILUO_PUBLIC_BASE_URL = "http://testserver"
    sandbox.configure(generation_seconds=0.3)
    answers = []
    real_run = asyncio.run

    class _Asyncio:
        def __getattr__(self, name):
            return getattr(asyncio, name)

        @staticmethod
        def run(coro):
            result = real_run(coro)
            if coro.__qualname__ == "_submit":  # accepted; the task id is not stored yet
                generation = Generation.objects.get(pk=generation_id)
                assert generation.state == State.SUBMITTING and generation.provider_task_id == ""
                path = callback_path(submits(sandbox)[-1])
                body = json.dumps({"code": 200, "message": "success", "data": {"taskId": result.task_id, "state": "success"}})
                with django_capture_on_commit_callbacks(execute=True):
                    answers.append(client.post(path, body, content_type="application/json").status_code)
            return result

    generation_id = create(member, apixo_account).pk
    monkeypatch.setattr(submit_step, "asyncio", _Asyncio())
    assert services.generation_submit(generation_id=generation_id) == State.SUBMITTED
    monkeypatch.setattr(submit_step, "asyncio", asyncio)
    assert answers == [200]
    generation = Generation.objects.get(pk=generation_id)
    assert generation.provider_task_id == sandbox.tasks()[0]["taskId"]
    generation = assert_settled(sweep_until_final(generation))
    assert generation.state == State.SUCCEEDED and generation.archive_state == ArchiveState.DONE
    assert len(submits(sandbox)) == 1


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_callback_before_the_submit_answer_over_real_http(member, apixo_account, sandbox, live_server, settings, monkeypatch):
    """The sandbox finishes the task and calls back while the submit's answer is still held back."""
    settings.HAILUO_PUBLIC_BASE_URL = live_server.url
    woken = []
    monkeypatch.setattr(services, "enqueue_poll", lambda ids: woken.extend(ids))
    sandbox.configure(generation_seconds=0.2, hang_seconds=1.5, callback_retry_delays=[30])
    generation = create(member, apixo_account, f"{PROMPT} [hang]")
    assert services.generation_submit(generation_id=generation.pk) == State.SUBMITTED
    # The callback's answer may still be on its way (it reads the status inline, and waits for
    # the row the submit holds); it was sent while we were still submitting (the time check).
    wait_for(lambda: [c["status"] for c in sandbox.requests("callback")] == [200], what="the callback's answer")
    callbacks = sandbox.requests("callback")
    assert callbacks[0]["time"] < submits(sandbox)[0]["time"] + 1.5
    assert generation.events.filter(message__startswith="Callback received").exists()
    generation = assert_settled(sweep_until_final(generation))
    assert generation.state == State.SUCCEEDED and len(submits(sandbox)) == 1


def test_states_out_of_order_are_ignored(member, apixo_account, sandbox, client, settings, queued, django_capture_on_commit_callbacks):
    settings.HAILUO_PUBLIC_BASE_URL = "http://testserver"
    sandbox.configure(generation_seconds=0.3)
    generation = submitted(member, apixo_account)
    generation = poll_until_final(generation)
    assert generation.state == State.SUCCEEDED
    events = generation.events.count()
    late = [
        TaskUpdate(task_id=generation.provider_task_id, state=TaskState.RUNNING, provider_state="processing", progress=40),
        TaskUpdate(task_id=generation.provider_task_id, state=TaskState.QUEUED, provider_state="pending", progress=0),
        TaskUpdate(task_id=generation.provider_task_id, state=TaskState.FAILED, provider_state="failed", fail_code="Timeout"),
        TaskUpdate(task_id=generation.provider_task_id, state=TaskState.UNKNOWN, provider_state="archived"),
    ]
    for update in late:
        services.generation_apply_update(generation_id=generation.pk, update=update)
    # A late "processing" callback too: answered, ignored.
    body = json.dumps({"code": 200, "message": "success", "data": {"taskId": generation.provider_task_id, "state": "processing"}})
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(callback_path(submits(sandbox)[-1]), body, content_type="application/json").status_code == 200
    assert not [q for q in queued if q[0] == "poll"]
    generation = assert_settled(generation)
    assert generation.state == State.SUCCEEDED and generation.fail_code == ""
    assert (generation.provider_state, generation.progress) == ("success", 100)  # a late update changes nothing
    assert generation.events.exclude(message__startswith="Callback received").count() == events
    assert services.generations_poll(ids=[generation.pk]) == {}  # a final generation is never polled


def test_a_success_after_a_failure_is_ignored(member, apixo_account, sandbox):
    generation = submitted(member, apixo_account, f"{PROMPT} [fail]")
    generation = poll_until_final(generation)
    assert generation.state == State.FAILED
    success = TaskUpdate(task_id=generation.provider_task_id, state=TaskState.SUCCEEDED, provider_state="success",
                         result_urls=(f"{sandbox.origin}/files/x.mp4",))
    assert services.generation_apply_update(generation_id=generation.pk, update=success) == "ignored"
    generation = assert_settled(generation)
    assert generation.state == State.FAILED and generation.result_urls == []


# --- provider callback protocols -----------------------------------------------------------------------
@pytest.fixture
def other_provider(db):
    handles = []

    def start(kind, **knobs):
        key = f"sk-test-{kind}-5150"
        handle = start_sandbox(kind, generation_seconds=0.3, api_keys=[key], callback_retry_delays=[30], **knobs)
        handles.append(handle)
        path = "/api/v1" if kind == "apixo" else ""
        account = ProviderAccount(kind=kind, label=f"{kind} faults", base_url=handle.origin + path)
        account.set_api_key(key)
        account.save()
        return handle, account

    yield start
    for handle in handles:
        handle.stop()


def test_piapi_webhook_secret_is_checked(member, other_provider, client, settings, queued, django_capture_on_commit_callbacks):
    settings.HAILUO_PUBLIC_BASE_URL = "http://testserver"
    settings.HAILUO_CALLBACK_STATUS_READ = "queue"  # authentication is the point: an accepted one queues its read
    handle, account = other_provider("piapi")
    generation = submitted(member, account, model="v2.3", mode="text-to-video", resolution="768p")
    post = submits(handle, "/api/v1/task")[-1]
    hook = post["body"]["config"]["webhook_config"]
    assert hook["secret"] and hook["endpoint"].startswith("http://testserver/hooks/piapi/")
    path = hook["endpoint"].removeprefix("http://testserver")
    body = json.dumps({"timestamp": int(time.time()), "data": {"task_id": generation.provider_task_id, "status": "completed"}})
    for headers in ({}, {"HTTP_X_WEBHOOK_SECRET": "guess"}, {"HTTP_X_WEBHOOK_SECRET": hook["secret"][:-1]}):
        assert client.post(path, body, content_type="application/json", **headers).status_code == 403
    assert not [q for q in queued if q[0] == "poll"]
    with django_capture_on_commit_callbacks(execute=True):
        ok = client.post(path, body, content_type="application/json", HTTP_X_WEBHOOK_SECRET=hook["secret"])
    assert ok.status_code == 200 and ("poll", [generation.pk]) in queued
    generation = assert_settled(poll_until_final(generation))
    assert generation.state == State.SUCCEEDED and len(submits(handle, "/api/v1/task")) == 1


def test_minimax_challenge_is_answered_at_once_and_changes_nothing(member, other_provider, client, settings, queued):
    settings.HAILUO_PUBLIC_BASE_URL = "http://testserver"
    handle, account = other_provider("minimax")
    generation = submitted(member, account, model="MiniMax-Hailuo-2.3", mode="text-to-video", resolution="768p")
    path = callback_path(submits(handle, "video_generation")[-1])
    started = time.monotonic()
    answer = client.post(path, json.dumps({"challenge": "c-7f3a"}), content_type="application/json")
    assert answer.status_code == 200 and answer.json() == {"challenge": "c-7f3a"}
    assert time.monotonic() - started < 3  # MiniMax waits 3 s
    wrong_token = path.replace(path.split("/")[-2], "wrong")
    assert client.post(wrong_token, json.dumps({"challenge": "x"}), content_type="application/json").status_code == 403
    generation.refresh_from_db()
    assert generation.state == State.SUBMITTED and not [q for q in queued if q[0] == "poll"]
    generation = assert_settled(poll_until_final(generation))
    assert generation.state == State.SUCCEEDED and len(submits(handle, "video_generation")) == 1


@pytest.mark.parametrize(
    ("offset", "unit", "expected"),
    [(0, 1, 200), (-290, 1, 200), (-310, 1, 403), (310, 1, 403), (-310, 1000, 403), (0, 1000, 200), (None, 1, 200)],
    ids=["now", "290 s old", "310 s old", "310 s ahead", "310 s old in ms", "now in ms", "no timestamp"],
)
def test_poyo_webhook_timestamp_window(offset, unit, expected, member, other_provider, client, settings, queued,
                                       django_capture_on_commit_callbacks):
    settings.HAILUO_PUBLIC_BASE_URL = "http://testserver"
    settings.HAILUO_CALLBACK_STATUS_READ = "queue"  # authentication is the point: an accepted one queues its read
    handle, account = other_provider("poyo")
    generation = submitted(member, account, model="hailuo-2.3", mode="text-to-video", resolution="768p")
    path = callback_path(submits(handle, "/api/generate/submit")[-1])
    body = json.dumps({"code": 200, "data": {"task_id": generation.provider_task_id, "status": "finished"}})
    headers = {} if offset is None else {"HTTP_X_WEBHOOK_TIMESTAMP": str(int((time.time() + offset) * unit))}
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(path, body, content_type="application/json", **headers)
    assert response.status_code == expected
    assert (("poll", [generation.pk]) in queued) == (expected == 200)
    generation = assert_settled(poll_until_final(generation))
    assert generation.state == State.SUCCEEDED and len(submits(handle, "/api/generate/submit")) == 1


CALLBACK_CASES = {
    "piapi": dict(model="v2.3", mode="text-to-video", resolution="768p", knobs={"duplicate_webhooks": 2}, submit="/api/v1/task"),
    "poyo": dict(model="hailuo-2.3", mode="text-to-video", resolution="768p", knobs={"duplicate_callbacks": 2},
                 submit="/api/generate/submit"),
    "minimax": dict(model="MiniMax-Hailuo-2.3", mode="text-to-video", resolution="768p", knobs={}, submit="/v1/video_generation"),
}


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
@pytest.mark.parametrize("kind", list(CALLBACK_CASES))
def test_sandbox_callbacks_and_their_duplicates_over_real_http(kind, member, other_provider, live_server, settings, monkeypatch):
    """The sandboxes call our live server (PiAPI with its secret and duplicate deliveries, PoYo
    with timestamps and duplicates, MiniMax with its challenge first); each delivery wakes a poll
    at once; the generation is captured once."""
    settings.HAILUO_PUBLIC_BASE_URL = live_server.url
    monkeypatch.setattr(services, "enqueue_poll", lambda ids: tasks.poll_generations([str(i) for i in ids]))
    case = CALLBACK_CASES[kind]
    handle, account = other_provider(kind, **case["knobs"])
    handle.configure(generation_seconds=0.5, callback_retry_delays=[0.2, 0.4])
    generation = submitted(member, account, model=case["model"], mode=case["mode"], resolution=case["resolution"])
    wait_for(lambda: Generation.objects.get(pk=generation.pk).is_final, timeout=10, what="a callback to end it")
    time.sleep(0.5)  # the duplicates
    generation = assert_settled(generation)
    assert generation.state == State.SUCCEEDED and generation.poll_count >= 1
    deliveries = handle.requests("callback")
    assert len(deliveries) >= (3 if case["knobs"] else 2), deliveries
    assert all(d["ok"] for d in deliveries), [(d.get("status"), d.get("error")) for d in deliveries]
    if kind == "minimax":
        challenge = handle.tasks()[0]["challenge"]
        assert handle.tasks()[0]["callback_state"] == "verified" and challenge["ok"], challenge
    assert len(submits(handle, case["submit"])) == 1


# --- expired result URLs ------------------------------------------------------------------------------
def test_expired_result_url_archive_retries_then_fails_still_charged_once(member, apixo_account, sandbox):
    sandbox.configure(generation_seconds=0.3, result_ttl=0)
    generation = poll_until_final(submitted(member, apixo_account))
    assert generation.state == State.SUCCEEDED and generation.archive_state == ArchiveState.PENDING
    expires = sandbox.tasks()[0]["result_expires"]
    time.sleep(max(0.0, expires - time.time()) + 0.1)
    outcomes = []
    for _ in range(services.ARCHIVE_MAX_ATTEMPTS):
        outcomes.append(services.generation_archive(generation_id=generation.pk))
        generation.refresh_from_db()
        if generation.archive_state == ArchiveState.PENDING:
            assert generation.next_archive_at > timezone.now()  # retried later, with a backoff
            assert services.generation_archive(generation_id=generation.pk) == ArchiveState.PENDING  # not before
            Generation.objects.filter(pk=generation.pk).update(next_archive_at=timezone.now())
    assert outcomes == [ArchiveState.PENDING] * (services.ARCHIVE_MAX_ATTEMPTS - 1) + [ArchiveState.FAILED]
    generation = assert_settled(generation)
    assert generation.state == State.SUCCEEDED and generation.archive_state == ArchiveState.FAILED
    assert "403" in generation.archive_error and not generation.video
    sweep()  # an archive that failed for good is not retried
    files = sandbox.requests("file")
    assert len(files) == services.ARCHIVE_MAX_ATTEMPTS and {f["status"] for f in files} == {403}
    assert len(submits(sandbox)) == 1


# --- slow work never stalls the sweep -----------------------------------------------------------------------
SAMPLE_MP4 = (Path(__file__).resolve().parent.parent / "providers" / "sandbox" / "assets" / "sample.mp4").read_bytes()


@pytest.mark.parametrize("slow", ["archive download", "submit retry"])
def test_one_slow_generation_never_stalls_the_sweep(slow, member, apixo_account, sandbox, raw_server, settings):
    """A sweep pass claims due polls every HAILUO_POLL_SWEEP_INTERVAL: a slow download (up to
    HAILUO_DOWNLOAD_TIMEOUT, 300 s) or a slow submit (up to the 60 s read timeout) of one
    generation must not hold up the polls of all the others."""
    polled = submitted(member, apixo_account, "polled clip")
    if slow == "archive download":
        server = raw_server(lambda *_: time.sleep(2) or http_answer(200, SAMPLE_MP4, {"Content-Type": "video/mp4"}))
        other = submitted(member, apixo_account, "archived clip")
        update = TaskUpdate(task_id=other.provider_task_id, state=TaskState.SUCCEEDED, provider_state="success",
                            result_urls=(f"{server.origin}/files/v.mp4",))
        assert services.generation_apply_update(generation_id=other.pk, update=update) == "succeeded"
    else:
        sandbox.configure(hang_seconds=2)
        other = create(member, apixo_account, "retried clip [hang]")
        Generation.objects.filter(pk=other.pk).update(next_submit_at=timezone.now(), submit_attempts=1)
    make_due(polled)
    started = time.time()
    tasks.sweep_once()
    took = time.time() - started
    gets = status_gets(sandbox, polled.provider_task_id)
    assert gets and gets[0]["time"] - started < 1.0, f"the poll waited {gets[0]['time'] - started:.1f} s"
    assert took < 1.5, f"one sweep pass took {took:.1f} s"
    # The slow work is not lost: it was queued or done.
    other.refresh_from_db()
    assert other.state in (State.SUCCEEDED, State.QUEUED, State.SUBMITTED)
    assert_settled(other, may_be_in_flight=True)


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_a_batch_that_outlives_its_lease_is_not_polled_twice_at_once(member, apixo_account, sandbox, settings, monkeypatch):
    """A sweep claims a whole batch with one lease, then sends the status requests at most
    HAILUO_POLL_CONCURRENCY_PER_ACCOUNT at a time. With a slow provider the last ones are
    still waiting for their turn when the lease runs out (here: 6 requests one at a time,
    and the clock moves past the lease after the second), and another sweep must not poll
    them meanwhile.
    In production: 500 claimed, 32 at a time, 16 rounds; at 8 s an answer that is 128 s,
    past the 120 s lease."""
    settings.HAILUO_POLL_CONCURRENCY_PER_ACCOUNT = 1
    generations = [submitted(member, apixo_account, f"clip {i} [seconds:60]") for i in range(6)]
    for generation in generations:
        make_due(generation)
    sandbox.configure(latency_ms=300)
    clock = {"offset": timedelta(0)}

    class _Clock:
        def __getattr__(self, name):
            return getattr(timezone, name)

        @staticmethod
        def now():
            return timezone.now() + clock["offset"]

    monkeypatch.setattr(poll_step, "timezone", _Clock())
    lease = timedelta(seconds=max(settings.HAILUO_PROVIDER_READ_TIMEOUT * 2, 30))

    first_answers = []

    def first_sweep():
        try:
            first_answers.append(services.generations_poll())
        finally:
            connection.close()

    with AnswerTimes(sandbox):
        thread = threading.Thread(target=first_sweep)
        thread.start()
        wait_for(lambda: len(status_gets(sandbox)) >= 2, what="the first sweep's requests")
        clock["offset"] = lease + timedelta(seconds=1)  # time passes beyond the lease
        settings.HAILUO_POLL_CONCURRENCY_PER_ACCOUNT = 6  # the second sweep sends its requests at once
        second = services.generations_poll()
        thread.join(30)
        wait_for(lambda: all(r.get("end") for r in status_gets(sandbox)) or None, what="the polls to end")
    for generation in generations:
        assert_no_overlap(status_gets(sandbox, generation.provider_task_id))
        assert_settled(generation, may_be_in_flight=True)
    assert first_answers and second  # both sweeps ran


# --- a worker killed mid-submit and mid-poll --------------------------------------------------------------
class WorkerKilled(BaseException):
    """The process died here (SIGKILL): nothing after this line ran, no except clause saw it."""


def test_worker_killed_mid_submit_before_sending(member, apixo_account, sandbox):
    generation = create(member, apixo_account)
    Generation.objects.filter(pk=generation.pk).update(state=State.SUBMITTING, submit_attempts=1)
    sweep()
    generation.refresh_from_db()
    assert generation.state == State.SUBMITTING  # a live worker may still be sending it: left alone
    Generation.objects.filter(pk=generation.pk).update(updated_at=timezone.now() - timedelta(minutes=11))
    counts = sweep()
    assert counts["stuck"] == 1
    generation = assert_settled(generation)
    assert generation.state == State.NEEDS_RECONCILIATION and generation.reconciliation_note
    for _ in range(2):
        sweep()
        assert services.generation_submit(generation_id=generation.pk) == State.NEEDS_RECONCILIATION
    assert submits(sandbox) == []


def test_worker_killed_mid_submit_after_the_provider_accepted(member, apixo_account, sandbox, monkeypatch):
    real_run = asyncio.run

    class _Asyncio:
        def __getattr__(self, name):
            return getattr(asyncio, name)

        @staticmethod
        def run(coro):
            real_run(coro)
            raise WorkerKilled

    generation = create(member, apixo_account)
    monkeypatch.setattr(submit_step, "asyncio", _Asyncio())
    with pytest.raises(WorkerKilled):
        services.generation_submit(generation_id=generation.pk)
    monkeypatch.setattr(submit_step, "asyncio", asyncio)
    generation.refresh_from_db()
    assert generation.state == State.SUBMITTING and len(sandbox.tasks()) == 1
    Generation.objects.filter(pk=generation.pk).update(updated_at=timezone.now() - timedelta(minutes=11))
    _never_resent(generation, lambda: len(submits(sandbox)))
    generation = assert_settled(generation)
    assert generation.state == State.NEEDS_RECONCILIATION and generation.poll_count == 0


def test_worker_killed_mid_poll_the_lease_expires_and_it_is_polled_again(member, apixo_account, sandbox, settings):
    generation = submitted(member, apixo_account)
    make_due(generation)
    jobs = services._claim_due(ids=None, limit=10)  # a worker claims it ... and dies before answering
    assert [j.generation_id for j in jobs] == [generation.pk]
    generation.refresh_from_db()
    lease = (generation.poll_lease_until - timezone.now()).total_seconds()
    assert lease >= 2 * settings.HAILUO_PROVIDER_READ_TIMEOUT - 1  # longer than a live poll can take
    assert services.generations_poll() == {} and services.generations_poll(ids=[generation.pk]) == {}
    assert status_gets(sandbox) == []  # leased: nobody else polls it
    Generation.objects.filter(pk=generation.pk).update(poll_lease_until=timezone.now() - timedelta(seconds=1))
    assert services.generations_poll()["polled"] == 1
    generation = assert_settled(poll_until_final(generation))
    assert generation.state == State.SUCCEEDED and len(submits(sandbox)) == 1


def test_worker_killed_mid_poll_after_the_answer(member, apixo_account, sandbox, monkeypatch):
    """The status answer arrived but the worker died before applying it: the lease expires,
    the next poll applies the (final) answer, and the capture happens exactly once."""
    sandbox.configure(generation_seconds=0.3)
    generation = submitted(member, apixo_account)
    wait_for(lambda: sandbox.tasks()[0]["state"] == "success", what="the task to finish")

    def killed(**_):
        raise WorkerKilled

    apply_update = services.generation_apply_update
    monkeypatch.setattr(services, "generation_apply_update", killed)
    make_due(generation)
    with pytest.raises(WorkerKilled):
        services.generations_poll()
    monkeypatch.setattr(services, "generation_apply_update", apply_update)
    generation.refresh_from_db()
    assert generation.state == State.SUBMITTED and generation.poll_lease_until > timezone.now()
    Generation.objects.filter(pk=generation.pk).update(poll_lease_until=timezone.now() - timedelta(seconds=1))
    generation = assert_settled(poll_until_final(generation))
    assert generation.state == State.SUCCEEDED and len(status_gets(sandbox)) == 2
    assert Decimal(generation.charged_amount) == Decimal("0.336")
