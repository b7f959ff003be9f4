"""PiAPI sandbox: a local server speaking PiAPI's unified task protocol for Hailuo.

Written only from PiAPI's documentation (seed ``004`` -- "Hailuo / Generate
Video" -- and ``providers.md``, section PiAPI, which adds the get-task
response, the webhook and the account route).  It deliberately shares no
code, constants or schemas with ``providers/adapters/``: the adapter is tested
against this independent reading of the same pages.

Routes (base URL ``http://HOST:PORT``, mirroring ``https://api.piapi.ai``; the
sandbox's ``base_url`` is therefore just its origin):

* ``POST /api/v1/task`` -- body ``{"model": "hailuo", "task_type":
  "video_generation", "input": {"prompt", "model": "v2.3"|"v2.3-fast",
  "expand_prompt"?, "duration"?: 6|10, "resolution"?: 768|1080,
  "image_url"?}, "config"?: {"service_mode"?: "public", "webhook_config"?:
  {"endpoint", "secret"}}}``; answers ``{"code": 200, "message": "success",
  "data": <task>}`` with ``status`` ``pending``.
* ``GET /api/v1/task/{task_id}`` -- ``{"code": 200, "message": "success",
  "data": <task>}``.
* ``GET /account/info`` -- ``{"code": 200, "message": "success", "data":
  {"account_id", "account_name", "credits", "equivalent_in_usd"}}``.  Only
  the route, the four names and "equivalent_in_usd is the actually valid
  balance in USD" are documented; the values are INVENTED: ``credits`` is in
  the same 1e-7 USD unit as ``usage.consume`` and both fields are net of the
  amounts frozen by running tasks.
* ``GET /files/{task_id}.mp4?expires=&sig=`` -- the result video (signed,
  expiring after ``result_ttl``; 403 ``expired`` afterwards).

The task object (the seed's response example)::

    {task_id (UUID4), model: "hailuo", task_type: "video_generation", status,
     config: {service_mode, webhook_config: {endpoint, secret}},
     input: {duration, expand_prompt, image_url, model, prompt, resolution},
     output, meta: {created_at, started_at, ended_at, usage: {type: "llm",
     frozen, consume}, is_using_private_pool: false}, detail: null, logs: [],
     error: {code, raw_message, message, detail}}

* ``status`` goes ``pending`` -> ``staged`` -> ``processing`` ->
  ``completed`` | ``failed``; the docs say its letter case varies, so the
  knob ``status_case`` (``lower``, ``upper``, ``title``) changes how it is
  written.
* ``input`` echoes the request with the defaults filled in (duration 6,
  resolution 768, expand_prompt false, image_url ``""``), as the seed's
  example echoes ``"image_url": ""`` for a request that had none.
* ``output`` on ``completed`` is ``{<video_field>: URL}`` where the knob
  ``video_field`` is ``video`` (the v2.3 page), ``video_url`` or
  ``download_url`` (other PiAPI pages).  Before that, and on ``failed``, it
  is ``{}`` (knob ``empty_output: "null"`` makes it ``null``): the docs show
  no unfinished task, so an adapter must accept both.
* Times are RFC 3339 in UTC with up to nine fractional digits and ``Z``
  (Go's RFC3339Nano, trailing zeros trimmed, like the example
  ``2026-01-25T13:52:23.125177638Z``).  ``started_at`` / ``ended_at`` that
  have not happened yet are Go's zero time ``0001-01-01T00:00:00Z`` (an
  assumption: the docs only show a finished task).
* ``usage.consume`` is the price in units of 1e-7 USD (the example shows
  2300000 for a 0.23 USD task) once ``completed``, else 0 (charged only on
  success); ``usage.frozen`` holds the same amount while the task runs and
  is 0 once final.  ``usage.type`` is ``"llm"`` as in the example.
* ``error`` is ``{"code": 0, "raw_message": "", "message": "", "detail":
  null}`` unless ``failed``.  Failure codes are NOT documented: the sandbox
  uses 10000 for every failure except ``[fail:CODE]`` with a numeric CODE.

Every API route needs ``x-api-key: KEY`` with a configured key (knob
``api_keys``, default ``sk-sandbox-piapi``), else 401.  Error answers are a
non-2xx HTTP status with ``{"code": N, "message": "<title>: <detail>",
"data": {"error": "<title>", "detail": "<detail>"}}``.  PiAPI documents only
``{code, message, data?}``; what goes in ``data`` is the sandbox's choice,
kept the same on every route.  An unknown task answers 404; a submit over
the ``balance`` knob answers 402 "insufficient credits" (undocumented
statuses).

Validation (400), strict on purpose so an adapter's misreading shows up:
body not a JSON object or not ``application/json``; ``model`` not
``hailuo``; ``task_type`` not ``video_generation``; ``input`` missing or not
an object; ``prompt`` missing, blank, not a string or longer than 2000
characters; ``input.model`` missing or not ``v2.3`` / ``v2.3-fast`` (the
page lists it in neither "required" nor "optional" but every example sends
it, and without it the price is unknown); ``expand_prompt`` not a boolean;
``duration`` not the integer 6 or 10; ``resolution`` not the *integer* 768
or 1080 (``"768p"``, ``"768"`` and ``768.0`` are refused); 1080 with 10 s
("1080p+10s is not supported", for both models); ``image_url`` not a
string, or a non-empty string that is not an http(s) URL; ``config`` not an
object; ``service_mode`` other than ``public`` (absent means public);
``webhook_config`` not an object, ``endpoint`` not a string or a non-empty
non-http(s) URL, ``secret`` not a string.  ``null`` counts as absent for
every optional field.  Unknown keys are ignored.

Input image ("Image Requirements"): when ``image_url`` is non-empty, the
sandbox fetches it (timeout ``image_fetch_timeout``) and the task fails
(``error.code`` 10000, ``error.message`` naming the rule) when it cannot be
fetched, is not JPEG/PNG (magic bytes), is over 20 MB (20 * 1024 * 1024
bytes), has a width or height outside 300..4096 px, or an aspect ratio
outside 2:5..5:2.  All bounds are INCLUSIVE ("Minimum: 300px", "Maximum:
4096px", "between 2:5 and 5:2").

Webhook ("Webhook" page): when ``config.webhook_config.endpoint`` is set,
the sandbox POSTs ``{"timestamp": <unix seconds>, "data": <task>}`` when the
task enters ``processing`` and when it becomes final, with header
``x-webhook-secret: <secret verbatim>`` when the secret is non-empty (the
docs: "If a secret is provided, it will be included in the x-webhook-secret
header").  A non-2xx answer (or none) is retried after each of
``callback_retry_delays``; retries repeat the same body.  The knob
``duplicate_webhooks`` (default 0) sends that many extra identical
deliveries of each notification.  A task's notifications are delivered in
order, one after another.

Prompt markers (anywhere in ``input.prompt``; keyword case-insensitive):

* ``[fail]`` -- the task fails with ``error.code`` 10000;
* ``[fail:CODE]`` -- the task fails with ``error.code`` CODE when it is an
  integer, else 10000 with CODE as ``raw_message``;
* ``[http:STATUS]`` -- the submit itself answers HTTP STATUS (400-599) with
  the error body (429 adds ``Retry-After: 1``); no task is made;
* ``[seconds:N]`` -- this task's generation time is N seconds;
* ``[hang]`` -- the task is created, then the submit handler sleeps
  ``hang_seconds`` before answering (client read timeouts).

Knobs: ``common.COMMON_KNOBS`` (``generation_seconds``, ``result_ttl``,
``api_keys``, ``fail_rate``, ``rate_limit_every``, ``error_5xx_every``,
``latency_ms``, ``callback_retry_delays``, ``callback_timeout``, ``balance``
(USD; when set, resets the balance and refuses submits that cost more than
what is left net of frozen amounts), ``hang_seconds``,
``image_fetch_timeout``, ``public_origin``) plus ``status_case``,
``video_field``, ``empty_output`` and ``duplicate_webhooks``.
"""

from __future__ import annotations

import json
import math
import random
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
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
    json_response,
    register_sandbox,
    with_defaults,
)

__all__ = ["PiapiSandbox", "PRICES_USD", "check_image_bytes", "image_size", "rfc3339_nano"]

DEFAULT_API_KEY = "sk-sandbox-piapi"

#: Starting balance when the ``balance`` knob is unset (invented).
INITIAL_BALANCE_USD = Decimal("100.00")
ACCOUNT_ID = "sandbox-account-0001"
ACCOUNT_NAME = "piapi-sandbox"

#: "Pricing" tables of the Generate Video page: (model, resolution, duration) -> USD per task.
#: The v2.3 1080 row prints no duration; it is 6 s ("1080p+10s is not supported").
PRICES_USD: dict[tuple[str, int, int], Decimal] = {
    ("v2.3", 768, 6): Decimal("0.23"),
    ("v2.3", 768, 10): Decimal("0.45"),
    ("v2.3", 1080, 6): Decimal("0.46"),
    ("v2.3-fast", 768, 6): Decimal("0.16"),
    ("v2.3-fast", 768, 10): Decimal("0.26"),
    ("v2.3-fast", 1080, 6): Decimal("0.26"),
}
#: ``usage.consume`` unit: the example's 2300000 for a 0.23 USD task.
USAGE_UNITS_PER_USD = 10_000_000

SUB_MODELS = ("v2.3", "v2.3-fast")
DURATIONS = (6, 10)
RESOLUTIONS = (768, 1080)
MAX_PROMPT_CHARS = 2000
MAX_IMAGE_BYTES = 20 * 1024 * 1024
MIN_SIDE, MAX_SIDE = 300, 4096

GENERIC_FAIL_CODE = 10000
GO_ZERO_TIME = "0001-01-01T00:00:00Z"

FINAL = ("completed", "failed")

HTTP_TITLES = {
    400: "invalid request",
    401: "unauthorized",
    402: "insufficient credits",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    409: "conflict",
    429: "too many requests",
    500: "internal server error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
}

_MARK_FAIL = re.compile(r"\[fail(?::([A-Za-z0-9_.\-]+))?\]", re.IGNORECASE)
_MARK_HTTP = re.compile(r"\[http:(\d{3})\]", re.IGNORECASE)
_MARK_SECONDS = re.compile(r"\[seconds:(\d+(?:\.\d+)?)\]", re.IGNORECASE)
_MARK_HANG = re.compile(r"\[hang\]", re.IGNORECASE)
_UUID_MP4 = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12})\.mp4")


def price_usd(sub_model: str, resolution: int, duration: int) -> Decimal:
    """USD price of one task (the page's "Pricing" tables)."""
    return PRICES_USD[(sub_model, resolution, duration)]


def rfc3339_nano(ns: int | None) -> str:
    """Format Unix nanoseconds like Go's RFC3339Nano in UTC; ``None`` -> Go's zero time."""
    if ns is None:
        return GO_ZERO_TIME
    sec, frac = divmod(int(ns), 1_000_000_000)
    text = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


# --------------------------------------------------------------------------
# Knob parsers (local)
# --------------------------------------------------------------------------


def _choice(*allowed: str):
    def parse(value: Any) -> str:
        if not isinstance(value, str) or value.lower() not in allowed:
            raise KnobError(f"expected one of: {', '.join(allowed)}")
        return value.lower()

    return parse


def _count(value: Any) -> int:
    if isinstance(value, bool):
        raise KnobError("expected an integer >= 0")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or value < 0:
        raise KnobError("expected an integer >= 0")
    return value


def _knob_specs() -> dict[str, Knob]:
    specs = with_defaults(COMMON_KNOBS, api_keys=[DEFAULT_API_KEY])
    extra = [
        Knob("status_case", "lower", _choice("lower", "upper", "title"),
             "letter case of task statuses (the docs say it varies)"),
        Knob("video_field", "video", _choice("video", "video_url", "download_url"),
             "output key carrying the video URL"),
        Knob("empty_output", "object", _choice("object", "null"),
             "output of an unfinished or failed task: {} (object) or null"),
        Knob("duplicate_webhooks", 0, _count, "extra identical deliveries of each webhook notification"),
    ]
    for knob in extra:
        specs[knob.name] = knob
    return specs


# --------------------------------------------------------------------------
# Input image checks (own header parsing; no Pillow)
# --------------------------------------------------------------------------


class ImageProblem(ValueError):
    """An input image breaks one of the documented rules."""


def image_size(data: bytes) -> tuple[str, int, int]:
    """Return ``(format, width, height)`` of PNG or JPEG bytes.

    Raises :class:`ImageProblem` for any other format or a damaged header.
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ImageProblem("damaged PNG header")
        return "png", int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data[:3] == b"\xff\xd8\xff":
        frame_markers = set(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
        pos, end = 2, len(data)
        while pos + 4 <= end:
            if data[pos] != 0xFF:
                break
            marker = data[pos + 1]
            if marker == 0xFF:  # fill byte
                pos += 1
                continue
            if marker in (0x01,) or 0xD0 <= marker <= 0xD7:
                pos += 2
                continue
            if marker in (0xD9, 0xDA):
                break
            length = int.from_bytes(data[pos + 2 : pos + 4], "big")
            if length < 2:
                break
            if marker in frame_markers and pos + 9 <= end:
                height = int.from_bytes(data[pos + 5 : pos + 7], "big")
                width = int.from_bytes(data[pos + 7 : pos + 9], "big")
                return "jpeg", width, height
            pos += 2 + length
        raise ImageProblem("damaged JPEG header (no frame size found)")
    raise ImageProblem("unsupported image format: only JPG and PNG are accepted")


def check_image_bytes(data: bytes) -> dict[str, Any]:
    """Apply "Image Requirements"; return the image's facts or raise :class:`ImageProblem`."""
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageProblem(f"image is larger than 20MB ({len(data)} bytes)")
    fmt, width, height = image_size(data)
    info = {"format": fmt, "width": width, "height": height, "bytes": len(data)}
    for name, value in (("width", width), ("height", height)):
        if value < MIN_SIDE:
            raise ImageProblem(f"image {name} {value}px is below the minimum of {MIN_SIDE}px")
        if value > MAX_SIDE:
            raise ImageProblem(f"image {name} {value}px is above the maximum of {MAX_SIDE}px")
    # 2/5 <= width/height <= 5/2, in integers
    if 5 * width < 2 * height or 2 * width > 5 * height:
        raise ImageProblem(f"image aspect ratio {width}:{height} is not between 2:5 and 5:2")
    return info


def fetch_and_check_image(url: str, timeout: float) -> tuple[str | None, dict[str, Any]]:
    """Fetch ``url`` and check it; return ``(problem or None, info)``."""
    info: dict[str, Any] = {"url": url}
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "piapi-sandbox/1 (image check)"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (sandbox)
            info["http_status"] = resp.status
            declared = resp.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > MAX_IMAGE_BYTES:
                info["bytes"] = int(declared)
                return f"image is larger than 20MB ({declared} bytes)", info
            data = resp.read(MAX_IMAGE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        info["http_status"] = exc.code
        exc.close()
        return f"failed to download image_url: HTTP {exc.code}", info
    except Exception as exc:  # refused, timeout, DNS...
        info["error"] = f"{type(exc).__name__}: {exc}"
        return f"failed to download image_url: {type(exc).__name__}", info
    try:
        info.update(check_image_bytes(data))
    except ImageProblem as exc:
        info["bytes"] = len(data)
        return str(exc), info
    return None, info


# --------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------


@dataclass
class PiapiTask:
    """One accepted task and its simulated timeline."""

    task_id: str
    sub_model: str
    prompt: str
    expand_prompt: bool
    duration: int
    resolution: int
    image_url: str
    service_mode: str
    webhook_endpoint: str
    webhook_secret: str
    price: Decimal
    api_key: str
    created: float
    created_ns: int
    generation_seconds: float
    planned_fail: tuple[int, str, str] | None = None  # (code, raw_message, message)
    image_check: str = "n/a"  # n/a | pending | ok | failed
    image_info: dict[str, Any] = field(default_factory=dict)
    image_problem: str | None = None
    image_done_at: float | None = None
    status: str = "pending"
    started_ns: int | None = None
    ended_ns: int | None = None
    completed: float | None = None
    error_code: int = 0
    error_raw: str = ""
    error_message: str = ""
    result_url: str | None = None
    result_expires: int | None = None
    charged: bool = False
    webhook_attempts: list[dict] = field(default_factory=list)

    @property
    def price_units(self) -> int:
        return int(self.price * USAGE_UNITS_PER_USD)

    @property
    def frozen_usd(self) -> Decimal:
        return Decimal(0) if self.status in FINAL else self.price


def _render_status(status: str, case: str) -> str:
    if case == "upper":
        return status.upper()
    if case == "title":
        return status.title()
    return status


def _is_http_url(value: str) -> bool:
    parts = urllib.parse.urlsplit(value.strip())
    return parts.scheme in ("http", "https") and bool(parts.hostname)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class _Refused(Exception):
    def __init__(self, status: int, detail: str, headers: Mapping[str, str] | None = None):
        super().__init__(detail)
        self.status, self.detail, self.headers = status, detail, dict(headers or {})


# --------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------


@register_sandbox("piapi")
class PiapiSandbox(SandboxServer):
    """The PiAPI sandbox server (see the module docstring for the protocol)."""

    api_prefix = ""  # routes live at the origin: /api/v1/task and /account/info
    knob_specs = _knob_specs()

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **knobs: Any):
        super().__init__(host, port, **knobs)
        self._tasks: dict[str, PiapiTask] = {}
        self._balance = self._starting_balance()
        self._webhook_locks: dict[str, threading.Lock] = {}

    # ---- state -----------------------------------------------------------

    def _starting_balance(self) -> Decimal:
        knob = self.knobs["balance"]
        return INITIAL_BALANCE_USD if knob is None else Decimal(str(knob))

    def on_knobs_changed(self, changed: Mapping[str, Any]) -> None:
        if changed.get("balance") is not None:
            self._balance = Decimal(str(changed["balance"]))

    def reset_state(self) -> None:
        self._tasks.clear()
        self._webhook_locks.clear()
        self._balance = self._starting_balance()

    def _available_usd(self) -> Decimal:
        """Balance net of what running tasks hold (call under ``self.lock``)."""
        return self._balance - sum((t.frozen_usd for t in self._tasks.values()), Decimal(0))

    def tasks_snapshot(self) -> list[dict]:
        now = time.time()
        batches = []
        with self.lock:
            for task in self._tasks.values():
                batches.append((task, self._advance(task, now)))
            out = [self._snapshot(t) for t in self._tasks.values()]
        self._notify(batches)
        return out

    def _snapshot(self, task: PiapiTask) -> dict[str, Any]:
        return {
            "task_id": task.task_id,
            "sub_model": task.sub_model,
            "prompt": task.prompt,
            "duration": task.duration,
            "resolution": task.resolution,
            "price": float(task.price),
            "image_url": task.image_url,
            "image_check": task.image_check,
            "image_info": dict(task.image_info),
            "webhook_endpoint": task.webhook_endpoint,
            "api_key": task.api_key,
            "created": task.created,
            "generation_seconds": task.generation_seconds,
            "status": task.status,
            "charged": task.charged,
            "result_url": task.result_url,
            "result_expires": task.result_expires,
            "webhook_attempts": [dict(a) for a in task.webhook_attempts],
            "task": self._task_object(task),
        }

    def tick(self, now: float) -> None:
        batches = []
        with self.lock:
            for task in self._tasks.values():
                if task.status not in FINAL:
                    batches.append((task, self._advance(task, now)))
        self._notify(batches)

    def resolve_file(self, name: str) -> Path | None:
        m = _UUID_MP4.fullmatch(name)
        if not m:
            return None
        with self.lock:
            task = self._tasks.get(m.group(1))
            if task is None or task.status != "completed":
                return None
        return SAMPLE_MP4

    # ---- timeline --------------------------------------------------------

    def _advance(self, task: PiapiTask, now: float) -> list[dict]:
        """Move ``task`` along its timeline (call under ``self.lock``).

        ``pending`` for the first phase (10 % of the generation time, at least
        0.25 s, at most a third of it), ``staged`` for as long again, then
        ``processing`` until the generation time has passed and the input
        image (if any) has been checked, then final.  Returns the webhook
        payloads due (one when entering ``processing``, one when final).
        """
        if task.status in FINAL:
            return []
        gen = task.generation_seconds
        phase = min(gen / 3, max(0.25, 0.1 * gen))
        elapsed = now - task.created
        notes: list[dict] = []

        def note(at: float) -> None:
            if task.webhook_endpoint:
                notes.append(self._payload(task, at))

        if elapsed < phase:
            task.status = "pending"
            return notes
        if elapsed < 2 * phase:
            task.status = "staged"
            return notes
        if task.started_ns is None:
            task.status = "processing"
            task.started_ns = int((task.created + 2 * phase) * 1e9)
            note(task.created + 2 * phase)
        if elapsed < gen or task.image_check == "pending":
            task.status = "processing"
            return notes
        task.completed = max(task.created + gen, task.image_done_at or 0.0)
        task.ended_ns = int(task.completed * 1e9)
        if task.image_problem:
            task.status = "failed"
            task.error_code = GENERIC_FAIL_CODE
            task.error_raw = task.image_problem
            task.error_message = f"invalid image_url: {task.image_problem}"
        elif task.planned_fail:
            task.status = "failed"
            task.error_code, task.error_raw, task.error_message = task.planned_fail
        else:
            task.status = "completed"
            task.result_expires = math.ceil(task.completed + self.knobs["result_ttl"])
            task.result_url = self.signed_file_url(f"{task.task_id}.mp4", task.result_expires)
            self._balance -= task.price  # charged on success only
            task.charged = True
        note(now)
        return notes

    def _task_object(self, task: PiapiTask) -> dict[str, Any]:
        """The task object of the seed's example (call under ``self.lock``)."""
        if task.status == "completed":
            output: Any = {self.knobs["video_field"]: task.result_url}
        else:
            output = {} if self.knobs["empty_output"] == "object" else None
        return {
            "task_id": task.task_id,
            "model": "hailuo",
            "task_type": "video_generation",
            "status": _render_status(task.status, self.knobs["status_case"]),
            "config": {
                "service_mode": task.service_mode,
                "webhook_config": {"endpoint": task.webhook_endpoint, "secret": task.webhook_secret},
            },
            "input": {
                "duration": task.duration,
                "expand_prompt": task.expand_prompt,
                "image_url": task.image_url,
                "model": task.sub_model,
                "prompt": task.prompt,
                "resolution": task.resolution,
            },
            "output": output,
            "meta": {
                "created_at": rfc3339_nano(task.created_ns),
                "started_at": rfc3339_nano(task.started_ns),
                "ended_at": rfc3339_nano(task.ended_ns),
                "usage": {
                    "type": "llm",
                    "frozen": 0 if task.status in FINAL else task.price_units,
                    "consume": task.price_units if task.status == "completed" else 0,
                },
                "is_using_private_pool": False,
            },
            "detail": None,
            "logs": [],
            "error": {
                "code": task.error_code,
                "raw_message": task.error_raw,
                "message": task.error_message,
                "detail": None,
            },
        }

    def _payload(self, task: PiapiTask, at: float) -> dict[str, Any]:
        return {"timestamp": int(at), "data": self._task_object(task)}

    # ---- webhooks --------------------------------------------------------

    def _notify(self, batches: list[tuple[PiapiTask, list[dict]]]) -> None:
        for task, payloads in batches:
            if payloads and task.webhook_endpoint:
                threading.Thread(
                    target=self._deliver_all, args=(task, payloads), name="piapi-webhooks", daemon=True
                ).start()

    def _deliver_all(self, task: PiapiTask, payloads: list[dict]) -> None:
        copies = 1 + int(self.knobs["duplicate_webhooks"])
        headers = {"x-webhook-secret": task.webhook_secret} if task.webhook_secret else {}
        # one task's notifications go out in order (processing before final)
        with self._webhook_lock(task):
            for payload in payloads:
                status = payload["data"]["status"]
                for n in range(1, copies + 1):
                    if self.stop_event.is_set():
                        return

                    def on_attempt(record: dict, n: int = n, status: str = status) -> None:
                        with self.lock:
                            task.webhook_attempts.append(
                                {"status_sent": status, "copy": n, **{k: record[k] for k in ("attempt", "status", "error", "ok")}}
                            )

                    self.callbacks.send(
                        task.webhook_endpoint,
                        payload,
                        delays=self.knobs["callback_retry_delays"],
                        timeout=self.knobs["callback_timeout"],
                        context={"task_id": task.task_id, "task_status": status, "copy": n, "duplicate": n > 1},
                        headers=headers,
                        ok_statuses=range(200, 300),
                        on_attempt=on_attempt,
                    ).join()

    def _webhook_lock(self, task: PiapiTask) -> threading.Lock:
        with self.lock:
            return self._webhook_locks.setdefault(task.task_id, threading.Lock())

    # ---- protocol --------------------------------------------------------

    def error_response(self, status: int, message: str, detail: str, headers: Mapping[str, str] | None = None) -> Response:
        """``{"code": N, "message": "<title>: <detail>", "data": {"error", "detail"}}`` (shape partly invented)."""
        text = f"{message}: {detail}" if detail else message
        return json_response(status, {"code": status, "message": text, "data": {"error": message, "detail": detail}}, headers)

    def _refuse(self, exc: _Refused) -> Response:
        return self.error_response(exc.status, HTTP_TITLES.get(exc.status, "error"), exc.detail, exc.headers)

    def _authorised_key(self, request: ApiRequest) -> str | None:
        """``x-api-key: KEY`` (the request example's header)."""
        key = (request.header("x-api-key") or "").strip()
        return key if key and key in self.knobs["api_keys"] else None

    def handle_api(self, request: ApiRequest) -> Response:
        parts = [p for p in request.path.split("/") if p]
        try:
            if parts == ["api", "v1", "task"]:
                self._allow(request, "POST")
                return self._submit(request, self._auth(request))
            if len(parts) == 4 and parts[:3] == ["api", "v1", "task"]:
                self._allow(request, "GET", "HEAD")
                self._auth(request)
                return self._get_task(parts[3])
            if parts == ["account", "info"]:
                self._allow(request, "GET", "HEAD")
                self._auth(request)
                return self._account_info()
        except _Refused as exc:
            return self._refuse(exc)
        return self.error_response(404, "not found", f"no endpoint {request.method} {request.path}")

    def _allow(self, request: ApiRequest, *methods: str) -> None:
        if request.method not in methods:
            raise _Refused(405, f"use {' or '.join(methods)}", {"Allow": ", ".join(methods)})

    def _auth(self, request: ApiRequest) -> str:
        key = self._authorised_key(request)
        if key is None:
            raise _Refused(401, "missing or invalid x-api-key header")
        return key

    def _account_info(self) -> Response:
        now = time.time()
        with self.lock:
            batches = [(task, self._advance(task, now)) for task in self._tasks.values()]
            available = self._available_usd()
        self._notify(batches)
        data = {
            "account_id": ACCOUNT_ID,
            "account_name": ACCOUNT_NAME,
            "credits": int(available * USAGE_UNITS_PER_USD),
            "equivalent_in_usd": float(round(available, 7)),
        }
        return json_response(200, {"code": 200, "message": "success", "data": data})

    def _get_task(self, task_id: str) -> Response:
        with self.lock:
            task = self._tasks.get(task_id)
            if task is None:
                raise _Refused(404, f"task {task_id!r} not found")
            notes = self._advance(task, time.time())
            body = {"code": 200, "message": "success", "data": self._task_object(task)}
        self._notify([(task, notes)])
        return json_response(200, body)

    # ---- submit ----------------------------------------------------------

    def _validate(self, body: Any) -> dict[str, Any]:
        """Check a create-task body against the page's documented rules (400)."""
        if not isinstance(body, dict):
            raise _Refused(400, "request body must be a JSON object")
        if body.get("model") != "hailuo":
            raise _Refused(400, f"model must be 'hailuo', got {body.get('model')!r}")
        if body.get("task_type") != "video_generation":
            raise _Refused(400, f"task_type must be 'video_generation', got {body.get('task_type')!r}")
        inp = body.get("input")
        if not isinstance(inp, dict):
            raise _Refused(400, "input is required and must be an object")

        prompt = inp.get("prompt")
        if prompt is None:
            raise _Refused(400, "input.prompt is required")
        if not isinstance(prompt, str):
            raise _Refused(400, "input.prompt must be a string")
        if not prompt.strip():
            raise _Refused(400, "input.prompt must not be empty")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise _Refused(400, f"input.prompt is {len(prompt)} characters; the maximum length is {MAX_PROMPT_CHARS}")

        sub_model = inp.get("model")
        if sub_model not in SUB_MODELS:
            raise _Refused(400, f"input.model must be 'v2.3' or 'v2.3-fast', got {sub_model!r}")

        expand = inp.get("expand_prompt")
        if expand is None:
            expand = False
        if not isinstance(expand, bool):
            raise _Refused(400, f"input.expand_prompt must be a boolean, got {expand!r}")

        duration = inp.get("duration")
        if duration is None:
            duration = 6
        if not _is_int(duration) or duration not in DURATIONS:
            raise _Refused(400, f"input.duration must be the integer 6 or 10, got {duration!r}")

        resolution = inp.get("resolution")
        if resolution is None:
            resolution = 768
        if not _is_int(resolution) or resolution not in RESOLUTIONS:
            raise _Refused(400, f"input.resolution must be the integer 768 or 1080, got {resolution!r}")
        if resolution == 1080 and duration == 10:
            raise _Refused(400, "1080p+10s is not supported (resolution 1080 needs duration 6)")

        image_url = inp.get("image_url")
        if image_url is None:
            image_url = ""
        if not isinstance(image_url, str):
            raise _Refused(400, "input.image_url must be a string")
        image_url = image_url.strip()
        if image_url and not _is_http_url(image_url):
            raise _Refused(400, f"input.image_url must be an http(s) URL, got {image_url!r}")

        config = body.get("config")
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise _Refused(400, "config must be an object")
        mode = config.get("service_mode")
        if mode is None:
            mode = "public"
        if mode != "public":
            raise _Refused(400, f"config.service_mode {mode!r} is not supported; only 'public' is")
        hook = config.get("webhook_config")
        if hook is None:
            hook = {}
        if not isinstance(hook, dict):
            raise _Refused(400, "config.webhook_config must be an object")
        endpoint = hook.get("endpoint")
        endpoint = "" if endpoint is None else endpoint
        secret = hook.get("secret")
        secret = "" if secret is None else secret
        if not isinstance(endpoint, str):
            raise _Refused(400, "config.webhook_config.endpoint must be a string")
        if endpoint.strip() and not _is_http_url(endpoint):
            raise _Refused(400, f"config.webhook_config.endpoint must be an http(s) URL, got {endpoint!r}")
        if not isinstance(secret, str):
            raise _Refused(400, "config.webhook_config.secret must be a string")
        return {
            "prompt": prompt,
            "sub_model": sub_model,
            "expand_prompt": expand,
            "duration": duration,
            "resolution": resolution,
            "image_url": image_url,
            "service_mode": mode,
            "endpoint": endpoint.strip(),
            "secret": secret,
        }

    def _submit(self, request: ApiRequest, key: str) -> Response:
        """``POST /api/v1/task`` (the Generate Video page)."""
        ctype = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise _Refused(400, "Content-Type must be application/json")
        try:
            body = json.loads(request.body.decode("utf-8")) if request.body else None
        except (ValueError, UnicodeDecodeError):
            raise _Refused(400, "request body is not valid JSON") from None
        v = self._validate(body)
        prompt: str = v["prompt"]

        m = _MARK_HTTP.search(prompt)
        if m and 400 <= int(m.group(1)) <= 599:
            status = int(m.group(1))
            raise _Refused(status, f"sandbox marker [http:{status}]", {"Retry-After": "1"} if status == 429 else None)

        planned_fail = None
        m = _MARK_FAIL.search(prompt)
        if m:
            code = m.group(1)
            if code is None:
                planned_fail = (GENERIC_FAIL_CODE, "video generation failed (sandbox marker [fail])",
                                "video generation failed")
            elif code.isdigit():
                planned_fail = (int(code), f"sandbox marker [fail:{code}]", f"task failed with code {code}")
            else:
                planned_fail = (GENERIC_FAIL_CODE, code, f"task failed: {code}")
        elif random.random() < self.knobs["fail_rate"]:
            planned_fail = (GENERIC_FAIL_CODE, "upstream generation error (sandbox fail_rate)", "video generation failed")
        m = _MARK_SECONDS.search(prompt)
        generation = float(m.group(1)) if m else float(self.knobs["generation_seconds"])

        price = price_usd(v["sub_model"], v["resolution"], v["duration"])
        now_ns = time.time_ns()
        task = PiapiTask(
            task_id=str(uuid.uuid4()),
            sub_model=v["sub_model"],
            prompt=prompt,
            expand_prompt=v["expand_prompt"],
            duration=v["duration"],
            resolution=v["resolution"],
            image_url=v["image_url"],
            service_mode=v["service_mode"],
            webhook_endpoint=v["endpoint"],
            webhook_secret=v["secret"],
            price=price,
            api_key=key,
            created=now_ns / 1e9,
            created_ns=now_ns,
            generation_seconds=generation,
            planned_fail=planned_fail,
            image_check="pending" if v["image_url"] else "n/a",
        )
        with self.lock:
            batches = [(t, self._advance(t, task.created)) for t in self._tasks.values()]
            available = self._available_usd()
            refused = self.knobs["balance"] is not None and price > available
            if not refused:
                self._tasks[task.task_id] = task
                body_out = {"code": 200, "message": "success", "data": self._task_object(task)}
        self._notify(batches)
        if refused:
            raise _Refused(402, f"this task costs {price} USD but only {available} USD is available")
        self.log.update(request.log_entry, task_id=task.task_id)
        if task.image_url:
            threading.Thread(target=self._check_image, args=(task,), name="piapi-image-check", daemon=True).start()
        if _MARK_HANG.search(prompt):
            self.sleep(self.knobs["hang_seconds"])
        return json_response(200, body_out)

    def _check_image(self, task: PiapiTask) -> None:
        problem, info = fetch_and_check_image(task.image_url, self.knobs["image_fetch_timeout"])
        with self.lock:
            task.image_info = info
            task.image_done_at = time.time()
            task.image_problem = problem
            task.image_check = "failed" if problem else "ok"
