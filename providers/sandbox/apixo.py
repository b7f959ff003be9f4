"""APIXO sandbox: a local server speaking APIXO's Hailuo 2.3 protocol.

Written only from APIXO's documentation pages (seeds ``001`` -- "Hailuo 2.3"
-- and ``002`` -- "hailuo-2-3-fast"; summarised in ``providers.md``, section
APIXO).  It deliberately shares no code, constants or schemas with
``providers/adapters/``: the adapter is tested against this independent
reading of the same pages.

Routes (base URL ``http://HOST:PORT/api/v1``, mirroring
``https://api.apixo.ai/api/v1``; "Endpoint and authentication"):

* ``POST /api/v1/generateTask/{model}`` -- submit (``hailuo-2-3``,
  ``hailuo-2-3-fast``); ``{"code": 200, "message": "success", "data":
  {"taskId": "task_..."}}``.
* ``GET /api/v1/statusTask/{model}?taskId=...`` -- poll; ``data`` holds
  ``taskId``, ``state`` (``pending`` -> ``processing`` -> ``success`` |
  ``failed``), ``createTime`` and, once final, ``resultJson`` (a JSON
  *string* ``{"resultUrls": [...]}``) or ``failCode``/``failMsg``, plus
  ``completeTime`` and ``costTime`` (Unix ms / ms).
* ``GET /api/v1/apikeys/current-balance`` -- ``{"code": 200, "data": 74.87}``.
* ``GET /files/{taskId}.mp4?expires=&sig=`` -- the result video (signed,
  expiring; 403 ``expired`` afterwards).

Every API route needs ``Authorization: Bearer KEY`` with a configured key
(knob ``api_keys``, default ``sk-sandbox-apixo``), else 401.  Errors use the
documented body ``{"code": N, "message": "...", "data": {"error": "..."}}``.

Prompt markers (anywhere in ``input.prompt``, case-insensitive keyword):

* ``[fail]`` -- the task fails with ``failCode`` ``PromptInvalid`` and
  ``failMsg`` "Prompt is invalid or rejected by provider";
* ``[fail:CODE]`` -- the task fails with that ``failCode`` (a fitting
  ``failMsg`` for documented codes, a generic one otherwise);
* ``[http:STATUS]`` -- the submit itself answers HTTP STATUS (400-599) with
  the documented error body (429 adds ``Retry-After: 1``); no task is made;
* ``[seconds:N]`` -- this task's generation time is N seconds;
* ``[hang]`` -- the task is created, then the submit handler sleeps
  ``hang_seconds`` (default 60) before answering (client read timeouts).

Knobs: see ``common.COMMON_KNOBS`` (``generation_seconds``, ``result_ttl``,
``api_keys``, ``fail_rate``, ``rate_limit_every``, ``error_5xx_every``,
``latency_ms``, ``callback_retry_delays``, ``callback_timeout``, ``balance``,
``hang_seconds``, ``image_fetch_timeout``, ``public_origin``).
"""

from __future__ import annotations

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
    Response,
    SandboxServer,
    json_response,
    register_sandbox,
    with_defaults,
)

__all__ = ["ApixoSandbox", "MODELS", "image_dimensions", "inspect_image_bytes", "price_for"]

DEFAULT_API_KEY = "sk-sandbox-apixo"

#: The example balance of "System APIs" / ``providers.md`` (USD).
INITIAL_BALANCE = Decimal("74.87")


@dataclass(frozen=True)
class ModeRule:
    """One mode of one model, per the docs' mode tables."""

    family: str  # "standard" or "pro"
    needs_image: bool
    resolution: str
    fixed_seconds: int | None  # pro modes: fixed output length; standard: None (duration 6|10)


#: "Request body" mode table (hailuo-2-3) and "Parameters" (hailuo-2-3-fast).
MODELS: dict[str, dict[str, ModeRule]] = {
    "hailuo-2-3": {
        "standard-text-to-video": ModeRule("standard", False, "768p", None),
        "standard-image-to-video": ModeRule("standard", True, "768p", None),
        "pro-text-to-video": ModeRule("pro", False, "1080p", 5),
        "pro-image-to-video": ModeRule("pro", True, "1080p", 5),
    },
    # "This model only supports image-to-video"; pro output "fixed ... 6 seconds".
    "hailuo-2-3-fast": {
        "standard-image-to-video": ModeRule("standard", True, "768p", None),
        "pro-image-to-video": ModeRule("pro", True, "1080p", 6),
    },
}

STANDARD_DURATIONS = (6, 10)
REQUEST_TYPES = ("async", "callback")
ROUTING_PROVIDERS = ("auto", "value", "official")
MAX_IMAGE_BYTES = 20 * 1024 * 1024

#: "Billing" table of the Hailuo 2.3 page.
STANDARD_USD_PER_SECOND = Decimal("0.056")
PRO_USD_PER_TASK = Decimal("0.49")

#: failMsg for the documented fail codes ("Task failure codes"; fast page "Error Codes").
FAIL_MESSAGES = {
    "PromptInvalid": "Prompt is invalid or rejected by provider",
    "SensitiveContent": "Prompt, input image, or output failed content checks",
    "SensitiveContentDetected": "Sensitive content detected",
    "InputOutputSensitiveContentDetected": "Prompt, input image, or output failed content checks",
    "InputImageSensitiveContentDetected": "Input image failed content checks",
    "NSFW": "NSFW content detected",
    "ProhibitedContentDetected": "Prohibited content detected",
    "PromptLengthExceeded": "Prompt length exceeded",
    "ImageFormatIncorrect": "Input image format is incorrect; use a JPG/JPEG/PNG image",
    "InvalidImageSize": "Input image size is invalid: short side must be greater than 300px, aspect ratio between 2:5 and 5:2, at most 20MB",
    "RateLimited": "Provider-side rate limit",
    "Timeout": "Provider-side timeout",
    "CONTENT_VIOLATION": "Content violates safety guidelines",
    "INVALID_IMAGE_URL": "Cannot access the provided image URL",
    "PROCESSING_TIMEOUT": "Processing timed out",
    "GENERATION_FAILED": "Video generation failed",
    "INSUFFICIENT_CREDITS": "Insufficient credits",
}

#: Messages for ``[http:STATUS]`` ("Errors and troubleshooting" > "HTTP errors").
HTTP_MESSAGES = {
    400: "Invalid request body",
    401: "Missing or invalid API key",
    402: "Insufficient balance or quota",
    403: "Key or route cannot access the model",
    404: "Not found",
    429: "Rate limit or concurrency limit reached",
    500: "Server error or unknown upstream failure",
    502: "Upstream provider error",
    503: "Service unavailable",
    504: "Upstream timeout",
}

_MARK_FAIL = re.compile(r"\[fail(?::([A-Za-z0-9_.\-]+))?\]", re.IGNORECASE)
_MARK_HTTP = re.compile(r"\[http:(\d{3})\]", re.IGNORECASE)
_MARK_SECONDS = re.compile(r"\[seconds:(\d+(?:\.\d+)?)\]", re.IGNORECASE)
_MARK_HANG = re.compile(r"\[hang\]", re.IGNORECASE)

FINAL_STATES = ("success", "failed")


def price_for(model: str, mode: str, duration: int | None) -> Decimal:
    """APIXO price of one task, per the "Billing" table of the Hailuo 2.3 page.

    Standard modes: ``duration * 0.056`` USD; pro modes: 0.49 USD per task.
    The hailuo-2-3-fast page only says standard is "billed by duration" and
    pro "billed per task" without figures, so the sandbox uses the same
    figures for it (an assumption, not a documented price).
    """
    rule = MODELS[model][mode]
    if rule.family == "standard":
        return STANDARD_USD_PER_SECOND * int(duration or 0)
    return PRO_USD_PER_TASK


# --------------------------------------------------------------------------
# Image checks (own header parsing; no Pillow)
# --------------------------------------------------------------------------


def image_dimensions(data: bytes) -> tuple[str, int, int]:
    """Return ``(format, width, height)`` for PNG or JPEG bytes.

    PNG: the IHDR chunk that must follow the signature.  JPEG: the first
    SOFn segment (baseline, progressive, lossless, arithmetic variants).
    Raises ``ValueError("format")`` for anything else (ImageFormatIncorrect)
    and ``ValueError("corrupt")`` for a truncated or malformed header.
    """
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise ValueError("corrupt")
        return "png", int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if data.startswith(b"\xff\xd8\xff"):
        sof = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
        i, n = 2, len(data)
        while i < n:
            if data[i] != 0xFF:
                raise ValueError("corrupt")
            while i < n and data[i] == 0xFF:  # fill bytes
                i += 1
            if i >= n:
                break
            marker = data[i]
            i += 1
            if marker == 0x01 or 0xD0 <= marker <= 0xD8:  # standalone markers
                continue
            if marker in (0xD9, 0xDA):  # end of image / start of scan before any SOF
                break
            if i + 2 > n:
                break
            seglen = int.from_bytes(data[i : i + 2], "big")
            if seglen < 2:
                raise ValueError("corrupt")
            if marker in sof:
                if i + 7 > n:
                    break
                height = int.from_bytes(data[i + 3 : i + 5], "big")
                width = int.from_bytes(data[i + 5 : i + 7], "big")
                return "jpeg", width, height
            i += seglen
        raise ValueError("corrupt")
    raise ValueError("format")


def inspect_image_bytes(data: bytes) -> tuple[str | None, dict[str, Any]]:
    """Apply the documented image rules; return ``(failCode or None, info)``.

    Rules (Hailuo 2.3 "Parameters" note; hailuo-2-3-fast "Parameters"):
    format JPG/JPEG/PNG; aspect ratio strictly greater than 2:5 and less than
    5:2; short side strictly greater than 300 px; at most 20 MB.
    """
    info: dict[str, Any] = {"bytes": len(data)}
    if len(data) > MAX_IMAGE_BYTES:
        return "InvalidImageSize", info
    try:
        fmt, width, height = image_dimensions(data)
    except ValueError:
        return "ImageFormatIncorrect", info
    info.update(format=fmt, width=width, height=height)
    if min(width, height) <= 300:
        return "InvalidImageSize", info
    # 2/5 < w/h < 5/2, in integers
    if not (5 * width > 2 * height and 2 * width < 5 * height):
        return "InvalidImageSize", info
    return None, info


def fetch_and_inspect_image(url: str, timeout: float) -> tuple[str | None, dict[str, Any]]:
    """Fetch ``url`` (at most 20 MB + 1 byte) and inspect it.

    An unreachable URL or a non-2xx answer gives ``INVALID_IMAGE_URL``
    ("Cannot access the provided image URL", fast page "Error Codes").
    """
    info: dict[str, Any] = {"url": url}
    try:
        req = urllib.request.Request(url, headers={"User-Agent": "apixo-sandbox/1 (image check)"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (sandbox)
            info["http_status"] = resp.status
            info["content_type"] = resp.headers.get("Content-Type")
            declared = resp.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > MAX_IMAGE_BYTES:
                info["bytes"] = int(declared)
                return "InvalidImageSize", info
            data = resp.read(MAX_IMAGE_BYTES + 1)
    except urllib.error.HTTPError as exc:
        info["http_status"] = exc.code
        exc.close()
        return "INVALID_IMAGE_URL", info
    except Exception as exc:
        info["error"] = f"{type(exc).__name__}: {exc}"
        return "INVALID_IMAGE_URL", info
    code, more = inspect_image_bytes(data)
    info.update(more)
    return code, info


# --------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------


@dataclass
class ApixoTask:
    """One accepted generation task and its simulated timeline."""

    task_id: str
    model: str
    mode: str
    prompt: str
    duration: int | None
    output_seconds: int
    resolution: str
    price: Decimal
    request_type: str
    callback_url: str | None
    provider: str | None
    image_url: str | None
    api_key: str
    created: float
    generation_seconds: float
    planned_fail: tuple[str, str] | None = None
    image_check: str = "n/a"  # n/a | pending | ok | failed
    image_info: dict[str, Any] = field(default_factory=dict)
    image_fail: tuple[str, str] | None = None
    image_done_at: float | None = None
    state: str = "pending"
    completed: float | None = None
    fail_code: str | None = None
    fail_msg: str | None = None
    result_url: str | None = None
    result_expires: int | None = None
    charged: bool = False
    callback_attempts: list[dict] = field(default_factory=list)

    @property
    def create_ms(self) -> int:
        return int(self.created * 1000)

    def status_data(self) -> dict[str, Any]:
        """``data`` of the status response ("Status response fields")."""
        data: dict[str, Any] = {"taskId": self.task_id, "state": self.state}
        if self.state == "success":
            data["resultJson"] = json_string({"resultUrls": [self.result_url]})
        elif self.state == "failed":
            data["failCode"] = self.fail_code
            data["failMsg"] = self.fail_msg
        data["createTime"] = self.create_ms
        if self.completed is not None:
            complete_ms = int(self.completed * 1000)
            data["completeTime"] = complete_ms
            data["costTime"] = complete_ms - self.create_ms
        return data

    def snapshot(self) -> dict[str, Any]:
        return {
            "taskId": self.task_id,
            "model": self.model,
            "mode": self.mode,
            "prompt": self.prompt,
            "duration": self.duration,
            "output_seconds": self.output_seconds,
            "resolution": self.resolution,
            "price": float(self.price),
            "request_type": self.request_type,
            "callback_url": self.callback_url,
            "provider": self.provider,
            "image_url": self.image_url,
            "image_check": self.image_check,
            "image_info": dict(self.image_info),
            "api_key": self.api_key,
            "created": self.created,
            "generation_seconds": self.generation_seconds,
            "state": self.state,
            "charged": self.charged,
            "result_url": self.result_url,
            "result_expires": self.result_expires,
            "callback_attempts": [dict(a) for a in self.callback_attempts],
            "status": self.status_data(),
        }


def json_string(obj: Any) -> str:
    """Compact JSON text (``resultJson`` is a JSON *string*, "Status response fields")."""
    return json.dumps(obj, separators=(",", ":"))


def _is_http_url(value: Any) -> bool:
    if not isinstance(value, str) or not value.strip():
        return False
    parts = urllib.parse.urlsplit(value.strip())
    return parts.scheme in ("http", "https") and bool(parts.hostname)


class _Refused(Exception):
    def __init__(self, status: int, message: str, detail: str, headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.detail, self.headers = status, message, detail, dict(headers or {})


# --------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------


@register_sandbox("apixo")
class ApixoSandbox(SandboxServer):
    """The APIXO sandbox server (see the module docstring for the protocol).

    State (tasks, balance, counters) lives on the instance and is guarded by
    ``self.lock``; a ticker thread finalises tasks on time and fires callbacks
    even when nobody polls.
    """

    api_prefix = "/api/v1"
    knob_specs = with_defaults(COMMON_KNOBS, api_keys=[DEFAULT_API_KEY])

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **knobs: Any):
        super().__init__(host, port, **knobs)
        self._tasks: dict[str, ApixoTask] = {}
        self._balance = self._starting_balance()

    # ---- state helpers ---------------------------------------------------

    def _starting_balance(self) -> Decimal:
        knob = self.knobs["balance"]
        return INITIAL_BALANCE if knob is None else Decimal(str(knob))

    def on_knobs_changed(self, changed: Mapping[str, Any]) -> None:
        if changed.get("balance") is not None:
            self._balance = Decimal(str(changed["balance"]))

    def reset_state(self) -> None:
        self._tasks.clear()
        self._balance = self._starting_balance()

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
                if task.state not in FINAL_STATES:
                    jobs.append(self._advance(task, now))
        self._send_callbacks(jobs)

    def resolve_file(self, name: str) -> Path | None:
        m = re.fullmatch(r"(task_[0-9a-f]+)\.mp4", name)
        if not m:
            return None
        with self.lock:
            task = self._tasks.get(m.group(1))
            if task is None or task.state != "success":
                return None
        return SAMPLE_MP4

    def _advance(self, task: ApixoTask, now: float) -> ApixoTask | None:
        """Move ``task`` along its timeline (call under ``self.lock``).

        ``pending`` for the first 15 % of the generation time (at least
        0.5 s), then ``processing``, then final once the generation time has
        passed and the input image (if any) has been checked.  Returns the
        task when it just became final and wants a callback.
        """
        if task.state in FINAL_STATES:
            return None
        gen = task.generation_seconds
        elapsed = now - task.created
        pending_for = min(gen, max(0.5, 0.15 * gen))
        if elapsed < pending_for:
            task.state = "pending"
            return None
        if elapsed < gen or task.image_check == "pending":
            task.state = "processing"
            return None
        task.completed = max(task.created + gen, task.image_done_at or 0.0)
        failure = task.image_fail or task.planned_fail
        if failure:
            task.state = "failed"
            task.fail_code, task.fail_msg = failure
        else:
            task.state = "success"
            task.result_expires = math.ceil(task.completed + self.knobs["result_ttl"])
            task.result_url = self.signed_file_url(f"{task.task_id}.mp4", task.result_expires)
            self._balance -= task.price  # charged on success only
            task.charged = True
        return task if task.request_type == "callback" else None

    def _send_callbacks(self, tasks: list[ApixoTask | None]) -> None:
        """POST the final status shape to ``callback_url`` ("Webhook callback mode")."""
        for task in tasks:
            if task is None:
                continue
            with self.lock:
                payload = {"code": 200, "message": "success", "data": task.status_data()}

            def on_attempt(record: dict, task: ApixoTask = task) -> None:
                with self.lock:
                    task.callback_attempts.append({k: record[k] for k in ("attempt", "status", "error", "ok")})

            self.callbacks.send(
                task.callback_url,
                payload,
                delays=self.knobs["callback_retry_delays"],
                timeout=self.knobs["callback_timeout"],
                context={"task_id": task.task_id},
                on_attempt=on_attempt,
            )

    # ---- protocol --------------------------------------------------------

    def error_response(self, status: int, message: str, detail: str, headers: Mapping[str, str] | None = None) -> Response:
        """APIXO's error body ``{"code", "message", "data": {"error"}}`` (quickstart / errors)."""
        return json_response(status, {"code": status, "message": message, "data": {"error": detail}}, headers)

    def _authorised_key(self, request: ApiRequest) -> str | None:
        """``Authorization: Bearer YOUR_API_KEY`` ("Endpoint and authentication")."""
        header = request.header("Authorization") or ""
        scheme, _, key = header.strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return None
        return key if key in self.knobs["api_keys"] else None

    def handle_api(self, request: ApiRequest) -> Response:
        """Route an ``/api/v1`` request after authentication."""
        key = self._authorised_key(request)
        if key is None:
            return self.error_response(401, "Unauthorized", "Missing or invalid API key")
        parts = [p for p in request.path.split("/") if p]
        try:
            if len(parts) == 2 and parts[0] == "generateTask":
                if request.method != "POST":
                    return self.error_response(405, "Method not allowed", "use POST", {"Allow": "POST"})
                return self._submit(request, parts[1], key)
            if len(parts) == 2 and parts[0] == "statusTask":
                if request.method not in ("GET", "HEAD"):
                    return self.error_response(405, "Method not allowed", "use GET", {"Allow": "GET"})
                return self._status(request, parts[1])
            if parts == ["apikeys", "current-balance"]:
                if request.method not in ("GET", "HEAD"):
                    return self.error_response(405, "Method not allowed", "use GET", {"Allow": "GET"})
                return self._balance_response()
        except _Refused as exc:
            return self.error_response(exc.status, exc.message, exc.detail, exc.headers)
        return self.error_response(404, "Not found", f"no endpoint {request.method} /api/v1{request.path}")

    def _balance_response(self) -> Response:
        """``GET /apikeys/current-balance`` -> ``{"code": 200, "data": <USD float>}``."""
        with self.lock:
            value = float(round(self._balance, 6))
        return json_response(200, {"code": 200, "data": value})

    def _status(self, request: ApiRequest, model: str) -> Response:
        """``GET /statusTask/{model}?taskId=`` ("Poll for result")."""
        if model not in MODELS:
            raise _Refused(404, "Model not found", f"unknown model {model!r}")
        task_id = (request.query.get("taskId") or [""])[0]
        if not task_id:
            raise _Refused(400, "Invalid request", "taskId query parameter is required")
        with self.lock:
            task = self._tasks.get(task_id)
            if task is None or task.model != model:
                raise _Refused(404, "Task not found", f"no task {task_id!r} for model {model}")
            job = self._advance(task, time.time())
            body = {"code": 200, "message": "success", "data": task.status_data()}
        self._send_callbacks([job])
        return json_response(200, body)

    def _validate(self, model: str, body: Any) -> dict[str, Any]:
        """Check a submit body; raise 400 as the docs' "Validation notes" say.

        * ``request_type``: ``async`` (default) or ``callback``; ``callback_url``
          required with ``callback`` ("Parameters"; the docs ask for public
          HTTPS, the sandbox accepts any http(s) URL so loopback tests work);
        * ``provider``: ``auto`` | ``value`` | ``official`` (fast page);
        * missing ``input``; missing or empty ``prompt``; unsupported mode
          (``Invalid mode type``; text modes on hailuo-2-3-fast);
        * image mode without ``image_urls`` or with 0 or more than 1 item; an
          item that is not an http(s) URL ("invalid image URL shape", HTTP errors);
        * standard mode without ``duration`` or with one other than 6 or 10;
          pro modes ignore ``duration``.
        """
        if not isinstance(body, dict):
            raise _Refused(400, "Invalid request body", "request body must be a JSON object")
        request_type = body.get("request_type")
        if request_type is None:
            request_type = "async"
        if request_type not in REQUEST_TYPES:
            raise _Refused(400, "Invalid request_type", "request_type must be 'async' or 'callback'")
        callback_url = body.get("callback_url")
        if request_type == "callback":
            if callback_url is None or callback_url == "":
                raise _Refused(400, "Missing callback_url", "callback_url is required when request_type is callback")
            if not _is_http_url(callback_url):
                raise _Refused(400, "Invalid callback_url", "callback_url must be an http(s) URL")
        else:
            callback_url = None
        provider = body.get("provider")
        if provider is not None and provider not in ROUTING_PROVIDERS:
            raise _Refused(400, "Invalid provider", "provider must be one of: auto, value, official")

        inp = body.get("input")
        if inp is None:
            raise _Refused(400, "Missing input", "input is required")
        if not isinstance(inp, dict):
            raise _Refused(400, "Invalid input", "input must be an object")
        prompt = inp.get("prompt")
        if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
            raise _Refused(400, "Missing prompt", "input.prompt is required and must not be empty")
        if not isinstance(prompt, str):
            raise _Refused(400, "Invalid prompt", "input.prompt must be a string")
        mode = inp.get("mode")
        modes = MODELS[model]
        if not isinstance(mode, str) or mode not in modes:
            raise _Refused(400, "Invalid mode type", f"mode {mode!r} is not supported by {model}; supported: {', '.join(modes)}")
        rule = modes[mode]

        image_url = None
        if rule.needs_image:
            urls = inp.get("image_urls")
            if urls is None:
                raise _Refused(400, "Missing image_urls", f"image_urls is required for {mode}")
            if not isinstance(urls, list):
                raise _Refused(400, "Invalid image_urls", "image_urls must be an array with exactly 1 URL")
            if len(urls) != 1:
                raise _Refused(400, "Invalid image_urls", f"image_urls must contain exactly 1 item, got {len(urls)}")
            if not _is_http_url(urls[0]):
                raise _Refused(400, "Invalid image URL", "image_urls[0] must be an http(s) URL")
            image_url = urls[0].strip()

        duration = None
        if rule.family == "standard":
            duration = inp.get("duration")
            if duration is None:
                raise _Refused(400, "Missing duration", f"duration is required for {mode} (6 or 10)")
            if isinstance(duration, bool) or not isinstance(duration, int) or duration not in STANDARD_DURATIONS:
                raise _Refused(400, "Invalid duration", f"duration must be 6 or 10, got {duration!r}")
        return {
            "request_type": request_type,
            "callback_url": callback_url,
            "provider": provider,
            "mode": mode,
            "rule": rule,
            "prompt": prompt,
            "image_url": image_url,
            "duration": duration,
        }

    def _submit(self, request: ApiRequest, model: str, key: str) -> Response:
        """``POST /generateTask/{model}`` ("Copy-paste async quickstart", "Request body")."""
        if model not in MODELS:
            raise _Refused(404, "Model not found", f"unknown model {model!r}; available: {', '.join(MODELS)}")
        ctype = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise _Refused(400, "Invalid request body", "Content-Type must be application/json")
        try:
            body = json.loads(request.body.decode("utf-8")) if request.body else None
        except (ValueError, UnicodeDecodeError):
            raise _Refused(400, "Invalid request body", "request body is not valid JSON") from None
        v = self._validate(model, body)
        prompt: str = v["prompt"]

        m = _MARK_HTTP.search(prompt)
        if m and 400 <= int(m.group(1)) <= 599:
            status = int(m.group(1))
            headers = {"Retry-After": "1"} if status == 429 else {}
            raise _Refused(status, HTTP_MESSAGES.get(status, "Error"), f"sandbox marker [http:{status}]", headers)

        planned_fail = None
        m = _MARK_FAIL.search(prompt)
        if m:
            code = m.group(1) or "PromptInvalid"
            planned_fail = (code, FAIL_MESSAGES.get(code, f"Task failed ({code})"))
        elif random.random() < self.knobs["fail_rate"]:
            planned_fail = ("GENERATION_FAILED", FAIL_MESSAGES["GENERATION_FAILED"])
        m = _MARK_SECONDS.search(prompt)
        generation = float(m.group(1)) if m else float(self.knobs["generation_seconds"])

        rule: ModeRule = v["rule"]
        price = price_for(model, v["mode"], v["duration"])
        now = time.time()
        task = ApixoTask(
            task_id="task_" + secrets.token_hex(12),
            model=model,
            mode=v["mode"],
            prompt=prompt,
            duration=v["duration"],
            output_seconds=rule.fixed_seconds or v["duration"],
            resolution=rule.resolution,
            price=price,
            request_type=v["request_type"],
            callback_url=v["callback_url"],
            provider=v["provider"],
            image_url=v["image_url"],
            api_key=key,
            created=now,
            generation_seconds=generation,
            planned_fail=planned_fail,
            image_check="pending" if v["image_url"] else "n/a",
        )
        with self.lock:
            if self.knobs["balance"] is not None:
                for t in self._tasks.values():
                    self._advance(t, now)
                reserved = sum((t.price for t in self._tasks.values() if t.state not in FINAL_STATES), Decimal(0))
                available = self._balance - reserved
                if price > available:
                    raise _Refused(402, "Insufficient balance", f"task costs {price} USD, available balance is {available} USD")
            self._tasks[task.task_id] = task
        self.log.update(request.log_entry, task_id=task.task_id)
        if task.image_url:
            threading.Thread(target=self._check_image, args=(task,), name="apixo-image-check", daemon=True).start()

        if _MARK_HANG.search(prompt):
            self.sleep(self.knobs["hang_seconds"])
        return json_response(200, {"code": 200, "message": "success", "data": {"taskId": task.task_id}})

    def _check_image(self, task: ApixoTask) -> None:
        code, info = fetch_and_inspect_image(task.image_url or "", self.knobs["image_fetch_timeout"])
        with self.lock:
            task.image_info = info
            task.image_done_at = time.time()
            if code:
                task.image_check = "failed"
                task.image_fail = (code, FAIL_MESSAGES[code])
            else:
                task.image_check = "ok"
