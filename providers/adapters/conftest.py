"""Shared fixtures and helpers of the adapter tests (``providers/adapters/<kind>/tests/``).

A test module's provider kind is the adapter folder it lives in
(``providers/adapters/poyo/tests/test_poyo_adapter.py`` → ``"poyo"``). Fixtures:

- ``sandbox``: that kind's sandbox (``providers.sandbox``) over real loopback HTTP, started once
  per module with the kind's key from :data:`TEST_KEYS` and the knobs of :data:`SANDBOX_START`,
  reset and set back to :data:`SANDBOX_KNOBS` before each test;
- ``image_url``: a real 640×360 PNG served on loopback (the sandboxes download first frames);
- ``receiver``: a loopback webhook receiver recording every POST.

Helpers the test modules import: :class:`AdapterKit` (one kind's request/adapter factories and
its submit/status/poll calls over the real HTTP clients), :func:`answer`, :func:`run`,
:func:`provider_error`, :func:`refusal` and :func:`closed_port`.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from providers.aio import AioProviderHttp, make_sweep_session
from providers.base import GenerationRequest, ProviderAdapter, RequestRefused, SubmitResult, TaskUpdate
from providers.http import ProviderError, ProviderHttp, Timeouts, make_submit_client
from providers.sandbox import SandboxHandle, start_sandbox

#: The API key each kind's test sandbox accepts (and its adapter sends).
TEST_KEYS = {kind: f"sk-test-{kind}-0042" for kind in ("apixo", "poyo", "qingbo", "piapi", "minimax")}

#: Knobs each kind's test sandbox starts with, besides ``api_keys`` and :data:`SANDBOX_KNOBS`.
SANDBOX_START: dict[str, dict[str, Any]] = {
    "apixo": dict(callback_retry_delays=[0.2, 0.4, 0.8]),
    "poyo": {},
    "qingbo": {},
    "piapi": {},
    "minimax": {},
}

#: Knobs each kind's test sandbox is set back to before every test (after ``reset()``).
SANDBOX_KNOBS: dict[str, dict[str, Any]] = {
    "apixo": dict(
        generation_seconds=1.0, rate_limit_every=0, error_5xx_every=0, latency_ms=0, fail_rate=0, result_ttl=3600,
        balance=None, hang_seconds=60,
    ),
    "poyo": dict(generation_seconds=1.0, rate_limit_every=0),
    "qingbo": dict(
        generation_seconds=1.0, queue_seconds=0.2, url_as_list=True, timestamps_in_seconds=False,
        rate_limit_every=0, error_5xx_every=0, fail_rate=0, latency_ms=0, hang_seconds=60,
    ),
    "piapi": dict(generation_seconds=1.0, rate_limit_every=0),
    "minimax": dict(generation_seconds=1.0, rate_limit_every=0),
}


@contextlib.contextmanager
def test_sandbox(kind: str) -> Iterator[SandboxHandle]:
    """``kind``'s sandbox started with :data:`TEST_KEYS`, :data:`SANDBOX_START` and
    :data:`SANDBOX_KNOBS`; stopped on exit."""
    handle = start_sandbox(kind, api_keys=[TEST_KEYS[kind]], **SANDBOX_START[kind], **SANDBOX_KNOBS[kind])
    try:
        yield handle
    finally:
        handle.stop()


test_sandbox.__test__ = False  # a helper, not a test


def fresh(handle: SandboxHandle, kind: str) -> SandboxHandle:
    """``handle`` with its tasks and request log forgotten and its knobs back to :data:`SANDBOX_KNOBS`."""
    handle.reset()
    handle.configure(**SANDBOX_KNOBS[kind])
    return handle


def _kind_of(request: pytest.FixtureRequest) -> str:
    kind = request.path.parent.parent.name
    if kind not in TEST_KEYS:
        raise pytest.UsageError(f"{request.path}: not under providers/adapters/<kind>/tests/")
    return kind


@pytest.fixture(scope="module")
def kind_sandbox(request) -> Iterator[SandboxHandle]:
    """The module's kind's sandbox, one per test module."""
    with test_sandbox(_kind_of(request)) as handle:
        yield handle


@pytest.fixture
def sandbox(request, kind_sandbox) -> SandboxHandle:
    """The module's kind's sandbox, reset and with the knobs of :data:`SANDBOX_KNOBS`."""
    return fresh(kind_sandbox, _kind_of(request))


def png_bytes(width: int = 640, height: int = 360, color=(200, 80, 40)) -> bytes:
    """A real PNG of ``width``×``height`` pixels in one colour."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


@contextlib.contextmanager
def loopback_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """``handler`` served on a free loopback port in a daemon thread; yields ``http://127.0.0.1:PORT``."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def image_url() -> Iterator[str]:
    """The URL of a real 640×360 PNG served on loopback (the sandboxes download first frames)."""
    png = png_bytes()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(png)))
            self.end_headers()
            self.wfile.write(png)

        def log_message(self, *args):
            pass

    with loopback_server(Handler) as origin:
        yield f"{origin}/first.png"


@pytest.fixture
def receiver(request) -> Iterator[tuple[str, list[tuple[dict, bytes]]]]:
    """A loopback webhook receiver: yields ``(url, received)``, ``url`` being
    ``http://127.0.0.1:PORT/hooks/<kind>/1/token`` and ``received`` the ``(headers, body)`` of
    every POST, in order (each answered 200 ``ok``)."""
    received: list[tuple[dict, bytes]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length") or 0)
            received.append((dict(self.headers.items()), self.rfile.read(length)))
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    with loopback_server(Handler) as origin:
        yield f"{origin}/hooks/{_kind_of(request)}/1/token", received


def answer(status: int, body, headers=None) -> httpx.Response:
    """An httpx JSON response, as a provider would send it."""
    return httpx.Response(status, json=body, headers=headers or {})


def run(coro: Awaitable):
    """Run one coroutine to its end (a fresh event loop, as a worker's task does)."""
    return asyncio.run(coro)


def provider_error(coro: Awaitable) -> ProviderError:
    """Run ``coro``, which must raise :class:`ProviderError` (the test fails if it does not);
    returns the error."""
    with pytest.raises(ProviderError) as err:
        run(coro)
    return err.value


def refusal(adapter: ProviderAdapter, request: GenerationRequest) -> RequestRefused:
    """``adapter.validate(request)``, which must refuse (the test fails if it does not);
    returns the :class:`RequestRefused` with its violations."""
    with pytest.raises(RequestRefused) as refused:
        adapter.validate(request)
    return refused.value


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class AdapterKit:
    """One provider kind's test helpers: requests with the module's defaults, adapters with the
    kind's test key, and submit/status/poll over the real HTTP clients (``make_submit_client``
    with a 3 s read timeout; the sweep's aiohttp client for status reads)."""

    def __init__(self, adapter_class: type[ProviderAdapter], **request_defaults: Any):
        self.adapter_class = adapter_class
        self.key = TEST_KEYS[adapter_class.kind]
        self.defaults = request_defaults

    def req(self, **overrides: Any) -> GenerationRequest:
        """A GenerationRequest: the module's defaults with ``overrides``."""
        return GenerationRequest(**{**self.defaults, **overrides})

    def adapter(self, base_url: str = "", api_key: str | None = None, **options: Any) -> ProviderAdapter:
        """The adapter with the kind's test key (or ``api_key``), ``base_url`` ("" = the real API)
        and account ``options``."""
        return self.adapter_class(api_key=self.key if api_key is None else api_key, base_url=base_url, options=options)

    def mocked(self, handler: Callable[[httpx.Request], httpx.Response]):
        """``go(call)``: a coroutine running ``call(http)`` with a ProviderHttp (named after the
        provider) over an httpx MockTransport answering with ``handler(request)``, giving the
        call's result. For the documented payloads, sent exactly as documented."""

        async def go(call):
            async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
                return await call(ProviderHttp(client, provider=self.adapter_class.label))

        return go

    async def submit(self, a: ProviderAdapter, request: GenerationRequest, callback_url: str = "",
                     callback_secret: str = "") -> SubmitResult:
        """``a.submit`` over a submit client with a 3 s read timeout."""
        async with make_submit_client() as client:
            return await a.submit(ProviderHttp(client, timeouts=Timeouts(read=3)), request,
                                  callback_url=callback_url, callback_secret=callback_secret)

    async def submit_hanging(self, a: ProviderAdapter, request: GenerationRequest) -> SubmitResult:
        """``a.submit`` with a 0.5 s read timeout (2 s to connect), for a provider that hangs."""
        async with make_submit_client() as client:
            return await a.submit(ProviderHttp(client, timeouts=Timeouts(connect=2, read=0.5)), request)

    async def status(self, a: ProviderAdapter, task_id: str, model: str | None = None) -> TaskUpdate:
        """``a.fetch_status`` as the poll sweep reads it: over ``providers.aio.AioProviderHttp`` (one
        aiohttp session); ``model`` defaults to the module's model."""
        session = make_sweep_session(4)
        try:
            return await a.fetch_status(AioProviderHttp(session), task_id=task_id, model=model or self.defaults["model"])
        finally:
            await session.close()

    def poll_until_final(self, a: ProviderAdapter, task_id: str, model: str | None = None,
                         seconds: float = 10.0) -> TaskUpdate:
        """Poll every 0.1 s until the task is final or ``seconds`` pass; returns the last update."""
        deadline = time.monotonic() + seconds
        update = run(self.status(a, task_id, model))
        while not update.state.is_final and time.monotonic() < deadline:
            time.sleep(0.1)
            update = run(self.status(a, task_id, model))
        return update
