"""qingbo sandbox: a local server speaking qingbo's (QWave API) ``/v1/tasks`` protocol.

Written only from qingbo's documentation: seed ``003`` (the "Hailuo" page of
``https://qingbo.dev``: models table, common and model-specific parameters,
generation modes, submit response), its newer version (models
``minimax-hailuo-2.3`` / ``-fast``, ``aspect_ratio``, ``image2video``, prompt
limit, prices), the "Query Task Status", "Cancel Task", "Task System" and
"Request / Response" pages -- as summarised in ``providers.md``, section
qingbo.  It deliberately shares no code, constants or schemas with
``providers/adapters/``: the adapter is tested against this independent
reading of the same pages.

Routes (base URL ``http://HOST:PORT``, mirroring ``https://qingbo.dev``; newer
pages say ``https://www.qingbo.dev``):

* ``POST /v1/tasks`` -- submit; answers ``{"task_id": "task-wave<unix><hex>",
  "model", "action", "status": "queued", "created_at" (Unix ms), "progress": 0}``.
* ``GET /v1/tasks/{task_id}`` -- the task object ``{task_id, status, action,
  model, progress, created_at, start_time?, completed_at?, error?: {message,
  code}, result?: {videos: [{url, expires_at}]}, urls: {get, cancel}}``.
  Statuses: ``queued`` -> ``processing`` -> ``completed`` | ``failed``, or
  ``queued`` -> ``cancelled``.  ``progress`` is 0 while queued and for
  failed/cancelled, 1-99 while processing, 100 when completed ("Query Task
  Status").  ``completed_at`` only on final states, ``error`` only on
  ``failed`` (code ``task_failed`` unless a marker says otherwise),
  ``result`` only on ``completed``.  ``start_time`` (when processing began)
  appears in one example of the status page and is emitted too.
* ``POST /v1/tasks/{task_id}/cancel`` -- only while ``queued``; answers
  ``{"task_id", "status": "cancelled", "refunded": true, "refunded_quota": N}``
  (the shape of the "Cancel Task" page) and refunds the quota.  Any other
  status answers 400 ``task_not_cancellable``.
* ``GET /files/{task_id}.mp4?expires=&sig=`` -- the result video (signed,
  expiring; 403 ``expired`` afterwards).
* ``GET /_sandbox/quota`` -- sandbox-only: ``{quota, remaining, spent}`` (USD).

A task of another API key answers 404, as for an unknown id ("404 Task or
resource not found -- verify ... that it belongs to your account").
``/v1/tasks/sync`` (synchronous wait mode, "Task System") is not implemented.

Authentication: ``Authorization: Bearer KEY`` (knob ``api_keys``, default
``sk-sandbox-qingbo``), else 401.  Submits need ``Content-Type:
application/json`` ("Request Format").

Errors: the "Request / Response" page gives the task endpoints' error body as
``{"error": {"message": "...", "code": "..."}}`` and the statuses 400, 401,
402, 404, 429, 500, but no list of ``code`` values besides ``task_failed``.
The codes used here are the sandbox's own: ``invalid_request`` (400),
``invalid_api_key`` (401), ``insufficient_quota`` (402), ``not_found`` (404),
``rate_limit_exceeded`` (429, with ``Retry-After``), ``internal_error`` (500),
``service_unavailable`` (503), ``task_not_cancellable`` (400 on cancel).

Validation (400 ``invalid_request``; the message names the rule):

* ``model`` required, one of :data:`MODELS` (exact spelling);
* ``action``: ``generate`` (default) or ``image2video`` (newer page; needs
  ``image_urls``);
* ``prompt``: required non-empty string, at most 2000 characters (newer
  page); it may be omitted only in first/last-frame mode, which the seed's
  "Generation Modes" table lists as ``image_urls + last_frame`` without a
  prompt;
* ``duration``: integer 6 or 10, default 6; T2V-01-Director,
  I2V-01-Director and S2V-01 take 6 only; ``1080p`` takes 6 only;
* ``resolution``: default and allowed set per model (see :data:`MODELS`;
  case-insensitive, the table writes ``768P``, the parameter ``768p``);
* ``aspect_ratio``: ``16:9``, ``9:16`` or ``1:1`` when given;
* ``image_urls``: an array of exactly one image (http(s) URL, ``data:`` URL
  or bare Base64 -- the newer page says "Public URL or Base64");
  I2V-01-Director requires it;
* ``last_frame``: hailuo-02 only, and requires ``image_urls``;
* ``extra``: an object; ``prompt_optimizer`` and ``fast_pretreatment``
  booleans; ``subject_reference`` a non-empty array of ``{"type":
  "character", "image": [url, ...]}`` -- hailuo-2.3 series and S2V-01 only,
  required by S2V-01; other ``extra`` keys are passed through (accepted);
* ``callback_url``: an http(s) URL; ``callback_events``: an array of strings.

Input images (first frame, last frame, character references) are fetched in
the background (timeout ``image_fetch_timeout``); an unreachable URL, a non-2xx
answer or bytes that are not an image (JPEG, PNG, WebP, GIF or BMP by their
signature) fail the task (``task_failed``) once it leaves the queue.  No size
or aspect-ratio rule is documented by qingbo, so none is applied.

Callbacks -- payload and signature NOT FOUND in the docs ("push the result to
your endpoint when the task finishes"): the sandbox POSTs the task object
(the ``GET`` shape) as JSON when the task becomes ``completed``, ``failed``
or ``cancelled``; a non-2xx answer or a connection error is retried after each
of ``callback_retry_delays``.  ``callback_events`` is documented only as
"string[]": the sandbox reads it as a filter on those final statuses
(``"completed"``, ``"task.completed"`` ...; ``"*"`` or an empty array: all);
this is invented.

Quota (knob ``quota``, USD, unset: unlimited; ``balance`` is an alias): setting
it sets the remaining quota (``reset()`` restores it); a task is charged when
it is submitted and refused with 402 if the remaining quota does not cover it;
a cancel refunds it (documented), and so does a failure (assumed: not found
in the docs).  Price per second of output (newer Hailuo page):
``minimax-hailuo-2.3`` 768p 0.05185 / 1080p 0.0765, ``-fast`` 768p 0.02635 /
1080p 0.04505; the sandbox applies the same figures to the older ids
``hailuo-2.3`` / ``hailuo-2.3-fast`` (the newer page is the same page with
renamed ids).  Other models' prices are NOT FOUND: 0.05 USD/s.
``refunded_quota`` is reported in quota units of 500 000 per USD (invented;
the page only shows ``50000`` as an example).

Documentation ambiguities the adapter must tolerate, exposed as knobs:

* ``result.videos[].url`` is a string in the examples but ``string[]``
  ("always an array") in the field list: knob ``url_as_list`` (default true);
* timestamps are "Unix millisecond" in the field list but look like seconds in
  examples: knob ``timestamps_in_seconds`` (default false) for ``created_at``,
  ``start_time``, ``completed_at`` and ``expires_at``, and
  ``expires_at_in_seconds`` (default: follow ``timestamps_in_seconds``) for
  ``expires_at`` alone, whose unit is never stated;
* links last "24 hours" (Hailuo page) or "default 3 days" (status page):
  knob ``result_ttl`` (default 86400 s) sets both ``expires_at`` and the
  signed URL's expiry.

Prompt markers (anywhere in ``prompt``, case-insensitive keyword):

* ``[fail]`` -- the task fails with ``error.code`` ``task_failed``;
* ``[fail:CODE]`` -- the task fails with that ``error.code``;
* ``[http:STATUS]`` -- the submit itself answers HTTP STATUS (400-599) with the
  error body (429 adds ``Retry-After: 1``); no task is made, nothing charged;
* ``[seconds:N]`` -- this task spends N seconds in ``processing``;
* ``[queue:N]`` -- this task spends N seconds in ``queued``;
* ``[hang]`` -- the task is created, then the submit sleeps ``hang_seconds``.

Knobs: the common ones (``generation_seconds`` -- here the time spent in
``processing`` --, ``result_ttl``, ``api_keys``, ``fail_rate``,
``rate_limit_every``, ``error_5xx_every``, ``latency_ms``,
``callback_retry_delays``, ``callback_timeout``, ``hang_seconds``,
``image_fetch_timeout``, ``public_origin``) plus ``queue_seconds``,
``url_as_list``, ``timestamps_in_seconds``, ``expires_at_in_seconds``,
``quota`` (and its alias ``balance``).
"""

from __future__ import annotations

import base64
import binascii
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
    SandboxRequestHandler,
    SandboxServer,
    json_response,
    register_sandbox,
    with_defaults,
)

__all__ = ["MODELS", "QingboSandbox", "price_for", "sniff_image"]

DEFAULT_API_KEY = "sk-sandbox-qingbo"

# --------------------------------------------------------------------------
# The documented rules
# --------------------------------------------------------------------------

#: "Pricing" of the newer Hailuo page, USD per second of output.
_PRICE_23 = {"768p": Decimal("0.05185"), "1080p": Decimal("0.0765")}
_PRICE_23_FAST = {"768p": Decimal("0.02635"), "1080p": Decimal("0.04505")}
#: Not documented for the other models.
FALLBACK_USD_PER_SECOND = Decimal("0.05")
#: Invented unit for ``refunded_quota`` (the page shows only an example integer).
QUOTA_UNITS_PER_USD = 500_000


@dataclass(frozen=True)
class ModelRule:
    """What one model accepts, per the "Available Models" tables."""

    default_resolution: str
    resolutions: tuple[str, ...]
    durations: tuple[int, ...]
    subject_reference: str  # "no" | "optional" | "required"
    needs_image: bool = False
    last_frame: bool = False
    usd_per_second: Mapping[str, Decimal] | None = None


#: Seed "Available Models" + newer page "Available Models".  Readings where the
#: docs leave the resolution set open: hailuo-2.3-fast and hailuo-02 take
#: 768p/1080p like hailuo-2.3 (the only "resolution options" list given);
#: the 01 models (6 s only) take their table default and 720p/768p, not 1080p.
MODELS: dict[str, ModelRule] = {
    "hailuo-2.3": ModelRule("768p", ("768p", "1080p"), (6, 10), "optional", usd_per_second=_PRICE_23),
    "hailuo-2.3-fast": ModelRule("768p", ("768p", "1080p"), (6, 10), "optional", usd_per_second=_PRICE_23_FAST),
    "hailuo-02": ModelRule("768p", ("768p", "1080p"), (6, 10), "no", last_frame=True),
    "T2V-01-Director": ModelRule("768p", ("720p", "768p"), (6,), "no"),
    "I2V-01-Director": ModelRule("720p", ("720p", "768p"), (6,), "no", needs_image=True),
    "S2V-01": ModelRule("720p", ("720p", "768p"), (6,), "required"),
    "minimax-hailuo-2.3": ModelRule("768p", ("768p", "1080p"), (6, 10), "optional", usd_per_second=_PRICE_23),
    "minimax-hailuo-2.3-fast": ModelRule("768p", ("768p", "1080p"), (6, 10), "optional", usd_per_second=_PRICE_23_FAST),
}

DURATIONS = (6, 10)
DEFAULT_DURATION = 6
MAX_1080P_DURATION = 6
ACTIONS = ("generate", "image2video")
ASPECT_RATIOS = ("16:9", "9:16", "1:1")
MAX_PROMPT_CHARS = 2000
MAX_IMAGE_BYTES = 20 * 1024 * 1024  # a fetch limit, not a documented rule

FINAL_STATUSES = ("completed", "failed", "cancelled")

_ERROR_CODES = {
    400: "invalid_request",
    401: "invalid_api_key",
    402: "insufficient_quota",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    429: "rate_limit_exceeded",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}

_HTTP_MESSAGES = {
    400: "Invalid request parameters",
    401: "Authentication failed",
    402: "Insufficient balance",
    404: "Task or resource not found",
    429: "Rate limit exceeded",
    500: "Internal server error",
}

_MARK_FAIL = re.compile(r"\[fail(?::([A-Za-z0-9_.\-]+))?\]", re.IGNORECASE)
_MARK_HTTP = re.compile(r"\[http:(\d{3})\]", re.IGNORECASE)
_MARK_SECONDS = re.compile(r"\[seconds:(\d+(?:\.\d+)?)\]", re.IGNORECASE)
_MARK_QUEUE = re.compile(r"\[queue:(\d+(?:\.\d+)?)\]", re.IGNORECASE)
_MARK_HANG = re.compile(r"\[hang\]", re.IGNORECASE)


def price_for(model: str, resolution: str, duration: int) -> Decimal:
    """USD price of one task: per-second rate of (model, resolution) x duration."""
    rates = MODELS[model].usd_per_second or {}
    return rates.get(resolution, FALLBACK_USD_PER_SECOND) * int(duration)


# --------------------------------------------------------------------------
# Knobs
# --------------------------------------------------------------------------

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise KnobError(f"expected a boolean (true/false), got {value!r}")


def _is_unset(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in {"", "none", "null", "auto"})


def _parse_optional_bool(value: Any) -> bool | None:
    return None if _is_unset(value) else _parse_bool(value)


_non_negative = COMMON_KNOBS["generation_seconds"].parse


def _parse_quota(value: Any) -> float | None:
    return None if _is_unset(value) else _non_negative(value)


def _knob_specs() -> dict[str, Knob]:
    specs = with_defaults(COMMON_KNOBS, api_keys=[DEFAULT_API_KEY], result_ttl=86400.0, image_fetch_timeout=3.0)
    specs["generation_seconds"] = Knob(
        "generation_seconds", 8.0, _non_negative, "seconds a task spends in processing (after queue_seconds in queued)"
    )
    specs["balance"] = Knob("balance", None, _parse_quota, "alias of quota")
    for knob in [
        Knob("queue_seconds", 1.0, _non_negative, "seconds a task spends in queued (cancellable) before processing"),
        Knob("url_as_list", True, _parse_bool, "result.videos[].url as a list of strings (false: a plain string)"),
        Knob("timestamps_in_seconds", False, _parse_bool, "created_at/start_time/completed_at/expires_at in Unix seconds (false: ms)"),
        Knob("expires_at_in_seconds", None, _parse_optional_bool, "unit of expires_at alone (unset: follow timestamps_in_seconds)"),
        Knob("quota", None, _parse_quota, "account quota in USD (unset: unlimited); setting it sets the remaining quota; submits beyond it answer 402"),
    ]:
        specs[knob.name] = knob
    return specs


# --------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------


def sniff_image(data: bytes) -> str | None:
    """The image format named by ``data``'s signature, or None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if data[:2] == b"BM" and len(data) >= 26:
        return "bmp"
    return None


_B64_CHARS = re.compile(r"[A-Za-z0-9+/=\s_-]+")
_BARE_B64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def _decode_base64(text: str) -> bytes | None:
    text = re.sub(r"\s+", "", text)
    if not text or not _B64_CHARS.fullmatch(text):
        return None
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _image_kind(value: Any) -> str | None:
    """``"url"``, ``"data"`` (data: URL) or ``"base64"`` for an acceptable image reference, else None."""
    if not isinstance(value, str) or not value.strip():
        return None
    v = value.strip()
    parts = urllib.parse.urlsplit(v)
    if parts.scheme in ("http", "https") and parts.hostname:
        return "url"
    if v[:5].lower() == "data:":
        header, sep, payload = v[5:].partition(",")
        if sep and header.lower().endswith(";base64") and _decode_base64(payload) is not None:
            return "data"
        return None
    if len(v) >= 16 and len(v) % 4 == 0 and _BARE_B64.fullmatch(v) and _decode_base64(v):
        return "base64"
    return None


def load_image(ref: str, timeout: float) -> tuple[str | None, dict[str, Any]]:
    """Fetch or decode one image reference; return ``(error message or None, info)``."""
    info: dict[str, Any] = {}
    kind = _image_kind(ref)
    if kind == "data":
        data = _decode_base64(ref.strip()[5:].partition(",")[2]) or b""
    elif kind == "base64":
        data = _decode_base64(ref) or b""
    else:
        info["url"] = ref
        try:
            req = urllib.request.Request(ref, headers={"User-Agent": "qingbo-sandbox/1 (image fetch)"})
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (sandbox)
                info["http_status"] = resp.status
                info["content_type"] = resp.headers.get("Content-Type")
                data = resp.read(MAX_IMAGE_BYTES + 1)
        except urllib.error.HTTPError as exc:
            info["http_status"] = exc.code
            exc.close()
            return f"cannot fetch image {ref}: HTTP {exc.code}", info
        except Exception as exc:
            info["error"] = f"{type(exc).__name__}: {exc}"
            return f"cannot fetch image {ref}: {info['error']}", info
    info["bytes"] = len(data)
    if len(data) > MAX_IMAGE_BYTES:
        return "image is larger than the sandbox's 20 MB fetch limit", info
    fmt = sniff_image(data)
    info["format"] = fmt
    if fmt is None:
        where = ref if kind == "url" else f"{kind} image"
        return f"{where} is not an image (content type {info.get('content_type') or 'unknown'})", info
    return None, info


# --------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------


@dataclass
class QingboTask:
    """One accepted task and its simulated timeline."""

    task_id: str
    model: str
    action: str
    prompt: str
    duration: int
    resolution: str
    aspect_ratio: str | None
    images: list[tuple[str, str]]  # (field, reference)
    extra: dict[str, Any]
    callback_url: str | None
    callback_events: list[str] | None
    api_key: str
    price: Decimal
    created: float
    queue_seconds: float
    generation_seconds: float
    planned_fail: tuple[str, str] | None = None
    image_check: str = "n/a"  # n/a | pending | ok | failed
    image_error: str | None = None
    image_info: list[dict[str, Any]] = field(default_factory=list)
    image_done_at: float | None = None
    status: str = "queued"
    started: float | None = None
    completed: float | None = None
    error_code: str | None = None
    error_message: str | None = None
    result_url: str | None = None
    result_expires: int | None = None
    charged: bool = True
    refunded: bool = False
    callback_attempts: list[dict] = field(default_factory=list)

    def wants_callback(self) -> bool:
        if not self.callback_url or self.status not in FINAL_STATUSES:
            return False
        if not self.callback_events:
            return True
        wanted = set()
        for event in self.callback_events:
            e = event.strip().lower()
            for prefix in ("task.", "task_"):
                if e.startswith(prefix):
                    e = e[len(prefix):]
            wanted.add(e)
        return bool(wanted & {"*", "all", self.status})


def _is_http_url(value: Any) -> bool:
    if not isinstance(value, str) or not value.strip():
        return False
    parts = urllib.parse.urlsplit(value.strip())
    return parts.scheme in ("http", "https") and bool(parts.hostname)


class _Refused(Exception):
    def __init__(self, status: int, message: str, code: str | None = None, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, dict(headers or {})
        self.code = code or _ERROR_CODES.get(status, "error")


def _bad(message: str) -> _Refused:
    return _Refused(400, message, "invalid_request")


class _QingboRequestHandler(SandboxRequestHandler):
    """Adds ``GET /_sandbox/quota`` to the shared control routes."""

    def _control(self, path: str, query: dict, body: bytes) -> Response:
        if path.strip("/") == "_sandbox/quota" and self.command in ("GET", "HEAD"):
            return json_response(200, self.server.quota_snapshot())
        return super()._control(path, query, body)


# --------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------


@register_sandbox("qingbo")
class QingboSandbox(SandboxServer):
    """The qingbo sandbox server (see the module docstring for the protocol).

    State lives on the instance and is guarded by ``self.lock``; the ticker
    thread moves tasks along and fires callbacks even when nobody polls.
    """

    api_prefix = ""
    knob_specs = _knob_specs()

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **knobs: Any):
        super().__init__(host, port, **knobs)
        self.RequestHandlerClass = _QingboRequestHandler
        self._tasks: dict[str, QingboTask] = {}
        start = self.knobs["quota"] if self.knobs["quota"] is not None else self.knobs["balance"]
        self.knobs.update({"quota": start, "balance": start})
        self._quota_left = self._starting_quota()
        self._spent = Decimal(0)

    # ---- quota -----------------------------------------------------------

    def _starting_quota(self) -> Decimal | None:
        knob = self.knobs["quota"]
        return None if knob is None else Decimal(str(knob))

    def on_knobs_changed(self, changed: Mapping[str, Any]) -> None:
        if "quota" in changed or "balance" in changed:
            value = changed["quota"] if "quota" in changed else changed["balance"]
            self.knobs.update({"quota": value, "balance": value})
            self._quota_left = None if value is None else Decimal(str(value))

    def quota_snapshot(self) -> dict[str, Any]:
        with self.lock:
            left = self._quota_left
            return {
                "quota": self.knobs["quota"],
                "remaining": None if left is None else float(left),
                "spent": float(self._spent),
            }

    def _charge(self, task: QingboTask) -> None:
        self._spent += task.price
        if self._quota_left is not None:
            self._quota_left -= task.price

    def _refund(self, task: QingboTask) -> None:
        if task.refunded:
            return
        task.refunded = True
        self._spent -= task.price
        if self._quota_left is not None:
            self._quota_left += task.price

    # ---- state -----------------------------------------------------------

    def reset_state(self) -> None:
        self._tasks.clear()
        self._spent = Decimal(0)
        self._quota_left = self._starting_quota()

    def tasks_snapshot(self) -> list[dict]:
        now = time.time()
        jobs = []
        with self.lock:
            for task in self._tasks.values():
                jobs.append(self._advance(task, now))
            out = [self._snapshot(t, now) for t in self._tasks.values()]
        self._send_callbacks(jobs)
        return out

    def _snapshot(self, task: QingboTask, now: float) -> dict[str, Any]:
        return {
            "task_id": task.task_id,
            "model": task.model,
            "action": task.action,
            "prompt": task.prompt,
            "duration": task.duration,
            "resolution": task.resolution,
            "aspect_ratio": task.aspect_ratio,
            "images": [list(i) for i in task.images],
            "extra": task.extra,
            "callback_url": task.callback_url,
            "callback_events": task.callback_events,
            "api_key": task.api_key,
            "price": float(task.price),
            "refunded": task.refunded,
            "created": task.created,
            "queue_seconds": task.queue_seconds,
            "generation_seconds": task.generation_seconds,
            "status": task.status,
            "image_check": task.image_check,
            "image_error": task.image_error,
            "image_info": [dict(i) for i in task.image_info],
            "result_url": task.result_url,
            "result_expires": task.result_expires,
            "callback_attempts": [dict(a) for a in task.callback_attempts],
            "object": self._task_object(task, now),
        }

    def tick(self, now: float) -> None:
        jobs = []
        with self.lock:
            for task in self._tasks.values():
                if task.status not in FINAL_STATUSES:
                    jobs.append(self._advance(task, now))
        self._send_callbacks(jobs)

    def resolve_file(self, name: str) -> Path | None:
        m = re.fullmatch(r"(task-wave[0-9a-f]+)\.mp4", name)
        if not m:
            return None
        with self.lock:
            task = self._tasks.get(m.group(1))
            if task is None or task.status != "completed":
                return None
        return SAMPLE_MP4

    def _advance(self, task: QingboTask, now: float) -> QingboTask | None:
        """Move ``task`` along its timeline (under ``self.lock``).

        ``queued`` for ``queue_seconds``, then ``processing`` for
        ``generation_seconds`` (longer while an input image is still being
        fetched), then ``completed`` or ``failed``.  A failed image check
        fails the task as soon as it leaves the queue.  Returns the task when
        it just became final and a callback is due.
        """
        if task.status in FINAL_STATUSES:
            return None
        queue_end = task.created + task.queue_seconds
        if now < queue_end:
            return None
        if task.started is None:
            task.started = queue_end
        task.status = "processing"
        if task.image_check == "failed":
            self._finish_failed(task, max(queue_end, task.image_done_at or 0.0), "task_failed", task.image_error or "invalid image")
            return task if task.wants_callback() else None
        due = queue_end + task.generation_seconds
        if now < due or task.image_check == "pending":
            return None
        finished = max(due, task.image_done_at or 0.0)
        if task.planned_fail:
            self._finish_failed(task, finished, *task.planned_fail)
        else:
            task.status = "completed"
            task.completed = finished
            task.result_expires = math.ceil(finished + self.knobs["result_ttl"])
            task.result_url = self.signed_file_url(f"{task.task_id}.mp4", task.result_expires)
        return task if task.wants_callback() else None

    def _finish_failed(self, task: QingboTask, when: float, code: str, message: str) -> None:
        task.status = "failed"
        task.completed = when
        task.error_code, task.error_message = code, message
        self._refund(task)  # assumed: failed tasks are not billed

    def _progress(self, task: QingboTask, now: float) -> int:
        if task.status == "completed":
            return 100
        if task.status != "processing" or task.started is None:
            return 0
        if task.generation_seconds <= 0:
            return 99
        fraction = (now - task.started) / task.generation_seconds
        return max(1, min(99, int(1 + 98 * fraction)))

    def _task_object(self, task: QingboTask, now: float) -> dict[str, Any]:
        """The ``GET /v1/tasks/{task_id}`` body ("Query Task Status" > "Response Fields")."""
        in_seconds = self.knobs["timestamps_in_seconds"]
        exp_in_seconds = self.knobs["expires_at_in_seconds"]
        if exp_in_seconds is None:
            exp_in_seconds = in_seconds

        def ts(t: float) -> int:
            return int(t) if in_seconds else int(t * 1000)

        obj: dict[str, Any] = {
            "task_id": task.task_id,
            "status": task.status,
            "action": task.action,
            "model": task.model,
            "progress": self._progress(task, now),
            "created_at": ts(task.created),
        }
        if task.started is not None:
            obj["start_time"] = ts(task.started)
        if task.completed is not None:
            obj["completed_at"] = ts(task.completed)
        if task.status == "failed":
            obj["error"] = {"message": task.error_message, "code": task.error_code}
        if task.status == "completed" and task.result_url and task.result_expires is not None:
            url: Any = [task.result_url] if self.knobs["url_as_list"] else task.result_url
            expires = task.result_expires if exp_in_seconds else task.result_expires * 1000
            obj["result"] = {"videos": [{"url": url, "expires_at": expires}]}
        get = f"{self.origin}/v1/tasks/{task.task_id}"
        obj["urls"] = {"get": get, "cancel": get + "/cancel"}
        return obj

    def _send_callbacks(self, tasks: list[QingboTask | None]) -> None:
        """POST the task object to ``callback_url`` (payload NOT FOUND in the docs: invented)."""
        for task in tasks:
            if task is None:
                continue
            with self.lock:
                payload = self._task_object(task, time.time())

            def on_attempt(record: dict, task: QingboTask = task) -> None:
                with self.lock:
                    task.callback_attempts.append({k: record[k] for k in ("attempt", "status", "error", "ok")})

            self.callbacks.send(
                task.callback_url,
                payload,
                delays=self.knobs["callback_retry_delays"],
                timeout=self.knobs["callback_timeout"],
                context={"task_id": task.task_id, "task_status": task.status},
                ok_statuses=range(200, 300),
                on_attempt=on_attempt,
            )

    # ---- protocol --------------------------------------------------------

    def error_response(self, status: int, message: str, detail: str, headers: Mapping[str, str] | None = None) -> Response:
        """The task endpoints' error body ``{"error": {"message", "code"}}`` ("Request / Response")."""
        text = f"{message}: {detail}" if detail and detail != message else message
        return self._error(status, text, _ERROR_CODES.get(status, "error"), headers)

    @staticmethod
    def _error(status: int, message: str, code: str, headers: Mapping[str, str] | None = None) -> Response:
        return json_response(status, {"error": {"message": message, "code": code}}, headers)

    def _authorised_key(self, request: ApiRequest) -> str | None:
        header = request.header("Authorization") or ""
        scheme, _, key = header.strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return None
        return key if key in self.knobs["api_keys"] else None

    def handle_api(self, request: ApiRequest) -> Response:
        parts = [p for p in request.path.split("/") if p]
        if parts[:2] != ["v1", "tasks"] or len(parts) > 4 or (len(parts) == 4 and parts[3] != "cancel"):
            return self._error(404, f"no endpoint {request.method} {request.path}", "not_found")
        key = self._authorised_key(request)
        if key is None:
            return self._error(401, "Authentication failed: missing or invalid API key", "invalid_api_key")
        try:
            if len(parts) == 2:
                if request.method != "POST":
                    return self._error(405, "use POST /v1/tasks", "method_not_allowed", {"Allow": "POST"})
                return self._submit(request, key)
            task_id = urllib.parse.unquote(parts[2])
            if len(parts) == 3:
                if request.method not in ("GET", "HEAD"):
                    return self._error(405, "use GET /v1/tasks/{task_id}", "method_not_allowed", {"Allow": "GET"})
                return self._status(task_id, key)
            if request.method != "POST":
                return self._error(405, "use POST /v1/tasks/{task_id}/cancel", "method_not_allowed", {"Allow": "POST"})
            return self._cancel(task_id, key)
        except _Refused as exc:
            return self._error(exc.status, exc.message, exc.code, exc.headers)

    def _own_task(self, task_id: str, key: str) -> QingboTask:
        task = self._tasks.get(task_id)
        if task is None or task.api_key != key:
            raise _Refused(404, f"task {task_id!r} not found", "not_found")
        return task

    def _status(self, task_id: str, key: str) -> Response:
        now = time.time()
        with self.lock:
            task = self._own_task(task_id, key)
            job = self._advance(task, now)
            body = self._task_object(task, now)
        self._send_callbacks([job])
        return json_response(200, body)

    def _cancel(self, task_id: str, key: str) -> Response:
        """``POST /v1/tasks/{task_id}/cancel`` ("Cancel Task"): queued only; quota refunded."""
        now = time.time()
        with self.lock:
            task = self._own_task(task_id, key)
            job = self._advance(task, now)
            if task.status != "queued":
                reason = "it has already started processing" if task.status == "processing" else f"it is already {task.status}"
                refused = _Refused(400, f"task {task_id} cannot be cancelled: {reason}; only queued tasks can be cancelled", "task_not_cancellable")
            else:
                refused = None
                task.status = "cancelled"
                task.completed = now
                self._refund(task)
                job = task if task.wants_callback() else None
                body = {
                    "task_id": task.task_id,
                    "status": "cancelled",
                    "refunded": True,
                    "refunded_quota": int((task.price * QUOTA_UNITS_PER_USD).to_integral_value()),
                }
        self._send_callbacks([job])
        if refused:
            raise refused
        return json_response(200, body)

    def _validate(self, body: Any) -> dict[str, Any]:
        """Check a submit body against the documented rules (module docstring); raise 400."""
        if not isinstance(body, dict):
            raise _bad("request body must be a JSON object")
        model = body.get("model")
        if model is None or model == "":
            raise _bad("model is required")
        if not isinstance(model, str) or model not in MODELS:
            raise _bad(f"unknown model {model!r}; available: {', '.join(MODELS)}")
        rule = MODELS[model]

        action = body.get("action")
        if action is None:
            action = "generate"
        if action not in ACTIONS:
            raise _bad(f"action must be one of {', '.join(ACTIONS)}, got {action!r}")

        images: list[tuple[str, str]] = []
        first = None
        image_urls = body.get("image_urls")
        if image_urls is not None:
            if not isinstance(image_urls, list):
                raise _bad("image_urls must be an array holding exactly 1 image URL")
            if len(image_urls) != 1:
                raise _bad(f"image_urls must hold exactly 1 image, got {len(image_urls)}")
            if _image_kind(image_urls[0]) is None:
                raise _bad("image_urls[0] must be an http(s) URL or Base64 image data")
            first = image_urls[0].strip()
            images.append(("image_urls[0]", first))
        last = body.get("last_frame")
        if last is not None:
            if not rule.last_frame:
                raise _bad(f"last_frame (first/last frame mode) is supported by hailuo-02 only, not {model}")
            if first is None:
                raise _bad("last_frame requires image_urls (the first frame)")
            if _image_kind(last) is None:
                raise _bad("last_frame must be an http(s) URL or Base64 image data")
            last = last.strip()
            images.append(("last_frame", last))
        if rule.needs_image and first is None:
            raise _bad(f"{model} is image-to-video: image_urls (1 image) is required")
        if action == "image2video" and first is None:
            raise _bad("action image2video requires image_urls (1 image)")

        prompt = body.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise _bad("prompt must be a string")
        if prompt is None or not prompt.strip():
            if last is None:
                raise _bad("prompt is required and must not be empty")
            prompt = prompt or ""
        if len(prompt) > MAX_PROMPT_CHARS:
            raise _bad(f"prompt is limited to {MAX_PROMPT_CHARS} characters, got {len(prompt)}")

        duration = body.get("duration")
        if duration is None:
            duration = DEFAULT_DURATION
        if isinstance(duration, bool) or not isinstance(duration, int) or duration not in DURATIONS:
            raise _bad(f"duration must be 6 or 10, got {duration!r}")
        if duration not in rule.durations:
            raise _bad(f"{model} supports duration {', '.join(map(str, rule.durations))} only, got {duration}")

        resolution = body.get("resolution")
        if resolution is None:
            resolution = rule.default_resolution
        if not isinstance(resolution, str) or resolution.strip().lower() not in rule.resolutions:
            raise _bad(f"resolution {resolution!r} is not supported by {model}; supported: {', '.join(rule.resolutions)}")
        resolution = resolution.strip().lower()
        if resolution == "1080p" and duration > MAX_1080P_DURATION:
            raise _bad("1080p is available with duration 6 only")

        aspect_ratio = body.get("aspect_ratio")
        if aspect_ratio is not None and aspect_ratio not in ASPECT_RATIOS:
            raise _bad(f"aspect_ratio must be one of {', '.join(ASPECT_RATIOS)}, got {aspect_ratio!r}")

        extra = body.get("extra")
        if extra is None:
            extra = {}
        if not isinstance(extra, dict):
            raise _bad("extra must be an object")
        for name in ("prompt_optimizer", "fast_pretreatment"):
            if extra.get(name) is not None and not isinstance(extra[name], bool):
                raise _bad(f"extra.{name} must be a boolean")
        refs = extra.get("subject_reference")
        if refs is not None:
            if rule.subject_reference == "no":
                raise _bad(f"extra.subject_reference (character reference) is supported by the hailuo-2.3 series and S2V-01, not {model}")
            if not isinstance(refs, list) or not refs:
                raise _bad("extra.subject_reference must be a non-empty array")
            for i, item in enumerate(refs):
                if not isinstance(item, dict):
                    raise _bad(f"extra.subject_reference[{i}] must be an object")
                if item.get("type") != "character":
                    raise _bad(f'extra.subject_reference[{i}].type must be "character"')
                imgs = item.get("image")
                if not isinstance(imgs, list) or not imgs:
                    raise _bad(f"extra.subject_reference[{i}].image must be a non-empty array of image URLs")
                for j, ref in enumerate(imgs):
                    if _image_kind(ref) is None:
                        raise _bad(f"extra.subject_reference[{i}].image[{j}] must be an http(s) URL or Base64 image data")
                    images.append((f"extra.subject_reference[{i}].image[{j}]", ref.strip()))
        if rule.subject_reference == "required" and not refs:
            raise _bad(f"{model} is character-reference mode: extra.subject_reference is required")

        callback_url = body.get("callback_url")
        if callback_url == "":
            callback_url = None
        if callback_url is not None and not _is_http_url(callback_url):
            raise _bad("callback_url must be an http(s) URL")
        events = body.get("callback_events")
        if events is not None and (not isinstance(events, list) or not all(isinstance(e, str) for e in events)):
            raise _bad("callback_events must be an array of strings")

        return {
            "model": model,
            "action": action,
            "prompt": prompt,
            "duration": duration,
            "resolution": resolution,
            "aspect_ratio": aspect_ratio,
            "images": images,
            "extra": extra,
            "callback_url": callback_url.strip() if callback_url else None,
            "callback_events": events,
        }

    def _submit(self, request: ApiRequest, key: str) -> Response:
        """``POST /v1/tasks`` (seed 003)."""
        ctype = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise _bad("Content-Type must be application/json")
        try:
            body = json.loads(request.body.decode("utf-8")) if request.body else None
        except (ValueError, UnicodeDecodeError):
            raise _bad("request body is not valid JSON") from None
        v = self._validate(body)
        prompt: str = v["prompt"]

        m = _MARK_HTTP.search(prompt)
        if m and 400 <= int(m.group(1)) <= 599:
            status = int(m.group(1))
            headers = {"Retry-After": "1"} if status == 429 else {}
            message = f"{_HTTP_MESSAGES.get(status, 'Error')} (sandbox marker [http:{status}])"
            raise _Refused(status, message, _ERROR_CODES.get(status, "error"), headers)

        planned_fail = None
        m = _MARK_FAIL.search(prompt)
        if m:
            code = m.group(1) or "task_failed"
            planned_fail = (code, f"Task failed ({code}; sandbox marker)")
        elif random.random() < self.knobs["fail_rate"]:
            planned_fail = ("task_failed", "Video generation failed (sandbox fail_rate)")
        m = _MARK_SECONDS.search(prompt)
        generation = float(m.group(1)) if m else float(self.knobs["generation_seconds"])
        m = _MARK_QUEUE.search(prompt)
        queue = float(m.group(1)) if m else float(self.knobs["queue_seconds"])

        now = time.time()
        task = QingboTask(
            task_id=f"task-wave{int(now)}{secrets.token_hex(5)}",
            model=v["model"],
            action=v["action"],
            prompt=prompt,
            duration=v["duration"],
            resolution=v["resolution"],
            aspect_ratio=v["aspect_ratio"],
            images=v["images"],
            extra=v["extra"],
            callback_url=v["callback_url"],
            callback_events=v["callback_events"],
            api_key=key,
            price=price_for(v["model"], v["resolution"], v["duration"]),
            created=now,
            queue_seconds=queue,
            generation_seconds=generation,
            planned_fail=planned_fail,
            image_check="pending" if v["images"] else "n/a",
        )
        with self.lock:
            left = self._quota_left
            if left is not None and task.price > left:
                raise _Refused(402, f"Insufficient balance: the task costs {task.price} USD, the remaining quota is {left} USD", "insufficient_quota")
            self._charge(task)
            self._tasks[task.task_id] = task
        self.log.update(request.log_entry, task_id=task.task_id)
        if task.images:
            threading.Thread(target=self._check_images, args=(task,), name="qingbo-image-check", daemon=True).start()
        if _MARK_HANG.search(prompt):
            self.sleep(self.knobs["hang_seconds"])
        body = {
            "task_id": task.task_id,
            "model": task.model,
            "action": task.action,
            "status": "queued",
            "created_at": int(task.created if self.knobs["timestamps_in_seconds"] else task.created * 1000),
            "progress": 0,
        }
        return json_response(200, body)

    def _check_images(self, task: QingboTask) -> None:
        timeout = self.knobs["image_fetch_timeout"]
        error = None
        infos = []
        for where, ref in task.images:
            err, info = load_image(ref, timeout)
            info["field"] = where
            infos.append(info)
            if err:
                error = f"{where}: {err}"
                break
        with self.lock:
            task.image_info = infos
            task.image_done_at = time.time()
            task.image_check = "failed" if error else "ok"
            task.image_error = error
