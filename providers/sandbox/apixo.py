"""APIXO sandbox: APIXO's Hailuo 2.3 protocol (``/api/v1/generateTask``, ``statusTask``, balance).

The protocol as implemented, its knobs and prompt markers are described in
README.md ("APIXO protocol").  Written only from APIXO's pages (seeds ``001``
"Hailuo 2.3" and ``002`` "hailuo-2-3-fast"; ``providers.md``, section APIXO).
Specific here: errors ``{"code", "message", "data": {"error"}}``; ``resultJson``
is a JSON *string*; the balance is charged on success only; input images must
be JPEG/PNG, short side > 300 px, aspect ratio strictly inside 2:5..5:2, at most
20 MB (fail codes ``INVALID_IMAGE_URL``, ``ImageFormatIncorrect``,
``InvalidImageSize``); callbacks count as received on HTTP 200 only.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .common import (
    COMMON_KNOBS,
    MAX_IMAGE_BYTES,
    ApiRequest,
    Refused,
    Response,
    TaskSandbox,
    fetch_image,
    image_size,
    is_http_url,
    json_response,
    register_sandbox,
    sniff_image,
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
    """Return ``(format, width, height)`` for PNG or JPEG bytes (``common.image_size``).

    Raises ``ValueError("format")`` for anything else (ImageFormatIncorrect)
    and ``ValueError("corrupt")`` for a truncated or malformed header.
    """
    if sniff_image(data) not in ("png", "jpeg"):
        raise ValueError("format")
    return image_size(data)


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
    got = fetch_image(url, timeout, "apixo-sandbox/1 (image check)", trust_length=True)
    info: dict[str, Any] = {"url": url}
    if got.http_status is not None:
        info["http_status"] = got.http_status
    if got.error:
        info["error"] = got.error
    if got.data is None and got.declared_bytes is None:
        return "INVALID_IMAGE_URL", info
    info["content_type"] = got.content_type
    if got.declared_bytes is not None:
        info["bytes"] = got.declared_bytes
        return "InvalidImageSize", info
    code, more = inspect_image_bytes(got.data or b"")
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
    image_error: str | None = None  # the failCode of a failed image check
    image_done_at: float | None = None
    status: str = "pending"  # APIXO's "state"
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
        data: dict[str, Any] = {"taskId": self.task_id, "state": self.status}
        if self.status == "success":
            data["resultJson"] = json_string({"resultUrls": [self.result_url]})
        elif self.status == "failed":
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
            "state": self.status,
            "charged": self.charged,
            "result_url": self.result_url,
            "result_expires": self.result_expires,
            "callback_attempts": [dict(a) for a in self.callback_attempts],
            "status": self.status_data(),
        }


def json_string(obj: Any) -> str:
    """Compact JSON text (``resultJson`` is a JSON *string*, "Status response fields")."""
    return json.dumps(obj, separators=(",", ":"))


# --------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------


@register_sandbox("apixo")
class ApixoSandbox(TaskSandbox):
    """The APIXO sandbox server (see README.md, "APIXO protocol").

    State (tasks, balance) lives on the instance and is guarded by
    ``self.lock``; a ticker thread finalises tasks on time and fires callbacks
    even when nobody polls.
    """

    api_prefix = "/api/v1"
    knob_specs = with_defaults(COMMON_KNOBS, api_keys=[DEFAULT_API_KEY])
    final_states = FINAL_STATES
    video_status = "success"
    file_name = re.compile(r"(task_[0-9a-f]+)\.mp4")

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **knobs: Any):
        super().__init__(host, port, **knobs)
        self._balance = self._starting_balance()

    # ---- state helpers ---------------------------------------------------

    def _starting_balance(self) -> Decimal:
        knob = self.knobs["balance"]
        return INITIAL_BALANCE if knob is None else Decimal(str(knob))

    def on_knobs_changed(self, changed: Mapping[str, Any]) -> None:
        if changed.get("balance") is not None:
            self._balance = Decimal(str(changed["balance"]))

    def reset_accounts(self) -> None:
        self._balance = self._starting_balance()

    def advance(self, task: ApixoTask, now: float) -> ApixoTask | None:
        """Move ``task`` along its timeline (call under ``self.lock``).

        ``pending`` for the first 15 % of the generation time (at least
        0.5 s), then ``processing``, then final once the generation time has
        passed and the input image (if any) has been checked.  Returns the
        task when it just became final and wants a callback.
        """
        if task.status in FINAL_STATES:
            return None
        gen = task.generation_seconds
        elapsed = now - task.created
        pending_for = min(gen, max(0.5, 0.15 * gen))
        if elapsed < pending_for:
            task.status = "pending"
            return None
        if elapsed < gen or task.image_check == "pending":
            task.status = "processing"
            return None
        task.completed = max(task.created + gen, task.image_done_at or 0.0)
        failure = (task.image_error, FAIL_MESSAGES[task.image_error]) if task.image_error else task.planned_fail
        if failure:
            task.status = "failed"
            task.fail_code, task.fail_msg = failure
        else:
            task.status = "success"
            self.sign_result(task, task.completed)
            self._balance -= task.price  # charged on success only
            task.charged = True
        return task if task.request_type == "callback" else None

    def deliver(self, jobs: list[ApixoTask | None]) -> None:
        """POST the final status shape to ``callback_url`` ("Webhook callback mode"); only HTTP 200 counts."""
        for task in jobs:
            if task is None:
                continue
            with self.lock:
                payload = {"code": 200, "message": "success", "data": task.status_data()}
            self.send_callback(task, task.callback_url or "", payload, context={"task_id": task.task_id},
                               ok_statuses=(200,))

    # ---- protocol --------------------------------------------------------

    def error_response(self, status: int, message: str, detail: str, headers: Mapping[str, str] | None = None) -> Response:
        """APIXO's error body ``{"code", "message", "data": {"error"}}`` (quickstart / errors)."""
        return json_response(status, {"code": status, "message": message, "data": {"error": detail}}, headers)

    def bad_request(self, message: str) -> Refused:
        return Refused(400, "Invalid request body", message)

    def route(self, request: ApiRequest) -> Response:
        """Route an ``/api/v1`` request after ``Authorization: Bearer KEY`` ("Endpoint and authentication")."""
        key = self.bearer_key(request)
        if key is None:
            return self.error_response(401, "Unauthorized", "Missing or invalid API key")
        parts = [p for p in request.path.split("/") if p]
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
        return self.error_response(404, "Not found", f"no endpoint {request.method} /api/v1{request.path}")

    def _balance_response(self) -> Response:
        """``GET /apikeys/current-balance`` -> ``{"code": 200, "data": <USD float>}``."""
        with self.lock:
            value = float(round(self._balance, 6))
        return json_response(200, {"code": 200, "data": value})

    def _status(self, request: ApiRequest, model: str) -> Response:
        """``GET /statusTask/{model}?taskId=`` ("Poll for result")."""
        if model not in MODELS:
            raise Refused(404, "Model not found", f"unknown model {model!r}")
        task_id = (request.query.get("taskId") or [""])[0]
        if not task_id:
            raise Refused(400, "Invalid request", "taskId query parameter is required")
        with self.lock:
            task = self._tasks.get(task_id)
            if task is None or task.model != model:
                raise Refused(404, "Task not found", f"no task {task_id!r} for model {model}")
            job = self.advance(task, time.time())
            body = {"code": 200, "message": "success", "data": task.status_data()}
        self.deliver([job])
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
            raise Refused(400, "Invalid request body", "request body must be a JSON object")
        request_type = body.get("request_type")
        if request_type is None:
            request_type = "async"
        if request_type not in REQUEST_TYPES:
            raise Refused(400, "Invalid request_type", "request_type must be 'async' or 'callback'")
        callback_url = body.get("callback_url")
        if request_type == "callback":
            if callback_url is None or callback_url == "":
                raise Refused(400, "Missing callback_url", "callback_url is required when request_type is callback")
            if not is_http_url(callback_url):
                raise Refused(400, "Invalid callback_url", "callback_url must be an http(s) URL")
        else:
            callback_url = None
        provider = body.get("provider")
        if provider is not None and provider not in ROUTING_PROVIDERS:
            raise Refused(400, "Invalid provider", "provider must be one of: auto, value, official")

        inp = body.get("input")
        if inp is None:
            raise Refused(400, "Missing input", "input is required")
        if not isinstance(inp, dict):
            raise Refused(400, "Invalid input", "input must be an object")
        prompt = inp.get("prompt")
        if prompt is None or (isinstance(prompt, str) and not prompt.strip()):
            raise Refused(400, "Missing prompt", "input.prompt is required and must not be empty")
        if not isinstance(prompt, str):
            raise Refused(400, "Invalid prompt", "input.prompt must be a string")
        mode = inp.get("mode")
        modes = MODELS[model]
        if not isinstance(mode, str) or mode not in modes:
            raise Refused(400, "Invalid mode type", f"mode {mode!r} is not supported by {model}; supported: {', '.join(modes)}")
        rule = modes[mode]

        image_url = None
        if rule.needs_image:
            urls = inp.get("image_urls")
            if urls is None:
                raise Refused(400, "Missing image_urls", f"image_urls is required for {mode}")
            if not isinstance(urls, list):
                raise Refused(400, "Invalid image_urls", "image_urls must be an array with exactly 1 URL")
            if len(urls) != 1:
                raise Refused(400, "Invalid image_urls", f"image_urls must contain exactly 1 item, got {len(urls)}")
            if not is_http_url(urls[0]):
                raise Refused(400, "Invalid image URL", "image_urls[0] must be an http(s) URL")
            image_url = urls[0].strip()

        duration = None
        if rule.family == "standard":
            duration = inp.get("duration")
            if duration is None:
                raise Refused(400, "Missing duration", f"duration is required for {mode} (6 or 10)")
            if isinstance(duration, bool) or not isinstance(duration, int) or duration not in STANDARD_DURATIONS:
                raise Refused(400, "Invalid duration", f"duration must be 6 or 10, got {duration!r}")
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
            raise Refused(404, "Model not found", f"unknown model {model!r}; available: {', '.join(MODELS)}")
        v = self._validate(model, self.json_body(request))
        prompt: str = v["prompt"]
        marks = self.markers(prompt)
        if marks.http_status:
            status = marks.http_status
            headers = {"Retry-After": "1"} if status == 429 else {}
            raise Refused(status, HTTP_MESSAGES.get(status, "Error"), f"sandbox marker [http:{status}]", headers)
        planned_fail = None
        if marks.fail:
            code = marks.fail_code or "PromptInvalid"
            planned_fail = (code, FAIL_MESSAGES.get(code, f"Task failed ({code})"))
        elif self.random_failure():
            planned_fail = ("GENERATION_FAILED", FAIL_MESSAGES["GENERATION_FAILED"])
        generation = self.generation_time(marks)

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
                    self.advance(t, now)
                reserved = sum((t.price for t in self._tasks.values() if t.status not in FINAL_STATES), Decimal(0))
                available = self._balance - reserved
                if price > available:
                    raise Refused(402, "Insufficient balance", f"task costs {price} USD, available balance is {available} USD")
            self._tasks[task.task_id] = task
        self.log.update(request.log_entry, task_id=task.task_id)
        if task.image_url:
            url, timeout = task.image_url, self.knobs["image_fetch_timeout"]
            self.check_image_later(task, lambda: fetch_and_inspect_image(url, timeout))
        self.hang_if_asked(marks)
        return json_response(200, {"code": 200, "message": "success", "data": {"taskId": task.task_id}})
