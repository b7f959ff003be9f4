"""Reusable building blocks for local provider sandboxes (standard library only).

A *sandbox* is a small HTTP server that speaks one provider's protocol on
loopback, written from that provider's documentation alone.  The demo and the
test-suite point the real adapters at it.  This module holds what every
sandbox needs, whatever the provider:

* :class:`Knob` / :class:`Knobs` -- typed, validated settings that can be given
  at start (constructor kwargs, CLI flags) and changed at runtime through
  ``POST /_sandbox/config``;
* :class:`RequestLog` -- an in-memory log of every API request, file download
  and callback delivery attempt (``GET /_sandbox/requests``);
* :class:`UrlSigner` -- expiring HMAC-signed download URLs;
* :class:`CallbackSender` -- background webhook delivery with retries;
* :class:`SandboxServer` / :class:`SandboxRequestHandler` -- a threaded HTTP
  server base with the ``/_sandbox/*`` control routes, ``/files/*`` downloads
  (with single ``Range`` support), latency and fault injection;
* :func:`register_sandbox`, :func:`start_sandbox`, :class:`SandboxHandle` --
  the registry of sandbox kinds and the Python API used by tests and the demo.

Nothing here knows any provider's wire format: provider sandboxes subclass
:class:`SandboxServer` and implement :meth:`SandboxServer.handle_api`,
:meth:`SandboxServer.error_response` and friends.

Do not import Django (or anything outside the standard library) here: the
sandbox must start in a plain Python process.
"""

from __future__ import annotations

import collections
import copy
import hashlib
import hmac
import json
import math
import random
import re
import secrets
import select
import socket
import sys
import threading
import time
import traceback
import urllib.error
import urllib.parse
import urllib.request
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = [
    "ASSETS_DIR",
    "SAMPLE_MP4",
    "MAX_IMAGE_BYTES",
    "ApiRequest",
    "CallbackSender",
    "FetchedImage",
    "Knob",
    "KnobError",
    "Knobs",
    "PromptMarkers",
    "Refused",
    "RequestLog",
    "Response",
    "SandboxHandle",
    "SandboxRequestHandler",
    "SandboxServer",
    "TaskSandbox",
    "UrlSigner",
    "COMMON_KNOBS",
    "fetch_image",
    "hang_seconds_outlasting",
    "image_size",
    "is_http_url",
    "json_dumps",
    "json_response",
    "make_png",
    "marker_number",
    "parse_bool",
    "parse_range",
    "register_sandbox",
    "sandbox_kinds",
    "sniff_image",
    "start_sandbox",
    "text_response",
    "with_defaults",
]

ASSETS_DIR = Path(__file__).resolve().with_name("assets")
SAMPLE_MP4 = ASSETS_DIR / "sample.mp4"

MAX_REQUEST_BODY = 2 * 1024 * 1024  # a sandbox never needs more


# --------------------------------------------------------------------------
# JSON and responses
# --------------------------------------------------------------------------


def json_dumps(obj: Any) -> bytes:
    """Serialise ``obj`` as compact UTF-8 JSON bytes."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclass
class Response:
    """An HTTP answer built by a route: status, body bytes and extra headers."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


def json_response(status: int, obj: Any, headers: Mapping[str, str] | None = None) -> Response:
    """Build a JSON :class:`Response`."""
    return Response(status, json_dumps(obj), dict(headers or {}), "application/json")


def text_response(status: int, text: str, headers: Mapping[str, str] | None = None) -> Response:
    """Build a ``text/plain`` :class:`Response`."""
    return Response(status, text.encode("utf-8"), dict(headers or {}), "text/plain; charset=utf-8")


# --------------------------------------------------------------------------
# Knobs
# --------------------------------------------------------------------------


class KnobError(ValueError):
    """A knob name or value was refused."""


def _number(min_value: float | None = None, max_value: float | None = None, integer: bool = False):
    def parse(value: Any) -> float | int:
        if isinstance(value, bool):
            raise KnobError("expected a number, got a boolean")
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise KnobError(f"expected a number, got {value!r}") from None
        if not isinstance(value, (int, float)):
            raise KnobError(f"expected a number, got {type(value).__name__}")
        if integer:
            if float(value) != int(value):
                raise KnobError(f"expected an integer, got {value!r}")
            value = int(value)
        else:
            value = float(value)
        if min_value is not None and value < min_value:
            raise KnobError(f"must be >= {min_value}")
        if max_value is not None and value > max_value:
            raise KnobError(f"must be <= {max_value}")
        return value

    return parse


def _optional(inner: Callable[[Any], Any]):
    def parse(value: Any) -> Any:
        if value is None or value == "" or (isinstance(value, str) and value.lower() in {"none", "null"}):
            return None
        return inner(value)

    return parse


def _str_list(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [v for v in (p.strip() for p in value.split(",")) if v]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise KnobError("expected a list of non-empty strings")
    return list(value)


def _float_list(value: Any) -> list[float]:
    if isinstance(value, str):
        value = [p.strip() for p in value.split(",") if p.strip()]
    if not isinstance(value, (list, tuple)):
        raise KnobError("expected a list of numbers")
    parse = _number(min_value=0)
    return [float(parse(v)) for v in value]


def parse_bool(value: Any) -> bool:
    """Knob parser: a boolean, 0/1, or one of true/false, yes/no, on/off, 1/0 (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
        return value.strip().lower() in {"1", "true", "yes", "on"}
    raise KnobError(f"expected a boolean (true/false), got {value!r}")


def _origin(value: Any) -> str:
    if not isinstance(value, str):
        raise KnobError("expected a string")
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in {"http", "https"} or not parsed.netloc or parsed.path not in {"", "/"}:
        raise KnobError("expected an origin such as http://127.0.0.1:8801")
    return value.rstrip("/")


@dataclass(frozen=True)
class Knob:
    """One tunable setting of a sandbox: its name, default, parser and help text."""

    name: str
    default: Any
    parse: Callable[[Any], Any]
    help: str

    @property
    def cli_flag(self) -> str:
        return "--" + self.name.replace("_", "-")


COMMON_KNOBS: dict[str, Knob] = {
    k.name: k
    for k in [
        Knob("generation_seconds", 8.0, _number(min_value=0), "time from creation to the final state"),
        Knob("result_ttl", 3600.0, _number(min_value=0), "seconds a result URL stays valid after completion"),
        Knob("api_keys", ["sk-sandbox"], _str_list, "accepted API keys"),
        Knob("fail_rate", 0.0, _number(0, 1), "probability (0..1) that a task fails at random"),
        Knob("rate_limit_every", 0, _number(min_value=0, integer=True), "every Nth API request answers 429 (0: off)"),
        Knob("error_5xx_every", 0, _number(min_value=0, integer=True), "every Nth API request answers 503 (0: off)"),
        Knob("latency_ms", 0.0, _number(min_value=0), "sleep before each API answer, in milliseconds"),
        Knob("callback_retry_delays", [1.0, 2.0, 4.0], _float_list, "delays before each callback retry, seconds"),
        Knob("callback_timeout", 30.0, _number(min_value=0.01), "seconds a callback receiver has to answer"),
        Knob("balance", None, _optional(_number()), "account balance in USD; when set, submits beyond it are refused"),
        Knob("hang_seconds", 300.0, _number(min_value=0),
             "longest a [hang] submit holds its answer (it stops as soon as the client hangs up)"),
        Knob("image_fetch_timeout", 5.0, _number(min_value=0.01), "timeout when fetching an input image, seconds"),
        Knob("public_origin", None, _optional(_origin), "origin used in result URLs (default: the bound address)"),
    ]
}


def hang_seconds_outlasting(read_timeout: float) -> float:
    """A ``hang_seconds`` knob value clearly past a client's read timeout (both in seconds).

    ``2 * read_timeout + 10``: a ``[hang]`` submit then never answers within the client's
    wait, whatever the scheduling jitter, and still frees its thread in bounded time (it
    ends sooner anyway, as soon as the client hangs up).  The demo (``scripts/run.sh``)
    and the tests derive the sandboxes' hang from HAILUO_PROVIDER_READ_TIMEOUT with it.
    Raises ``ValueError`` for a negative timeout.
    """
    read_timeout = float(read_timeout)
    if read_timeout < 0:
        raise ValueError("read_timeout must be >= 0")
    return 2 * read_timeout + 10


def with_defaults(specs: Mapping[str, Knob], **defaults: Any) -> dict[str, Knob]:
    """Copy a knob table, overriding some defaults (e.g. a provider's default API key)."""
    out = dict(specs)
    for name, default in defaults.items():
        knob = out[name]
        out[name] = Knob(knob.name, knob.parse(default) if default is not None else None, knob.parse, knob.help)
    return out


class Knobs:
    """A validated, thread-safe set of knob values.

    :meth:`update` validates every change before applying any, so a bad
    ``POST /_sandbox/config`` leaves the knobs untouched.
    """

    def __init__(self, specs: Mapping[str, Knob], values: Mapping[str, Any] | None = None):
        self.specs = dict(specs)
        self._lock = threading.Lock()
        self._values = {name: copy.deepcopy(k.default) for name, k in self.specs.items()}
        if values:
            self.update(values)

    def validate(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(changes) - set(self.specs))
        if unknown:
            raise KnobError(f"unknown knob(s): {', '.join(unknown)}; known: {', '.join(sorted(self.specs))}")
        parsed = {}
        for name, value in changes.items():
            try:
                parsed[name] = self.specs[name].parse(value)
            except KnobError as exc:
                raise KnobError(f"{name}: {exc}") from None
        return parsed

    def update(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        parsed = self.validate(changes)
        with self._lock:
            self._values.update(parsed)
        return parsed

    def __getitem__(self, name: str) -> Any:
        with self._lock:
            return copy.deepcopy(self._values[name])

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._values)


# --------------------------------------------------------------------------
# Request log
# --------------------------------------------------------------------------


class RequestLog:
    """Bounded in-memory log of API requests, downloads and callback attempts.

    Each entry is a dict with at least ``seq``, ``time`` (Unix seconds) and
    ``kind`` (``"api"``, ``"file"`` or ``"callback"``).  Entries returned by
    :meth:`entries` are deep copies.
    """

    def __init__(self, maxlen: int = 10_000):
        self._lock = threading.Lock()
        self._entries: collections.deque[dict] = collections.deque(maxlen=maxlen)
        self._seq = 0

    def add(self, **entry: Any) -> dict:
        with self._lock:
            self._seq += 1
            record = {"seq": self._seq, "time": time.time(), **entry}
            self._entries.append(record)
            return record

    def update(self, record: dict, **changes: Any) -> None:
        with self._lock:
            record.update(changes)

    def entries(self, kind: str | None = None) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(e) for e in self._entries if kind is None or e.get("kind") == kind]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


# --------------------------------------------------------------------------
# Signed URLs
# --------------------------------------------------------------------------


class UrlSigner:
    """Expiring HMAC-SHA256 signatures for download paths.

    The signature covers the path and the ``expires`` Unix time, so neither
    can be changed by the client.
    """

    def __init__(self, secret: bytes | None = None):
        self._secret = secret or secrets.token_bytes(32)

    def sign(self, path: str, expires: int) -> str:
        msg = f"{path}\n{int(expires)}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    def query(self, path: str, expires: int) -> str:
        return urllib.parse.urlencode({"expires": int(expires), "sig": self.sign(path, expires)})

    def verify(self, path: str, expires: str | None, sig: str | None, now: float | None = None) -> str:
        """Return ``"ok"``, ``"bad_signature"`` or ``"expired"``."""
        if not expires or not sig or not re.fullmatch(r"\d{1,12}", expires):
            return "bad_signature"
        if not hmac.compare_digest(self.sign(path, int(expires)), sig):
            return "bad_signature"
        if (now if now is not None else time.time()) > int(expires):
            return "expired"
        return "ok"


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """Parse a single ``Range: bytes=`` header.

    Returns ``None`` to serve the whole file (no header, or a form we do not
    support such as several ranges -- allowed by RFC 9110 §14.2), a
    ``(start, end)`` inclusive pair, or ``"unsatisfiable"`` (416).
    """
    if not header:
        return None
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not m:
        return None
    first, last = m.group(1), m.group(2)
    if first == "" and last == "":
        return None
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - suffix), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if start >= size or end < start:
        return "unsatisfiable"
    return start, min(end, size - 1)


# --------------------------------------------------------------------------
# Callback sender
# --------------------------------------------------------------------------


class CallbackSender:
    """Deliver webhook payloads in background threads, retrying on failure.

    A delivery counts as received only when the receiver answers HTTP 200
    (the rule APIXO documents; other providers may be looser and can pass
    ``ok_statuses``).  After a failure the sender waits ``delays[i]`` seconds
    and tries again, so there are at most ``1 + len(delays)`` attempts.  Every
    attempt is recorded in the :class:`RequestLog` with ``kind="callback"``.
    """

    def __init__(self, log: RequestLog, stop_event: threading.Event, user_agent: str = "provider-sandbox/1"):
        self.log = log
        self.stop_event = stop_event
        self.user_agent = user_agent

    def send(
        self,
        url: str,
        payload: Any,
        *,
        delays: Iterable[float],
        timeout: float,
        context: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        ok_statuses: Iterable[int] = (200,),
        on_attempt: Callable[[dict], None] | None = None,
    ) -> threading.Thread:
        thread = threading.Thread(
            target=self._deliver,
            args=(url, payload, list(delays), timeout, dict(context or {}), dict(headers or {}), set(ok_statuses), on_attempt),
            name="sandbox-callback",
            daemon=True,
        )
        thread.start()
        return thread

    def _deliver(self, url, payload, delays, timeout, context, headers, ok_statuses, on_attempt) -> None:
        body = json_dumps(payload)
        total = 1 + len(delays)
        for attempt in range(1, total + 1):
            if self.stop_event.is_set():
                return
            status: int | None = None
            error: str | None = None
            started = time.time()
            try:
                req = urllib.request.Request(
                    url,
                    data=body,
                    method="POST",
                    headers={"Content-Type": "application/json", "User-Agent": self.user_agent, **headers},
                )
                with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (sandbox)
                    status = resp.status
                    resp.read(64 * 1024)
            except urllib.error.HTTPError as exc:
                status = exc.code
                exc.close()
            except Exception as exc:  # connection refused, timeout, bad URL...
                error = f"{type(exc).__name__}: {exc}"
            ok = status in ok_statuses
            record = {
                "kind": "callback",
                "method": "POST",
                "url": url,
                "path": urllib.parse.urlsplit(url).path,
                "body": payload,
                "attempt": attempt,
                "max_attempts": total,
                "status": status,
                "error": error,
                "ok": ok,
                "duration_ms": round((time.time() - started) * 1000, 1),
                **context,
            }
            self.log.add(**record)
            if on_attempt:
                on_attempt(record)
            if ok or attempt == total:
                return
            if self.stop_event.wait(delays[attempt - 1]):
                return


# --------------------------------------------------------------------------
# Tiny PNG generator (for demo / test input images)
# --------------------------------------------------------------------------


def make_png(width: int, height: int, rgb: tuple[int, int, int] = (70, 130, 180)) -> bytes:
    """Return a valid solid-colour RGB PNG of the given size."""

    def chunk(tag: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + tag + data + zlib.crc32(tag + data).to_bytes(4, "big")

    ihdr = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 2, 0, 0, 0])
    comp = zlib.compressobj(9)
    row = b"\x00" + bytes(rgb) * width
    parts = [comp.compress(row) for _ in range(height)]
    parts.append(comp.flush())
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


_GIF_1x1 = bytes.fromhex("47494638396101000100800000000000ffffff21f90401000000002c00000000010001000002024401003b")


# --------------------------------------------------------------------------
# Shared protocol helpers: refusals, URLs, prompt markers, images
# --------------------------------------------------------------------------


class Refused(Exception):
    """A request refused by a provider route; :meth:`TaskSandbox.refusal_response` renders it.

    ``status`` is the HTTP status, ``message`` the main text, ``detail`` a second
    text (providers whose error body has one), ``headers`` extra response headers
    and ``code`` a provider-specific code (PoYo's ``error.type``, qingbo's
    ``error.code``, MiniMax's ``base_resp.status_code``).
    """

    def __init__(self, status: int, message: str, detail: str = "", headers: Mapping[str, str] | None = None,
                 code: Any = None):
        super().__init__(message)
        self.status, self.message, self.detail, self.code = status, message, detail, code
        self.headers = dict(headers or {})


def is_http_url(value: Any) -> bool:
    """True for a non-blank string that is an ``http``/``https`` URL with a host."""
    if not isinstance(value, str) or not value.strip():
        return False
    parts = urllib.parse.urlsplit(value.strip())
    return parts.scheme in ("http", "https") and bool(parts.hostname)


_MARK_HTTP = re.compile(r"\[http:(\d{3})\]", re.IGNORECASE)
_MARK_HANG = re.compile(r"\[hang\]", re.IGNORECASE)


def marker_number(prompt: str, name: str) -> float | None:
    """The N of the first ``[name:N]`` marker in ``prompt`` (N a decimal number), else None."""
    m = re.search(r"\[" + re.escape(name) + r":(\d+(?:\.\d+)?)\]", prompt, re.IGNORECASE)
    return float(m.group(1)) if m else None


@dataclass(frozen=True)
class PromptMarkers:
    """The test markers found in a prompt (README, "Prompt markers").

    ``fail`` is True when a ``[fail]`` or ``[fail:CODE]`` marker is present (CODE
    in ``fail_code``, None without one); ``http_status`` is the STATUS of the
    first ``[http:STATUS]`` marker when it lies in 400..599; ``seconds`` the N
    of ``[seconds:N]``; ``hang`` whether ``[hang]`` is present.
    """

    fail: bool
    fail_code: str | None
    http_status: int | None
    seconds: float | None
    hang: bool

    @classmethod
    def parse(cls, prompt: str, fail_code: str = r"[A-Za-z0-9_.\-]+") -> PromptMarkers:
        """Read the markers of ``prompt``; ``fail_code`` is the regex a ``[fail:CODE]`` CODE must match."""
        fail = re.search(r"\[fail(?::(" + fail_code + r"))?\]", prompt, re.IGNORECASE)
        http = _MARK_HTTP.search(prompt)
        status = int(http.group(1)) if http else None
        return cls(
            fail=fail is not None,
            fail_code=fail.group(1) if fail else None,
            http_status=status if status is not None and 400 <= status <= 599 else None,
            seconds=marker_number(prompt, "seconds"),
            hang=bool(_MARK_HANG.search(prompt)),
        )


MAX_IMAGE_BYTES = 20 * 1024 * 1024  # the 20 MB limit APIXO, PiAPI and MiniMax document; a fetch cap elsewhere


def sniff_image(data: bytes) -> str | None:
    """Return ``png``/``jpeg``/``gif``/``webp``/``bmp`` from the magic bytes of ``data``, else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data.startswith(b"BM") and len(data) >= 26:
        return "bmp"
    return None


def image_size(data: bytes) -> tuple[str, int, int]:
    """Return ``(format, width, height)`` of PNG, JPEG or WebP bytes (own header parsing, no Pillow).

    PNG: the IHDR chunk after the signature.  JPEG: the first SOFn segment.
    WebP: the VP8, VP8L or VP8X header.  Raises ``ValueError("format")`` for
    any other format and ``ValueError("corrupt")`` for a header that cannot be read.
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ValueError("corrupt")
        return "png", int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:3] == b"\xff\xd8\xff":
        return _jpeg_size(data)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _webp_size(data)
    raise ValueError("format")


def _jpeg_size(data: bytes) -> tuple[str, int, int]:
    frame_markers = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
    pos, end = 2, len(data)
    while pos < end:
        if data[pos] != 0xFF:
            raise ValueError("corrupt")
        while pos < end and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= end:
            break
        marker = data[pos]
        pos += 1
        if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # standalone markers
            continue
        if marker in (0xD9, 0xDA) or pos + 2 > end:  # end of image / start of scan before any SOF
            break
        length = int.from_bytes(data[pos:pos + 2], "big")
        if length < 2:
            raise ValueError("corrupt")
        if marker in frame_markers:
            if pos + 7 > end:
                break
            return "jpeg", int.from_bytes(data[pos + 5:pos + 7], "big"), int.from_bytes(data[pos + 3:pos + 5], "big")
        pos += length
    raise ValueError("corrupt")


def _webp_size(data: bytes) -> tuple[str, int, int]:
    chunk = data[12:16]
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        return "webp", int.from_bytes(data[26:28], "little") & 0x3FFF, int.from_bytes(data[28:30], "little") & 0x3FFF
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return "webp", (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    if chunk == b"VP8X" and len(data) >= 30:
        return "webp", int.from_bytes(data[24:27], "little") + 1, int.from_bytes(data[27:30], "little") + 1
    raise ValueError("corrupt")


@dataclass
class FetchedImage:
    """The outcome of :func:`fetch_image`.

    ``data`` is None when the fetch failed: ``http_status`` then holds a
    non-2xx status (``error`` None), or ``error`` names the exception
    (``"TypeName: message"``, ``error_type`` its type name), or ``declared_bytes``
    holds a ``Content-Length`` over the limit (the body is not read).
    """

    data: bytes | None = None
    http_status: int | None = None
    content_type: str | None = None
    declared_bytes: int | None = None
    error: str | None = None
    error_type: str | None = None


def fetch_image(url: str, timeout: float, user_agent: str, *, max_bytes: int = MAX_IMAGE_BYTES,
                trust_length: bool = False) -> FetchedImage:
    """GET ``url`` and read at most ``max_bytes + 1`` bytes of it (stdlib only, never raises).

    With ``trust_length``, a declared ``Content-Length`` over ``max_bytes`` stops
    before the body is read.
    """
    out = FetchedImage()
    try:
        req = urllib.request.Request(url, headers={"User-Agent": user_agent})
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (sandbox)
            out.http_status = resp.status
            out.content_type = resp.headers.get("Content-Type")
            declared = resp.headers.get("Content-Length")
            if trust_length and declared and declared.isdigit() and int(declared) > max_bytes:
                out.declared_bytes = int(declared)
                return out
            out.data = resp.read(max_bytes + 1)
    except urllib.error.HTTPError as exc:
        out.http_status = exc.code
        exc.close()
    except Exception as exc:  # refused, timeout, DNS, bad URL...
        out.error, out.error_type = f"{type(exc).__name__}: {exc}", type(exc).__name__
    return out


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


# --------------------------------------------------------------------------
# Task sandbox base
# --------------------------------------------------------------------------


class TaskSandbox(SandboxServer):
    """Base of a sandbox whose API creates tasks that move through states over time.

    It holds what every provider sandbox repeats, so that a provider module
    holds only its protocol:

    * task storage: ``self._tasks`` (task id -> task object, guarded by
      ``self.lock``); a task object has at least ``task_id`` and ``status``;
    * time: :meth:`tick` (the ticker thread) and :meth:`tasks_snapshot` move
      every task along with :meth:`advance` under the lock, then hand what it
      returned to :meth:`deliver` (callbacks, webhooks) outside the lock;
    * files: ``/files/<name>`` serves ``assets/sample.mp4`` when ``file_name``
      matches ``name`` and the task found by :meth:`task_for_file` for its first
      group is in ``video_status``;
    * requests: :meth:`handle_api` calls :meth:`route` and renders a raised
      :class:`Refused` with :meth:`refusal_response`; :meth:`json_body` reads a
      JSON submit body; :meth:`bearer_key` checks ``Authorization: Bearer KEY``;
    * prompt markers (:meth:`markers`, :meth:`generation_time`,
      :meth:`random_failure`, :meth:`hang_if_asked`), background image checks
      (:meth:`check_image_later`) and recorded callback deliveries
      (:meth:`send_callback`).
    """

    final_states: tuple[str, ...] = ()
    video_status = ""
    file_name: re.Pattern[str] = re.compile(r"(.+)\.mp4")
    fail_code_pattern = r"[A-Za-z0-9_.\-]+"
    body_messages = {"content_type": "Content-Type must be application/json", "json": "request body is not valid JSON"}

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **knobs: Any):
        super().__init__(host, port, **knobs)
        self._tasks: dict[str, Any] = {}

    # ---- state -----------------------------------------------------------

    def reset_state(self) -> None:
        self._tasks.clear()
        self.reset_accounts()

    def reset_accounts(self) -> None:
        """Hook: put balances and counters back to their start values (called under ``self.lock``)."""

    def advance(self, task: Any, now: float) -> Any:
        """Move ``task`` to the state its age calls for (under ``self.lock``); return a job for :meth:`deliver`."""
        return None

    def deliver(self, jobs: list) -> None:
        """Send what :meth:`advance` returned (called outside the lock)."""

    def task_snapshot(self, task: Any, now: float) -> dict:
        """One entry of ``GET /_sandbox/tasks``."""
        return task.snapshot()

    def advance_all(self, now: float, *, running_only: bool = False) -> list:
        """:meth:`advance` every task (only the non-final ones with ``running_only``); call under the lock."""
        return [self.advance(t, now) for t in self._tasks.values() if not (running_only and t.status in self.final_states)]

    def tasks_snapshot(self) -> list[dict]:
        now = time.time()
        with self.lock:
            jobs = self.advance_all(now)
            out = [self.task_snapshot(t, now) for t in self._tasks.values()]
        self.deliver(jobs)
        return out

    def tick(self, now: float) -> None:
        with self.lock:
            jobs = self.advance_all(now, running_only=True)
        self.deliver(jobs)

    def task_for_file(self, key: str) -> Any:
        """The task whose video ``/files/<key>.mp4`` is (under ``self.lock``)."""
        return self._tasks.get(key)

    def resolve_file(self, name: str) -> Path | None:
        m = self.file_name.fullmatch(name)
        if not m:
            return None
        with self.lock:
            task = self.task_for_file(m.group(1))
            if task is None or task.status != self.video_status:
                return None
        return SAMPLE_MP4

    def sign_result(self, task: Any, completed: float) -> None:
        """Set ``task.result_expires`` (``result_ttl`` after ``completed``) and its signed ``task.result_url``."""
        task.result_expires = math.ceil(completed + self.knobs["result_ttl"])
        task.result_url = self.signed_file_url(f"{task.task_id}.mp4", task.result_expires)

    # ---- requests --------------------------------------------------------

    def handle_api(self, request: ApiRequest) -> Response:
        try:
            return self.route(request)
        except Refused as exc:
            return self.refusal_response(exc, request)

    def route(self, request: ApiRequest) -> Response:
        """Answer one API request; may raise :class:`Refused`."""
        return self.error_response(404, "Not found", f"no endpoint {request.method} {request.path}")

    def refusal_response(self, exc: Refused, request: ApiRequest) -> Response:
        """Render a :class:`Refused` in the provider's error shape."""
        return self.error_response(exc.status, exc.message, exc.detail, exc.headers)

    def bad_request(self, message: str) -> Refused:
        """The provider's refusal of an invalid request (400 unless the provider says otherwise)."""
        return Refused(400, message)

    def json_body(self, request: ApiRequest) -> Any:
        """The JSON body of ``request``; raises :meth:`bad_request` (``body_messages``) when the
        ``Content-Type`` is not ``application/json`` or the body is not JSON.  An empty body is None."""
        ctype = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise self.bad_request(self.body_messages["content_type"])
        try:
            return json.loads(request.body.decode("utf-8")) if request.body else None
        except (ValueError, UnicodeDecodeError):
            raise self.bad_request(self.body_messages["json"]) from None

    def bearer_key(self, request: ApiRequest) -> str | None:
        """The key of ``Authorization: Bearer KEY`` when it is one of the ``api_keys`` knob, else None."""
        header = request.header("Authorization") or ""
        scheme, _, key = header.strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return None
        return key if key in self.knobs["api_keys"] else None

    # ---- markers, images, callbacks ---------------------------------------

    def markers(self, prompt: str) -> PromptMarkers:
        return PromptMarkers.parse(prompt, self.fail_code_pattern)

    def random_failure(self) -> bool:
        """True with the probability of the ``fail_rate`` knob."""
        return random.random() < self.knobs["fail_rate"]

    def generation_time(self, markers: PromptMarkers) -> float:
        """``[seconds:N]`` if given, else the ``generation_seconds`` knob."""
        return markers.seconds if markers.seconds is not None else float(self.knobs["generation_seconds"])

    def hang_if_asked(self, markers: PromptMarkers, request: ApiRequest | None = None) -> None:
        """Hold the answer when the prompt had ``[hang]`` (the task already exists).

        Waits until the client hangs up (its read timeout ran out), ``hang_seconds``
        pass or the server stops, whichever comes first, and records on the request's
        log entry ``hang: {"seconds": <float>, "ended": "client hung up" | "hang_seconds"
        | "server stopping"}``.  Without ``request`` it only waits ``hang_seconds``.
        """
        if not markers.hang:
            return
        started = time.monotonic()
        ended = self._wait_while_connected(request.connection if request else None, self.knobs["hang_seconds"])
        if request is not None:
            self.log.update(request.log_entry, hang={"seconds": round(time.monotonic() - started, 3), "ended": ended})

    def _wait_while_connected(self, conn: socket.socket | None, seconds: float) -> str:
        """Wait up to ``seconds`` while ``conn`` stays open; returns why the wait ended.

        A hang-up shows as the socket turning readable with nothing to read (or an
        error); bytes from the client (a pipelined request) end the watch, not the wait.
        """
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "hang_seconds"
            if conn is None:
                return "server stopping" if self.sleep(remaining) else "hang_seconds"
            if self.stop_event.is_set():
                return "server stopping"
            try:
                readable, _, _ = select.select([conn], [], [], min(0.2, remaining))
                if not readable:
                    continue
                if not conn.recv(1, socket.MSG_PEEK):
                    return "client hung up"
            except (OSError, ValueError):
                return "client hung up"
            conn = None

    def check_image_later(self, task: Any, inspect: Callable[[], tuple[str | None, Any]]) -> None:
        """Run ``inspect() -> (error or None, info)`` in a thread, then record it on ``task``.

        Sets ``task.image_info``, ``image_done_at``, ``image_error`` and
        ``image_check`` (``"ok"`` or ``"failed"``) under the lock.
        """

        def run() -> None:
            error, info = inspect()
            with self.lock:
                task.image_info = info
                task.image_done_at = time.time()
                task.image_error = error
                task.image_check = "failed" if error else "ok"

        threading.Thread(target=run, name=f"{self.kind}-image-check", daemon=True).start()

    def send_callback(self, task: Any, url: str, payload: Any, *, context: Mapping[str, Any],
                      headers: Mapping[str, str] | None = None, ok_statuses: Iterable[int] = range(200, 300),
                      note: Mapping[str, Any] | None = None) -> threading.Thread:
        """POST ``payload`` to ``url`` with the knobs' retries; each attempt is appended to
        ``task.callback_attempts`` as ``{**note, attempt, status, error, ok}``."""

        def on_attempt(record: dict) -> None:
            with self.lock:
                task.callback_attempts.append({**(note or {}), **{k: record[k] for k in ("attempt", "status", "error", "ok")}})

        return self.callbacks.send(
            url, payload, delays=self.knobs["callback_retry_delays"], timeout=self.knobs["callback_timeout"],
            context=context, headers=headers, ok_statuses=ok_statuses, on_attempt=on_attempt,
        )


# --------------------------------------------------------------------------
# Registry and Python API
# --------------------------------------------------------------------------

_REGISTRY: dict[str, type[SandboxServer]] = {}


def register_sandbox(kind: str) -> Callable[[type[SandboxServer]], type[SandboxServer]]:
    """Class decorator: make a :class:`SandboxServer` subclass startable as ``kind``."""

    def deco(cls: type[SandboxServer]) -> type[SandboxServer]:
        cls.kind = kind
        _REGISTRY[kind] = cls
        return cls

    return deco


def sandbox_kinds() -> dict[str, type[SandboxServer]]:
    """The registered sandbox kinds (``{"apixo": ApixoSandbox, ...}``)."""
    return dict(_REGISTRY)


class SandboxHandle:
    """A running sandbox, as returned by :func:`start_sandbox`.

    Attributes: ``kind``, ``server``, ``host``, ``port``, ``origin``
    (``http://127.0.0.1:PORT``) and ``base_url`` (origin + the provider's
    API prefix, e.g. ``http://127.0.0.1:PORT/api/v1`` for APIXO).
    Usable as a context manager (stops on exit).
    """

    def __init__(self, server: SandboxServer):
        self.server = server
        self.kind = server.kind

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def origin(self) -> str:
        return self.server.origin

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def configure(self, **knobs: Any) -> dict[str, Any]:
        """Change knobs at runtime (same as ``POST /_sandbox/config``)."""
        return self.server.configure(knobs)

    def knobs(self) -> dict[str, Any]:
        return self.server.knobs.snapshot()

    def requests(self, kind: str | None = None) -> list[dict]:
        """The request log (``kind``: ``"api"``, ``"file"``, ``"callback"`` or all)."""
        return self.server.log.entries(kind)

    def tasks(self) -> list[dict]:
        return self.server.tasks_snapshot()

    def reset(self) -> None:
        """Forget tasks, the request log and counters (knobs are kept)."""
        self.server.reset()

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> SandboxHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<SandboxHandle {self.kind} {self.base_url}>"


def start_sandbox(kind: str, host: str = "127.0.0.1", port: int = 0, **knobs: Any) -> SandboxHandle:
    """Start the sandbox registered as ``kind`` in daemon threads.

    ``port=0`` picks a free port.  ``knobs`` are the sandbox's knobs (see
    ``COMMON_KNOBS`` and the provider module), plus ``verbose=True`` to log
    each request to stderr.  Raises ``KeyError`` for an unknown kind and
    :class:`KnobError` for a bad knob.
    """
    try:
        cls = _REGISTRY[kind]
    except KeyError:
        raise KeyError(f"unknown sandbox kind {kind!r}; known: {', '.join(sorted(_REGISTRY))}") from None
    server = cls(host, port, **knobs)
    server.start_background()
    return SandboxHandle(server)
