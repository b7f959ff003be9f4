"""The threaded HTTP server base with the ``/_sandbox/*`` routes, downloads, latency and fault injection.

Part of :mod:`providers.sandbox.common` (standard library only: no Django)."""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .files import CallbackSender, RequestLog, UrlSigner, parse_range
from .images import _GIF_1x1, make_png
from .knobs import COMMON_KNOBS, Knob, KnobError, Knobs
from .responses import MAX_REQUEST_BODY, Response, json_response, text_response

# --------------------------------------------------------------------------
# Server base
# --------------------------------------------------------------------------


@dataclass
class ApiRequest:
    """One parsed API request handed to :meth:`SandboxServer.handle_api`.

    ``path`` is relative to the server's ``api_prefix`` (e.g.
    ``/generateTask/hailuo-2-3``); ``query`` maps names to lists of values.
    """

    method: str
    path: str
    query: dict[str, list[str]]
    headers: Mapping[str, str]
    body: bytes
    log_entry: dict
    connection: socket.socket | None = None  # the client's socket, to notice a hang-up

    def header(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)


class SandboxServer(ThreadingHTTPServer):
    """Threaded HTTP server base shared by every provider sandbox.

    Routing (see :class:`SandboxRequestHandler`):

    * ``{api_prefix}/...`` -- the provider API: logged, delayed by
      ``latency_ms``, subject to ``rate_limit_every``/``error_5xx_every`` fault
      injection, then handed to :meth:`handle_api`;
    * ``/files/<name>?expires=&sig=`` -- signed, expiring downloads of
      :meth:`resolve_file`;
    * ``/_sandbox/...`` -- unauthenticated control routes: ``GET config``,
      ``POST config`` (JSON object merged into the knobs), ``GET requests``,
      ``GET tasks``, ``POST reset``, ``GET health``,
      ``GET image.png?w=&h=`` (a generated PNG), ``GET image.gif``.

    Listens with a backlog of 1024 (socketserver's default of 5 drops the SYNs of a poll
    sweep that opens hundreds of connections at once, and the kernel retries them 1 s later).

    Subclasses set ``kind``, ``api_prefix`` and ``knob_specs`` and implement
    :meth:`handle_api`, :meth:`error_response`, :meth:`tick`,
    :meth:`tasks_snapshot`, :meth:`reset_state` and :meth:`resolve_file`.
    All shared mutable state is guarded by ``self.lock``.
    """

    request_queue_size = 1024
    max_request_body = MAX_REQUEST_BODY  # bytes; a larger body answers 413

    kind = "base"
    api_prefix = "/api"
    knob_specs: Mapping[str, Knob] = COMMON_KNOBS
    daemon_threads = True
    allow_reuse_address = True
    tick_interval = 0.05

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, verbose: bool = False, **knobs: Any):
        self.knobs = Knobs(self.knob_specs, knobs)  # validate before binding
        super().__init__((host, port), SandboxRequestHandler)
        self.verbose = verbose
        self.lock = threading.RLock()
        self.log = RequestLog()
        self.stop_event = threading.Event()
        self.signer = UrlSigner()
        self.callbacks = CallbackSender(self.log, self.stop_event, user_agent=f"{self.kind}-sandbox/1")
        self._api_counter = 0
        self._bg_threads: list[threading.Thread] = []

    # ---- addresses -------------------------------------------------------

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def host(self) -> str:
        return self.server_address[0]

    @property
    def origin(self) -> str:
        configured = self.knobs["public_origin"]
        if configured:
            return configured
        host = self.host
        if host in {"0.0.0.0", ""}:
            host = "127.0.0.1"
        elif host == "::":
            host = "::1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"

    @property
    def base_url(self) -> str:
        return self.origin + self.api_prefix

    # ---- lifecycle -------------------------------------------------------

    def start_background(self) -> None:
        """Serve in a daemon thread and start the ticker thread."""
        serve = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, name=f"{self.kind}-sandbox", daemon=True)
        ticker = threading.Thread(target=self._tick_loop, name=f"{self.kind}-sandbox-ticker", daemon=True)
        self._bg_threads = [serve, ticker]
        serve.start()
        ticker.start()

    def _tick_loop(self) -> None:
        while not self.stop_event.wait(self.tick_interval):
            try:
                self.tick(time.time())
            except Exception:  # keep ticking; a sandbox bug must not freeze tasks
                traceback.print_exc()

    def stop(self) -> None:
        """Stop serving, wake sleeping handlers/callbacks, close the socket."""
        if self.stop_event.is_set():
            return
        self.stop_event.set()
        if self._bg_threads:  # shutdown() would block forever if serve_forever never ran
            self.shutdown()
        self.server_close()
        for t in self._bg_threads:
            t.join(timeout=2)

    # ---- knobs -----------------------------------------------------------

    def configure(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        """Validate and apply knob changes; returns the full knob snapshot."""
        parsed = self.knobs.update(changes)
        with self.lock:
            if {"rate_limit_every", "error_5xx_every"} & set(parsed):
                self._api_counter = 0
            self.on_knobs_changed(parsed)
        return self.knobs.snapshot()

    def on_knobs_changed(self, changed: Mapping[str, Any]) -> None:
        """Hook for subclasses (called under ``self.lock``)."""

    def reset(self) -> None:
        with self.lock:
            self.log.clear()
            self._api_counter = 0
            self.reset_state()

    def sleep(self, seconds: float) -> bool:
        """Sleep unless the server is stopping; returns True if interrupted."""
        return self.stop_event.wait(max(0.0, seconds))

    # ---- fault injection -------------------------------------------------

    def injected_fault(self) -> Response | None:
        """Count this API request and answer 429/503 if a knob says so."""
        rate_every = self.knobs["rate_limit_every"]
        err_every = self.knobs["error_5xx_every"]
        with self.lock:
            self._api_counter += 1
            n = self._api_counter
        if rate_every and n % rate_every == 0:
            return self.error_response(429, "Rate limit exceeded", "too many requests (sandbox rate_limit_every)", {"Retry-After": "1"})
        if err_every and n % err_every == 0:
            return self.error_response(503, "Service unavailable", "upstream temporarily unavailable (sandbox error_5xx_every)")
        return None

    # ---- signed files ----------------------------------------------------

    def signed_file_url(self, name: str, expires: int) -> str:
        path = f"/files/{name}"
        return f"{self.origin}{path}?{self.signer.query(path, expires)}"

    # ---- to implement ----------------------------------------------------

    def handle_api(self, request: ApiRequest) -> Response:  # pragma: no cover - abstract
        return self.error_response(404, "Not found", "no API implemented")

    def error_response(self, status: int, message: str, detail: str, headers: Mapping[str, str] | None = None) -> Response:
        return json_response(status, {"error": message, "detail": detail}, headers)

    def tick(self, now: float) -> None:
        """Advance time-driven state (final states, callbacks)."""

    def tasks_snapshot(self) -> list[dict]:
        return []

    def reset_state(self) -> None:
        """Forget tasks and provider-specific counters (called under lock)."""

    def resolve_file(self, name: str) -> Path | None:
        """Map a signed ``/files/<name>`` to a local file (or None: 404)."""
        return None

    def control_route(self, route: str, method: str) -> Response | None:
        """Answer a provider's own ``/_sandbox/<route>`` (None: not one; the shared routes come first)."""
        return None


class SandboxRequestHandler(BaseHTTPRequestHandler):
    """Request handler shared by all sandboxes (HTTP/1.1, keep-alive)."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; without TCP_NODELAY Nagle holds the body back
    # for the client's delayed ACK, ~40 ms per request on a kept-alive connection.
    disable_nagle_algorithm = True
    server: SandboxServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.verbose:
            sys.stderr.write(f"[{self.server.kind}-sandbox] {self.address_string()} {format % args}\n")

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    # ---- plumbing --------------------------------------------------------

    def _read_body(self) -> bytes | None:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            chunks, total = [], 0
            while True:
                line = self.rfile.readline(65537)
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > self.server.max_request_body:
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = int(self.headers.get("Content-Length") or 0)
        if length > self.server.max_request_body:
            return None
        return self.rfile.read(length) if length > 0 else b""

    def _send(self, resp: Response) -> None:
        self.send_response(resp.status)
        self.send_header("Content-Type", resp.content_type)
        self.send_header("Content-Length", str(len(resp.body)))
        for name, value in resp.headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD" and resp.body:
            self.wfile.write(resp.body)

    def _dispatch(self) -> None:
        srv = self.server
        split = urllib.parse.urlsplit(self.path)
        path = split.path
        query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        try:
            body = self._read_body()
        except (ValueError, OSError):
            self.close_connection = True
            self._send(srv.error_response(400, "Bad request", "malformed request body"))
            return
        if body is None:
            self.close_connection = True
            self._send(srv.error_response(413, "Payload too large", "request body too large"))
            return
        try:
            if path.startswith("/_sandbox/") or path == "/_sandbox":
                resp = self._control(path, query, body)
            elif path.startswith("/files/"):
                resp = self._file(path, query)
            elif path == srv.api_prefix or path.startswith(srv.api_prefix + "/"):
                resp = self._api(path[len(srv.api_prefix):] or "/", query, body)
            else:
                resp = srv.error_response(404, "Not found", f"no route for {path}")
        except BrokenPipeError:
            return
        except Exception as exc:  # a sandbox bug: answer 500 rather than drop the socket
            traceback.print_exc()
            resp = srv.error_response(500, "Internal server error", f"{type(exc).__name__}: {exc}")
        try:
            self._send(resp)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _api(self, path: str, query: dict, body: bytes) -> Response:
        srv = self.server
        try:
            logged_body: Any = json.loads(body) if body else None
        except (ValueError, UnicodeDecodeError):
            logged_body = body.decode("utf-8", "replace")
        entry = srv.log.add(
            kind="api",
            method=self.command,
            path=srv.api_prefix + path,
            query={k: v[0] if len(v) == 1 else v for k, v in query.items()},
            headers=dict(self.headers.items()),
            body=logged_body,
            status=None,
        )
        latency = srv.knobs["latency_ms"]
        if latency:
            srv.sleep(latency / 1000.0)
        resp = srv.injected_fault()
        if resp is None:
            request = ApiRequest(self.command, path, query, self.headers, body, entry, self.connection)
            resp = srv.handle_api(request)
        srv.log.update(entry, status=resp.status, response=_loggable(resp))
        return resp

    def _file(self, path: str, query: dict) -> Response:
        srv = self.server
        entry = srv.log.add(kind="file", method=self.command, path=path, query={k: v[0] for k, v in query.items()}, range=self.headers.get("Range"), status=None)
        resp = self._file_response(path, query)
        srv.log.update(entry, status=resp.status)
        return resp

    def _file_response(self, path: str, query: dict) -> Response:
        srv = self.server
        if self.command not in {"GET", "HEAD"}:
            return text_response(405, "method not allowed", {"Allow": "GET, HEAD"})
        verdict = srv.signer.verify(path, (query.get("expires") or [None])[0], (query.get("sig") or [None])[0])
        if verdict == "expired":
            return text_response(403, "expired")
        if verdict != "ok":
            return text_response(403, "forbidden: bad or missing signature")
        local = srv.resolve_file(path[len("/files/"):])
        if local is None or not local.is_file():
            return text_response(404, "not found")
        data = local.read_bytes()
        size = len(data)
        ctype = "video/mp4" if local.suffix == ".mp4" else "application/octet-stream"
        headers = {"Accept-Ranges": "bytes", "Cache-Control": "private, max-age=60"}
        rng = parse_range(self.headers.get("Range"), size)
        if rng == "unsatisfiable":
            return Response(416, b"", {**headers, "Content-Range": f"bytes */{size}"}, ctype)
        if rng is None:
            return Response(200, data, headers, ctype)
        start, end = rng
        return Response(206, data[start : end + 1], {**headers, "Content-Range": f"bytes {start}-{end}/{size}"}, ctype)

    def _control(self, path: str, query: dict, body: bytes) -> Response:
        srv = self.server
        route = path[len("/_sandbox/"):].strip("/")
        method = self.command
        if route == "config" and method == "GET":
            return json_response(200, srv.knobs.snapshot())
        if route == "config" and method == "POST":
            try:
                changes = json.loads(body or b"{}")
            except (ValueError, UnicodeDecodeError):
                return json_response(400, {"error": "body must be a JSON object"})
            if not isinstance(changes, dict):
                return json_response(400, {"error": "body must be a JSON object"})
            try:
                return json_response(200, srv.configure(changes))
            except KnobError as exc:
                return json_response(400, {"error": str(exc)})
        if route == "requests" and method == "GET":
            kind = (query.get("kind") or [None])[0]
            return json_response(200, srv.log.entries(kind))
        if route == "tasks" and method == "GET":
            return json_response(200, srv.tasks_snapshot())
        if route == "reset" and method == "POST":
            srv.reset()
            return json_response(200, {"ok": True})
        if route == "health" and method in {"GET", "HEAD"}:
            return json_response(200, {"ok": True, "kind": srv.kind, "base_url": srv.base_url})
        if route == "image.png" and method in {"GET", "HEAD"}:
            try:
                w = int((query.get("w") or ["640"])[0])
                h = int((query.get("h") or ["360"])[0])
            except ValueError:
                return json_response(400, {"error": "w and h must be integers"})
            if not (1 <= w <= 4096 and 1 <= h <= 4096):
                return json_response(400, {"error": "w and h must be within 1..4096"})
            return Response(200, make_png(w, h), {}, "image/png")
        if route == "image.gif" and method in {"GET", "HEAD"}:
            return Response(200, _GIF_1x1, {}, "image/gif")
        extra = srv.control_route(route, method)
        if extra is not None:
            return extra
        return json_response(404, {"error": f"unknown sandbox route {method} /_sandbox/{route}"})


def _loggable(resp: Response) -> Any:
    if resp.content_type.startswith("application/json"):
        try:
            return json.loads(resp.body)
        except ValueError:
            pass
    return None
