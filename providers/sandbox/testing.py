"""Helpers shared by the sandbox tests (``providers/adapters/<kind>/tests/test_<kind>_sandbox.py``).

A plain module, imported explicitly by each test file (no conftest), standard
library only: raw HTTP calls to a sandbox, polling, a loopback webhook receiver
(each provider's test keeps what it checks: JSON, headers, the exact bytes) and answer times.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = [
    "AnswerTimes", "WebhookReceiver", "content_type_and_json", "headers_and_json", "headers_and_raw", "http_call", "wait_for",
]


def http_call(method: str, url: str, body: Any = None, *, auth: Mapping[str, str] | None = None,
              headers: Mapping[str, str] | None = None, raw: bytes | None = None,
              timeout: float = 5.0) -> tuple[int, Any, bytes]:
    """Send one request; return ``(status, headers, body bytes)`` without raising on HTTP errors.

    ``body`` is sent as JSON (with ``Content-Type: application/json`` unless
    ``headers`` sets one); ``raw`` is sent as is.  ``auth`` headers are added
    unless ``headers`` already has them.  Connection errors and timeouts raise.
    """
    hdrs = dict(headers or {})
    data = raw
    if body is not None:
        data = json.dumps(body).encode()
        hdrs.setdefault("Content-Type", "application/json")
    for name, value in (auth or {}).items():
        hdrs.setdefault(name, value)
    req = urllib.request.Request(url, data=data, method=method, headers=hdrs)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.headers, exc.read()


def wait_for(predicate: Callable[[], Any], timeout: float = 5.0) -> bool:
    """Poll ``predicate`` every 50 ms; True as soon as it is truthy, False after ``timeout`` seconds."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return False


def content_type_and_json(headers: Mapping[str, str], raw: bytes) -> tuple[str | None, Any]:
    """A :class:`WebhookReceiver` record: ``(Content-Type, parsed JSON body)`` (the default)."""
    return headers.get("content-type"), json.loads(raw)


def headers_and_json(headers: Mapping[str, str], raw: bytes) -> tuple[dict[str, str], Any]:
    """A :class:`WebhookReceiver` record: ``(headers, lower-cased names; parsed JSON body)``."""
    return dict(headers), json.loads(raw)


def headers_and_raw(headers: Mapping[str, str], raw: bytes) -> tuple[dict[str, str], bytes]:
    """A :class:`WebhookReceiver` record: ``(headers, lower-cased names; the body's bytes)``, for
    checking a signature over the exact bytes sent."""
    return dict(headers), raw


class WebhookReceiver:
    """A loopback webhook receiver answering scripted statuses (then 200) at ``url`` (``path``
    on a free port). ``received`` holds one record per POST, made by ``keep(headers, raw body)``
    (header names lower-cased): by default :func:`content_type_and_json`; also
    :func:`headers_and_json` and :func:`headers_and_raw`. Call :meth:`close` when done."""

    def __init__(self, statuses=(), *, path: str = "/hooks",
                 keep: Callable[[Mapping[str, str], bytes], Any] = content_type_and_json):
        self.statuses = list(statuses)
        self.received: list = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                outer.received.append(keep({k.lower(): v for k, v in self.headers.items()}, raw))
                code = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}{path}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


class AnswerTimes:
    """Context manager: while active, each request logged by a running sandbox (``handle``: what
    ``providers.sandbox.run_sandbox`` returns) also gets ``end``, the ``time.time()`` at which its
    answer was ready (tests of how many reads were in flight at once)."""

    def __init__(self, handle):
        self.log = handle.server.log
        self.original = self.log.update

    def __enter__(self):
        def update(record, **changes):
            if "status" in changes:
                changes.setdefault("end", time.time())
            self.original(record, **changes)

        self.log.update = update
        return self

    def __exit__(self, *exc):
        self.log.update = self.original
