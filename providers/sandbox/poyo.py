"""PoYo sandbox: a local server speaking PoYo's Hailuo 2.3 protocol.

Written only from PoYo's documentation (seed ``000`` -- "Submit Hailuo 2.3
Task" -- and ``providers.md``, section PoYo, which adds the unified status
endpoint, the error body, the webhook headers and the prices).  It
deliberately shares no code, constants or schemas with ``providers/adapters/``:
the adapter is tested against this independent reading of the same pages.

Routes (base URL ``http://HOST:PORT``, mirroring ``https://api.poyo.ai``;
the sandbox's ``base_url`` is therefore just its origin):

* ``POST /api/generate/submit`` -- body ``{"model": "hailuo-2.3",
  "callback_url"?: URL, "input": {"prompt", "duration"?: 6|10,
  "resolution"?: "768p"|"1080p", "start_image_url"?, "prompt_optimizer"?}}``;
  answers ``{"code": 200, "data": {"task_id": "task-unified-<unix>-<8 a-z0-9>",
  "status": "not_started", "created_time": "YYYY-MM-DDTHH:MM:SS"}}``.
* ``GET /api/generate/status/{task_id}`` -- ``{"code": 200, "data": {task_id,
  status, progress, files, created_time, error_message, credits_amount,
  finished_time}}``.  ``status`` goes ``not_started`` -> ``running``
  (``progress`` rising 1..99) -> ``finished`` (``progress`` 100, ``files``
  ``[{"file_url", "file_type": "video"}]``) | ``failed`` (``error_message``).
  Every key is always present: ``files`` is ``[]`` and ``error_message`` /
  ``finished_time`` are ``null`` when they do not apply (the docs' overview
  example shows ``"error_message": null`` on a finished task).
  A task belongs to the API key that created it: another key gets 403
  ("Task belongs to another user"); an unknown id gets 404.
* ``GET /api/user/info`` -- the docs name the route but give NO shape; the
  sandbox invents ``{"code": 200, "data": {"credits": <remaining int>,
  "email": "sandbox@poyo.local"}}``.
* ``GET /files/{task_id}.mp4?expires=&sig=`` -- the result video (signed,
  expiring after ``result_ttl``; 403 ``expired`` afterwards).

Every API route needs ``Authorization: Bearer KEY`` with a configured key
(knob ``api_keys``, default ``sk-sandbox-poyo``), else 401.  Errors are a
non-2xx status with the documented body ``{"code": N, "error": {"message",
"type"}}``.  Only ``type: "invalid_request_error"`` (400) is documented; the
other types (``authentication_error``, ``permission_error``,
``not_found_error``, ``rate_limit_error``, ``server_error``,
``upstream_error``, ``insufficient_credits_error``) are invented.

Validation (400, ``invalid_request_error``), strict on purpose so that an
adapter's misreading shows up: body not a JSON object or not
``application/json``; ``model`` missing or not ``hailuo-2.3``; unknown
top-level or ``input`` keys (the docs list ``model``, ``callback_url``,
``input`` and ``prompt``, ``duration``, ``resolution``, ``start_image_url``,
``prompt_optimizer``); ``end_image_url`` ("not supported"); ``prompt``
missing, blank, not a string or over 5000 characters; ``duration`` not the
integer 6 or 10; ``resolution`` not exactly ``768p`` or ``1080p``;
``1080p`` with ``duration`` 10; ``start_image_url`` / ``callback_url`` not
an http(s) URL (``null`` or ``""`` count as absent); ``prompt_optimizer``
not a boolean.

Credits (capability catalogue; 1 credit = 0.005 USD): 768p 6 s = 35,
768p 10 s = 70, 1080p 6 s = 60.  The sandbox holds the credits at submit and
gives them back when the task fails ("failed tasks consume no credits");
``credits_amount`` is the held amount while the task runs, the charge once
``finished`` and 0 once ``failed`` (when PoYo deducts is not documented).
The starting balance is 10 000 credits and is never enforced, unless the
``credits`` knob is set: then the balance is reset to it and a submit that
costs more than what is left answers 400 "Insufficient credits" (PoYo
documents no 402).

Callbacks: when a task with ``callback_url`` becomes ``finished`` or
``failed``, the status response (``{"code": 200, "data": {...}}``) is POSTed
there with headers ``x-webhook-timestamp`` (Unix seconds) and
``x-webhook-signature``.  PoYo does not document the signing algorithm; the
sandbox's choice is ARBITRARY: the lowercase hex HMAC-SHA256, keyed with the
``webhook_secret`` knob (random per sandbox unless set), of
``timestamp + "." + raw_body``.  A non-2xx answer (or no answer) is retried
after each of ``callback_retry_delays``; retries of one delivery reuse its
timestamp and signature.  Since the docs say duplicates happen, the knob
``duplicate_callbacks`` (default 0) sends that many extra, complete
deliveries (fresh timestamp and signature each) after the first one.

Input image: when ``start_image_url`` is given, the sandbox fetches it
(timeout ``image_fetch_timeout``); if it cannot be fetched (network error,
non-2xx) or is not an image (PNG, JPEG, GIF, WebP or BMP magic bytes; at
most 20 MB -- an arbitrary cap) the task fails with an ``error_message``.

Prompt markers (anywhere in ``input.prompt``; keyword case-insensitive):

* ``[fail]`` -- the task fails with ``error_message`` "Content moderation failed";
* ``[fail:TEXT]`` -- the task fails with ``error_message`` TEXT;
* ``[http:STATUS]`` -- the submit itself answers HTTP STATUS (400-599) with
  the error body (429 adds ``Retry-After: 1``); no task is made;
* ``[seconds:N]`` -- this task's generation time is N seconds;
* ``[hang]`` -- the task is created, then the submit handler sleeps
  ``hang_seconds`` before answering (client read timeouts).

Knobs: ``common.COMMON_KNOBS`` except ``balance`` (PoYo counts credits):
``generation_seconds``, ``result_ttl``, ``api_keys``, ``fail_rate``,
``rate_limit_every`` (429 + ``Retry-After: 1``), ``error_5xx_every`` (502 here,
a status PoYo documents, instead of the base's 503), ``latency_ms``,
``callback_retry_delays``, ``callback_timeout``, ``hang_seconds``,
``image_fetch_timeout``, ``public_origin``; plus ``credits``,
``duplicate_callbacks`` and ``webhook_secret``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import random
import re
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from .common import (
    COMMON_KNOBS,
    SAMPLE_MP4,
    ApiRequest,
    Knob,
    KnobError,
    Response,
    SandboxServer,
    json_dumps,
    json_response,
    register_sandbox,
    with_defaults,
)

__all__ = [
    "PoyoSandbox",
    "credits_for",
    "credits_to_usd",
    "sign_webhook",
    "sniff_image",
]

DEFAULT_API_KEY = "sk-sandbox-poyo"
MODEL = "hailuo-2.3"
DURATIONS = (6, 10)
RESOLUTIONS = ("768p", "1080p")
MAX_PROMPT_CHARS = 5000
MAX_IMAGE_BYTES = 20 * 1024 * 1024  # arbitrary: the docs give no limit

#: Capability catalogue prices, in credits.
PRICE_CREDITS: dict[tuple[str, int], int] = {
    ("768p", 6): 35,
    ("768p", 10): 70,
    ("1080p", 6): 60,
}
USD_PER_CREDIT = Decimal("0.005")

#: Invented: the docs do not say what an account starts with.
INITIAL_CREDITS = 10_000
USER_EMAIL = "sandbox@poyo.local"

TOP_LEVEL_KEYS = frozenset({"model", "callback_url", "input"})
INPUT_KEYS = frozenset({"prompt", "duration", "resolution", "start_image_url", "prompt_optimizer"})

#: ``error.type`` per HTTP status; only ``invalid_request_error`` is documented.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_credits_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "upstream_error",
    503: "server_error",
    504: "upstream_error",
}

#: Messages for ``[http:STATUS]`` (the status codes PoYo lists, plus a few).
HTTP_MESSAGES = {
    400: "Invalid request",
    401: "Invalid API key",
    402: "Insufficient credits",
    403: "Forbidden",
    404: "Not found",
    429: "Too many requests",
    500: "Internal server error",
    502: "Bad gateway: service temporarily unavailable",
    503: "Service unavailable",
    504: "Gateway timeout",
}

FAIL_DEFAULT_MESSAGE = "Content moderation failed"
FAIL_RANDOM_MESSAGE = "Video generation failed"

_MARK_FAIL = re.compile(r"\[fail(?::([^\]]*))?\]", re.IGNORECASE)
_MARK_HTTP = re.compile(r"\[http:(\d{3})\]", re.IGNORECASE)
_MARK_SECONDS = re.compile(r"\[seconds:(\d+(?:\.\d+)?)\]", re.IGNORECASE)
_MARK_HANG = re.compile(r"\[hang\]", re.IGNORECASE)

_TASK_ID = re.compile(r"task-unified-\d+-[a-z0-9]{8}")
_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"

FINAL_STATES = ("finished", "failed")


def credits_for(resolution: str, duration: int) -> int:
    """Credits of one hailuo-2.3 task (capability catalogue)."""
    return PRICE_CREDITS[(resolution, duration)]


def credits_to_usd(credits: int) -> Decimal:
    """1 credit = 0.005 USD."""
    return USD_PER_CREDIT * credits


def sign_webhook(secret: str, timestamp: str, body: bytes) -> str:
    """The sandbox's (arbitrary, undocumented by PoYo) webhook signature.

    Lowercase hex of HMAC-SHA256(secret, ``timestamp + "." + body``).
    """
    msg = timestamp.encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), msg, hashlib.sha256).hexdigest()


def iso_time(ts: float) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` in UTC, without a zone (as the docs' examples)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))


def new_task_id(now: float) -> str:
    """``task-unified-<unix seconds>-<8 lowercase alphanumerics>`` (the docs' example)."""
    suffix = "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))
    return f"task-unified-{int(now)}-{suffix}"


# --------------------------------------------------------------------------
# Knob parsers (local: PoYo-specific knobs)
# --------------------------------------------------------------------------


def _optional_credits(value: Any) -> int | None:
    if value is None or value == "" or (isinstance(value, str) and value.lower() in {"none", "null"}):
        return None
    if isinstance(value, bool):
        raise KnobError("expected an integer, got a boolean")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise KnobError(f"expected an integer, got {value!r}") from None
    if not isinstance(value, (int, float)) or float(value) != int(value):
        raise KnobError(f"expected an integer, got {value!r}")
    if value < 0:
        raise KnobError("must be >= 0")
    return int(value)


def _count(value: Any) -> int:
    parsed = _optional_credits(value)
    if parsed is None:
        raise KnobError("expected an integer >= 0")
    return parsed


def _optional_secret(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise KnobError("expected a string")
    return value


def _knob_specs() -> dict[str, Knob]:
    specs = with_defaults(COMMON_KNOBS, api_keys=[DEFAULT_API_KEY])
    specs.pop("balance", None)  # PoYo counts credits, see "credits"
    specs["credits"] = Knob(
        "credits", None, _optional_credits,
        "credit balance; when set, resets the balance and refuses (400) submits that cost more than is left",
    )
    specs["duplicate_callbacks"] = Knob(
        "duplicate_callbacks", 0, _count, "extra duplicate deliveries of each callback (the docs say duplicates happen)",
    )
    specs["webhook_secret"] = Knob(
        "webhook_secret", None, _optional_secret, "HMAC key of x-webhook-signature (default: random per sandbox)",
    )
    return specs


# --------------------------------------------------------------------------
# Input image
# --------------------------------------------------------------------------


def sniff_image(data: bytes) -> str | None:
    """Return ``png``/``jpeg``/``gif``/``webp``/``bmp`` from magic bytes, else None."""
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


def fetch_image(url: str, timeout: float) -> tuple[str | None, dict[str, Any]]:
    """Fetch ``start_image_url``; return ``(error_message or None, info)``."""
    info: dict[str, Any] = {"url": url}
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "poyo-sandbox/1 (image check)"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (sandbox)
            info["http_status"] = resp.status
            info["content_type"] = resp.headers.get("Content-Type")
            data = resp.read(MAX_IMAGE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        info["http_status"] = exc.code
        exc.close()
        return f"Failed to download start_image_url: HTTP {exc.code}", info
    except Exception as exc:  # refused, timeout, DNS, bad URL...
        info["error"] = f"{type(exc).__name__}: {exc}"
        return "Failed to download start_image_url: the URL is not reachable", info
    info["bytes"] = len(data)
    if len(data) > MAX_IMAGE_BYTES:
        return "start_image_url is too large", info
    fmt = sniff_image(data)
    info["format"] = fmt
    if fmt is None:
        return "start_image_url is not a valid image", info
    return None, info


# --------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------


@dataclass
class PoyoTask:
    """One accepted generation task and its simulated timeline."""

    task_id: str
    prompt: str
    duration: int
    resolution: str
    prompt_optimizer: bool | None
    start_image_url: str | None
    callback_url: str | None
    api_key: str
    price: int
    created: float
    generation_seconds: float
    planned_fail: str | None = None
    image_check: str = "n/a"  # n/a | pending | ok | failed
    image_info: dict[str, Any] = field(default_factory=dict)
    image_fail: str | None = None
    image_done_at: float | None = None
    status: str = "not_started"
    progress: int = 0
    completed: float | None = None
    error_message: str | None = None
    result_url: str | None = None
    result_expires: int | None = None
    callback_attempts: list[dict] = field(default_factory=list)

    @property
    def credits_amount(self) -> int:
        return 0 if self.status == "failed" else self.price

    def status_data(self) -> dict[str, Any]:
        """``data`` of ``GET /api/generate/status/{task_id}`` (and of callbacks)."""
        files = [{"file_url": self.result_url, "file_type": "video"}] if self.status == "finished" else []
        return {
            "task_id": self.task_id,
            "status": self.status,
            "progress": self.progress,
            "files": files,
            "created_time": iso_time(self.created),
            "error_message": self.error_message if self.status == "failed" else None,
            "credits_amount": self.credits_amount,
            "finished_time": iso_time(self.completed) if self.completed is not None else None,
        }

    def snapshot(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "model": MODEL,
            "prompt": self.prompt,
            "duration": self.duration,
            "resolution": self.resolution,
            "prompt_optimizer": self.prompt_optimizer,
            "start_image_url": self.start_image_url,
            "image_check": self.image_check,
            "image_info": dict(self.image_info),
            "callback_url": self.callback_url,
            "api_key": self.api_key,
            "price_credits": self.price,
            "price_usd": float(credits_to_usd(self.price)),
            "created": self.created,
            "generation_seconds": self.generation_seconds,
            "status": self.status,
            "result_url": self.result_url,
            "result_expires": self.result_expires,
            "callback_attempts": [dict(a) for a in self.callback_attempts],
            "data": self.status_data(),
        }


def _is_http_url(value: Any) -> bool:
    if not isinstance(value, str) or not value.strip():
        return False
    parts = urllib.parse.urlsplit(value.strip())
    return parts.scheme in ("http", "https") and bool(parts.hostname)


class _Refused(Exception):
    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None, type_: str | None = None):
        super().__init__(message)
        self.status, self.message, self.headers, self.type = status, message, dict(headers or {}), type_


def _invalid(message: str) -> _Refused:
    return _Refused(400, message)


# --------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------


@register_sandbox("poyo")
class PoyoSandbox(SandboxServer):
    """The PoYo sandbox server (see the module docstring for the protocol).

    State (tasks, credits) lives on the instance and is guarded by
    ``self.lock``; the ticker thread finalises tasks on time and fires
    callbacks even when nobody polls.
    """

    api_prefix = ""  # the API lives at the origin's /api/..., like https://api.poyo.ai
    knob_specs = _knob_specs()

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **knobs: Any):
        super().__init__(host, port, **knobs)
        self._tasks: dict[str, PoyoTask] = {}
        self._credits = self._starting_credits()
        if self.knobs["webhook_secret"] is None:
            self.knobs.update({"webhook_secret": self._random_secret()})

    # ---- state helpers ---------------------------------------------------

    @staticmethod
    def _random_secret() -> str:
        return "whsec_" + secrets.token_hex(16)

    @property
    def webhook_secret(self) -> str:
        return self.knobs["webhook_secret"]

    @property
    def credits(self) -> int:
        with self.lock:
            return self._credits

    def _starting_credits(self) -> int:
        knob = self.knobs["credits"]
        return INITIAL_CREDITS if knob is None else int(knob)

    def on_knobs_changed(self, changed: Mapping[str, Any]) -> None:
        if changed.get("credits") is not None:
            self._credits = int(changed["credits"])
        if "webhook_secret" in changed and changed["webhook_secret"] is None:
            self.knobs.update({"webhook_secret": self._random_secret()})

    def reset_state(self) -> None:
        self._tasks.clear()
        self._credits = self._starting_credits()

    def tasks_snapshot(self) -> list[dict]:
        now = time.time()
        jobs = []
        with self.lock:
            for task in self._tasks.values():
                jobs.append(self._advance(task, now))
            out = [t.snapshot() for t in self._tasks.values()]
        self._send_callbacks(jobs)
        return out

    def tick(self, now: float) -> None:
        jobs = []
        with self.lock:
            for task in self._tasks.values():
                if task.status not in FINAL_STATES:
                    jobs.append(self._advance(task, now))
        self._send_callbacks(jobs)

    def resolve_file(self, name: str) -> Path | None:
        task_id = name.removesuffix(".mp4")
        if task_id == name or not _TASK_ID.fullmatch(task_id):
            return None
        with self.lock:
            task = self._tasks.get(task_id)
            if task is None or task.status != "finished":
                return None
        return SAMPLE_MP4

    def _advance(self, task: PoyoTask, now: float) -> PoyoTask | None:
        """Move ``task`` along its timeline (call under ``self.lock``).

        ``not_started`` for the first 15 % of the generation time (at least
        0.5 s), then ``running`` with ``progress`` rising linearly from 1 to
        99, then final once the generation time has passed and the input
        image has been checked.  A failed image check ends the task as soon
        as it is known (after the ``not_started`` phase).  Returns the task
        when it just became final and has a ``callback_url``.
        """
        if task.status in FINAL_STATES:
            return None
        gen = task.generation_seconds
        elapsed = now - task.created
        queued_for = min(gen, max(0.5, 0.15 * gen))
        if elapsed < queued_for:
            task.status, task.progress = "not_started", 0
            return None
        image_failed = task.image_check == "failed"
        if not image_failed and (elapsed < gen or task.image_check == "pending"):
            task.status = "running"
            span = gen - queued_for
            fraction = (elapsed - queued_for) / span if span > 0 else 1.0
            task.progress = max(task.progress, min(99, 1 + int(98 * fraction)))
            return None
        if image_failed:
            task.completed = max(task.created + queued_for, task.image_done_at or 0.0)
        else:
            task.completed = max(task.created + gen, task.image_done_at or 0.0)
        failure = task.image_fail or task.planned_fail
        if failure:
            task.status = "failed"
            task.error_message = failure
            self._credits += task.price  # failed tasks consume no credits: release the hold
        else:
            task.status = "finished"
            task.progress = 100
            task.result_expires = math.ceil(task.completed + self.knobs["result_ttl"])
            task.result_url = self.signed_file_url(f"{task.task_id}.mp4", task.result_expires)
        return task if task.callback_url else None

    # ---- callbacks ---------------------------------------------------------

    def _send_callbacks(self, tasks: list[PoyoTask | None]) -> None:
        """POST the final status response to ``callback_url``, signed, with duplicates."""
        for task in tasks:
            if task is None:
                continue
            with self.lock:
                payload = {"code": 200, "data": task.status_data()}
            deliveries = 1 + int(self.knobs["duplicate_callbacks"])
            threading.Thread(
                target=self._deliver_all, args=(task, payload, deliveries), name="poyo-callbacks", daemon=True
            ).start()

    def _deliver_all(self, task: PoyoTask, payload: dict, deliveries: int) -> None:
        body = json_dumps(payload)  # the exact bytes CallbackSender sends
        for n in range(1, deliveries + 1):
            if self.stop_event.is_set():
                return
            timestamp = str(int(time.time()))
            signature = sign_webhook(self.webhook_secret, timestamp, body)

            def on_attempt(record: dict, n: int = n) -> None:
                with self.lock:
                    task.callback_attempts.append(
                        {"delivery": n, **{k: record[k] for k in ("attempt", "status", "error", "ok")}}
                    )

            thread = self.callbacks.send(
                task.callback_url or "",
                payload,
                delays=self.knobs["callback_retry_delays"],
                timeout=self.knobs["callback_timeout"],
                context={
                    "task_id": task.task_id,
                    "delivery": n,
                    "duplicate": n > 1,
                    "webhook_timestamp": timestamp,
                    "webhook_signature": signature,
                },
                headers={"x-webhook-timestamp": timestamp, "x-webhook-signature": signature},
                ok_statuses=range(200, 300),
                on_attempt=on_attempt,
            )
            thread.join()

    # ---- protocol --------------------------------------------------------

    def error_response(self, status: int, message: str, detail: str = "", headers: Mapping[str, str] | None = None,
                       *, type_: str | None = None) -> Response:
        """PoYo's error body ``{"code": N, "error": {"message", "type"}}``."""
        text = f"{message}: {detail}" if detail and detail != message else message
        err_type = type_ or ERROR_TYPES.get(status, "server_error" if status >= 500 else "invalid_request_error")
        return json_response(status, {"code": status, "error": {"message": text, "type": err_type}}, headers)

    def injected_fault(self) -> Response | None:
        """Like the base, but the ``error_5xx_every`` answer is 502 (a status PoYo lists)."""
        rate_every = self.knobs["rate_limit_every"]
        err_every = self.knobs["error_5xx_every"]
        with self.lock:
            self._api_counter += 1
            n = self._api_counter
        if rate_every and n % rate_every == 0:
            return self.error_response(429, "Too many requests", "rate limit exceeded (sandbox rate_limit_every)",
                                       {"Retry-After": "1"})
        if err_every and n % err_every == 0:
            return self.error_response(502, "Bad gateway", "service temporarily unavailable (sandbox error_5xx_every)")
        return None

    def _authorised_key(self, request: ApiRequest) -> str | None:
        """``Authorization: Bearer YOUR_API_KEY``."""
        header = request.header("Authorization") or ""
        scheme, _, key = header.strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return None
        return key if key in self.knobs["api_keys"] else None

    def handle_api(self, request: ApiRequest) -> Response:
        """Route a request after authentication."""
        key = self._authorised_key(request)
        if key is None:
            return self.error_response(401, "Invalid API key", "missing or invalid Authorization: Bearer key")
        path = request.path.rstrip("/") or "/"
        try:
            if path == "/api/generate/submit":
                if request.method != "POST":
                    return self.error_response(405, "Method not allowed", "use POST", {"Allow": "POST"})
                return self._submit(request, key)
            if path.startswith("/api/generate/status/"):
                if request.method not in ("GET", "HEAD"):
                    return self.error_response(405, "Method not allowed", "use GET", {"Allow": "GET"})
                task_id = urllib.parse.unquote(path[len("/api/generate/status/"):])
                return self._status(task_id, key)
            if path == "/api/user/info":
                if request.method not in ("GET", "HEAD"):
                    return self.error_response(405, "Method not allowed", "use GET", {"Allow": "GET"})
                return json_response(200, {"code": 200, "data": {"credits": self.credits, "email": USER_EMAIL}})
        except _Refused as exc:
            return self.error_response(exc.status, exc.message, "", exc.headers, type_=exc.type)
        return self.error_response(404, "Not found", f"no endpoint {request.method} {request.path}")

    def _status(self, task_id: str, key: str) -> Response:
        """``GET /api/generate/status/{task_id}``."""
        with self.lock:
            task = self._tasks.get(task_id)
            if task is None:
                raise _Refused(404, f"Task not found: {task_id}")
            if task.api_key != key:
                raise _Refused(403, "Task belongs to another user")
            job = self._advance(task, time.time())
            body = {"code": 200, "data": task.status_data()}
        self._send_callbacks([job])
        return json_response(200, body)

    def _validate(self, body: Any) -> dict[str, Any]:
        """Check a submit body against the documented rules; raise 400 on a refusal."""
        if not isinstance(body, dict):
            raise _invalid("Invalid request body: must be a JSON object")
        unknown = sorted(set(body) - TOP_LEVEL_KEYS)
        if unknown:
            raise _invalid(f"Invalid parameter: unknown field(s) {', '.join(unknown)}")
        model = body.get("model")
        if model is None or model == "":
            raise _invalid("Missing required parameter: model")
        if model != MODEL:
            raise _invalid(f"Invalid parameter: model {model!r} is not supported (available: {MODEL})")
        callback_url = body.get("callback_url")
        if callback_url == "":
            callback_url = None
        if callback_url is not None and not _is_http_url(callback_url):
            raise _invalid("Invalid parameter: callback_url must be an http(s) URL")

        inp = body.get("input")
        if inp is None:
            raise _invalid("Missing required parameter: input")
        if not isinstance(inp, dict):
            raise _invalid("Invalid parameter: input must be an object")
        if inp.get("end_image_url") not in (None, ""):
            raise _invalid("Invalid parameter: end_image_url is not supported by hailuo-2.3")
        unknown = sorted(set(inp) - INPUT_KEYS - {"end_image_url"})
        if unknown:
            raise _invalid(f"Invalid parameter: unknown input field(s) {', '.join(unknown)}")

        prompt = inp.get("prompt")
        if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
            raise _invalid("Missing required parameter: prompt")
        if not isinstance(prompt, str):
            raise _invalid("Invalid parameter: prompt must be a string")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise _invalid(f"Invalid parameter: prompt exceeds {MAX_PROMPT_CHARS} characters ({len(prompt)})")

        duration = inp.get("duration", 6)
        if duration is None:
            duration = 6
        if isinstance(duration, bool) or not isinstance(duration, int) or duration not in DURATIONS:
            raise _invalid(f"Invalid parameter: duration must be 6 or 10, got {duration!r}")
        resolution = inp.get("resolution", "768p")
        if resolution is None:
            resolution = "768p"
        if resolution not in RESOLUTIONS:
            raise _invalid(f"Invalid parameter: resolution must be 768p or 1080p, got {resolution!r}")
        if resolution == "1080p" and duration != 6:
            raise _invalid("Invalid parameter: 1080p only supports duration=6")

        start_image_url = inp.get("start_image_url")
        if start_image_url == "":
            start_image_url = None
        if start_image_url is not None and not _is_http_url(start_image_url):
            raise _invalid("Invalid parameter: start_image_url must be an http(s) URL")
        prompt_optimizer = inp.get("prompt_optimizer")
        if prompt_optimizer is not None and not isinstance(prompt_optimizer, bool):
            raise _invalid("Invalid parameter: prompt_optimizer must be a boolean")
        return {
            "callback_url": callback_url.strip() if callback_url else None,
            "prompt": prompt,
            "duration": duration,
            "resolution": resolution,
            "start_image_url": start_image_url.strip() if start_image_url else None,
            "prompt_optimizer": prompt_optimizer,
        }

    def _submit(self, request: ApiRequest, key: str) -> Response:
        """``POST /api/generate/submit``."""
        ctype = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise _invalid("Invalid request body: Content-Type must be application/json")
        try:
            body = json.loads(request.body.decode("utf-8")) if request.body else None
        except (ValueError, UnicodeDecodeError):
            raise _invalid("Invalid request body: not valid JSON") from None
        v = self._validate(body)
        prompt: str = v["prompt"]

        m = _MARK_HTTP.search(prompt)
        if m and 400 <= int(m.group(1)) <= 599:
            status = int(m.group(1))
            headers = {"Retry-After": "1"} if status == 429 else {}
            raise _Refused(status, f"{HTTP_MESSAGES.get(status, 'Error')} (sandbox marker [http:{status}])", headers)

        planned_fail = None
        m = _MARK_FAIL.search(prompt)
        if m:
            planned_fail = (m.group(1) or "").strip() or FAIL_DEFAULT_MESSAGE
        elif random.random() < self.knobs["fail_rate"]:
            planned_fail = FAIL_RANDOM_MESSAGE
        m = _MARK_SECONDS.search(prompt)
        generation = float(m.group(1)) if m else float(self.knobs["generation_seconds"])

        price = credits_for(v["resolution"], v["duration"])
        now = time.time()
        with self.lock:
            task_id = new_task_id(now)
            while task_id in self._tasks:
                task_id = new_task_id(now)
            if self.knobs["credits"] is not None and price > self._credits:
                raise _Refused(400, f"Insufficient credits: this task needs {price} credits, {self._credits} left",
                               type_="insufficient_credits_error")
            task = PoyoTask(
                task_id=task_id,
                prompt=prompt,
                duration=v["duration"],
                resolution=v["resolution"],
                prompt_optimizer=v["prompt_optimizer"],
                start_image_url=v["start_image_url"],
                callback_url=v["callback_url"],
                api_key=key,
                price=price,
                created=now,
                generation_seconds=generation,
                planned_fail=planned_fail,
                image_check="pending" if v["start_image_url"] else "n/a",
            )
            self._credits -= price  # held; given back if the task fails
            self._tasks[task_id] = task
        self.log.update(request.log_entry, task_id=task_id)
        if task.start_image_url:
            threading.Thread(target=self._check_image, args=(task,), name="poyo-image-check", daemon=True).start()

        if _MARK_HANG.search(prompt):
            self.sleep(self.knobs["hang_seconds"])
        return json_response(
            200, {"code": 200, "data": {"task_id": task_id, "status": "not_started", "created_time": iso_time(now)}}
        )

    def _check_image(self, task: PoyoTask) -> None:
        error, info = fetch_image(task.start_image_url or "", self.knobs["image_fetch_timeout"])
        with self.lock:
            task.image_info = info
            task.image_done_at = time.time()
            if error:
                task.image_check = "failed"
                task.image_fail = error
            else:
                task.image_check = "ok"
