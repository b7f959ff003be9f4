"""The poll sweep's sliding window (generations/services/window.py) and its aiohttp layer
(providers/aio.py), against the APIXO sandbox and loopback servers over real HTTP.

- at most ``cap`` status reads are ever in flight per account, the window is full while
  there is work, and every due task is read exactly once per pass;
- a 429 pauses the account: claimed reads not yet sent are not sent, their leases are
  cleared and their polls uncounted;
- a claimed read whose lease no longer covers a request is not sent;
- the aiohttp layer keeps ProviderHttp's contract: errors classified the same way
  (refused → ``connect_error``/not sent, no answer in time → ``timeout``/maybe sent),
  redirects never followed, query parameters encoded as httpx encodes them.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from generations import services, tasks
from generations.models import Generation, State
from generations.services import window
from providers.aio import AioProviderHttp, make_sweep_session
from providers.http import ProviderError, Sent, Timeouts
from providers.sandbox.testing import AnswerTimes

from .conftest import make_params, record_queue

pytestmark = [pytest.mark.postgres, pytest.mark.django_db]


@pytest.fixture(autouse=True)
def _setup(settings, sandbox, monkeypatch):
    settings.HAILUO_POLL_TIME_SCALE = 1.0  # a polled task is not due again within the test
    sandbox.configure(generation_seconds=3600)  # every read answers "pending"
    record_queue(monkeypatch)


def _submitted(member, account, n: int) -> list[Generation]:
    out = []
    for i in range(n):
        generation = services.generation_create(user=member, params=make_params(account, prompt=f"window clip {i}"))
        assert services.generation_submit(generation_id=generation.pk) == State.SUBMITTED
        generation.refresh_from_db()
        out.append(generation)
    Generation.objects.filter(pk__in=[g.pk for g in out]).update(next_poll_at=timezone.now() - timedelta(seconds=1))
    return out


def _status_gets(sandbox) -> list[dict]:
    return [r for r in sandbox.requests("api") if r["method"] == "GET" and "statusTask" in r["path"]]


def _most_in_flight(requests: list[dict]) -> int:
    events = sorted([(r["time"], 1) for r in requests] + [(r["end"], -1) for r in requests], key=lambda e: (e[0], e[1]))
    most = now = 0
    for _, step in events:
        now += step
        most = max(most, now)
    return most


def test_at_most_cap_in_flight_and_every_due_task_read_exactly_once(member, apixo_account, sandbox, settings):
    settings.HAILUO_POLL_CONCURRENCY_PER_ACCOUNT = 8
    generations = _submitted(member, apixo_account, 40)
    sandbox.server.log.clear()  # the submits are not what is counted
    sandbox.configure(latency_ms=150)
    with AnswerTimes(sandbox):
        counts = services.generations_poll()
    gets = _status_gets(sandbox)
    assert counts == {"polled": 40, "in_progress": 40}
    assert sorted(r["query"]["taskId"] for r in gets) == sorted(g.provider_task_id for g in generations)  # each once
    assert _most_in_flight(gets) == 8  # never more than cap, and the window was full
    # Sliding, not lockstep: 40 reads of 150 ms, 8 at a time, take ~5 rounds of latency.
    span = max(r["end"] for r in gets) - min(r["time"] for r in gets)
    assert span < 40 / 8 * 0.15 + 1.0
    for generation in generations:
        generation.refresh_from_db()
        assert generation.poll_count == 1 and generation.poll_lease_until is None
        assert generation.provider_state == "pending" and generation.next_poll_at > timezone.now()
    assert services.generations_poll() == {}  # read once per pass: nothing is due any more


def test_a_429_pauses_the_account_and_unsent_claims_are_released(member, apixo_account, sandbox, settings):
    settings.HAILUO_POLL_CONCURRENCY_PER_ACCOUNT = 2
    generations = _submitted(member, apixo_account, 6)
    sandbox.server.log.clear()  # the submits are not what is counted
    sandbox.configure(rate_limit_every=1, latency_ms=100)
    before = timezone.now()
    counts = services.generations_poll()
    assert counts == {"polled": 2, "errors": 2}  # the two in flight; nothing sent after the 429
    assert len(_status_gets(sandbox)) == 2
    apixo_account.refresh_from_db()
    assert apixo_account.paused_until > before
    read = {r["query"]["taskId"] for r in _status_gets(sandbox)}
    for generation in generations:
        generation.refresh_from_db()
        assert generation.poll_lease_until is None  # sent or not, nobody holds it
        assert generation.poll_count == (1 if generation.provider_task_id in read else 0)
        assert generation.state == State.SUBMITTED


def test_a_claim_whose_lease_cannot_cover_a_request_is_not_sent(member, apixo_account, sandbox, settings, monkeypatch):
    settings.HAILUO_POLL_CONCURRENCY_PER_ACCOUNT = 4
    generations = _submitted(member, apixo_account, 3)
    sandbox.server.log.clear()  # the submits are not what is counted
    monkeypatch.setattr(window.poll, "poll_lease_seconds", lambda: 1.0)  # shorter than connect + read
    assert services.generations_poll() == {}
    assert _status_gets(sandbox) == []
    for generation in generations:
        generation.refresh_from_db()
        assert generation.poll_count == 0 and generation.poll_lease_until is None


def test_the_sweep_run_keeps_one_io_thread_and_client_for_its_passes(member, apixo_account, sandbox, settings, monkeypatch):
    made = []
    real = window.SweepIO

    class Counting(real):
        def __init__(self, **kwargs):
            made.append(self)
            super().__init__(**kwargs)

    monkeypatch.setattr(window, "SweepIO", Counting)
    settings.HAILUO_POLL_SWEEP_INTERVAL = 0.2
    generations = _submitted(member, apixo_account, 3)
    tasks.poll_sweep(run_seconds=0.3)
    more = _submitted(member, apixo_account, 2)
    tasks.poll_sweep(run_seconds=0.3)
    assert len(made) == 2  # one per run, however many passes
    for generation in generations + more:
        generation.refresh_from_db()
        assert generation.poll_count == 1


# --- providers/aio.py ------------------------------------------------------------------------
def _call(coro_factory):
    async def go():
        session = make_sweep_session(4)
        try:
            return await coro_factory(AioProviderHttp(session, timeouts=Timeouts(connect=1.0, read=0.5), provider="Test"))
        finally:
            await session.close()

    return asyncio.run(go())


def test_aio_refused_connection_is_not_sent():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ProviderError) as caught:
        _call(lambda http: http.request("GET", f"http://127.0.0.1:{port}/x"))
    assert caught.value.code == "connect_error" and caught.value.sent == Sent.NO


def test_aio_no_answer_in_time_may_have_been_sent():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    accepted = []
    threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True).start()
    try:
        with pytest.raises(ProviderError) as caught:
            _call(lambda http: http.request("GET", f"http://127.0.0.1:{listener.getsockname()[1]}/slow"))
        assert caught.value.code == "timeout" and caught.value.sent == Sent.MAYBE
    finally:
        for conn, _ in accepted:
            conn.close()
        listener.close()


def test_aio_never_follows_a_redirect_and_encodes_params_as_httpx(servers):
    server = servers({"/moved": (302, {"Location": "/secret"}, b""), "/secret": (200, {}, b"{}")})
    response = _call(lambda http: http.request("GET", f"http://127.0.0.1:{server.port}/moved"))
    assert response.status_code == 302 and response.headers.get("location") == "/secret"
    assert [path for path, _ in server.seen] == ["/moved"]
    server.routes["/q?taskId=a+b%2Fc&n=1"] = (200, {"Content-Type": "application/json"}, b'{"ok": 1}')
    answer = _call(lambda http: http.request("GET", f"http://127.0.0.1:{server.port}/q", params={"taskId": "a b/c", "n": 1}))
    assert answer.status_code == 200 and answer.json() == {"ok": 1} and answer.text == '{"ok": 1}'
