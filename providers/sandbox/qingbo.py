"""qingbo sandbox: qingbo's (QWave API) ``/v1/tasks`` protocol (submit, query, cancel).

The protocol as implemented, its knobs and prompt markers are described in
README.md ("qingbo protocol").  Written only from qingbo's pages (seed ``003``
"Hailuo" and its newer version, "Query Task Status", "Cancel Task", "Task
System", "Request / Response"; ``providers.md``, section qingbo).  Specific
here: errors ``{"error": {"message", "code"}}`` with the sandbox's own codes;
per-model rules (:data:`MODELS`); a task of another key answers 404; quota
charged at submit and refunded on cancel (documented) or failure (assumed);
images may be URLs, ``data:`` URLs or bare Base64 and are only sniffed (no size
rule is documented); the callback payload and its ``callback_events`` filter
are INVENTED; knobs for the docs' ambiguities (URL as list, timestamp units);
``[queue:N]``; sandbox-only ``GET /_sandbox/quota``.
"""

from __future__ import annotations

import base64
import binascii
import re
import secrets
import time
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .common import (
    COMMON_KNOBS,
    MAX_IMAGE_BYTES,
    ApiRequest,
    Knob,
    Refused,
    Response,
    TaskSandbox,
    fetch_image,
    is_http_url,
    json_response,
    marker_number,
    parse_bool,
    register_sandbox,
    sniff_image,
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
MAX_PROMPT_CHARS = 2000  # images: common.MAX_IMAGE_BYTES is a fetch limit here, not a documented rule

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


def price_for(model: str, resolution: str, duration: int) -> Decimal:
    """USD price of one task: per-second rate of (model, resolution) x duration."""
    rates = MODELS[model].usd_per_second or {}
    return rates.get(resolution, FALLBACK_USD_PER_SECOND) * int(duration)


# --------------------------------------------------------------------------
# Knobs
# --------------------------------------------------------------------------

def _is_unset(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in {"", "none", "null", "auto"})


def _parse_optional_bool(value: Any) -> bool | None:
    return None if _is_unset(value) else parse_bool(value)


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
        Knob("url_as_list", True, parse_bool, "result.videos[].url as a list of strings (false: a plain string)"),
        Knob("timestamps_in_seconds", False, parse_bool, "created_at/start_time/completed_at/expires_at in Unix seconds (false: ms)"),
        Knob("expires_at_in_seconds", None, _parse_optional_bool, "unit of expires_at alone (unset: follow timestamps_in_seconds)"),
        Knob("quota", None, _parse_quota, "account quota in USD (unset: unlimited); setting it sets the remaining quota; submits beyond it answer 402"),
    ]:
        specs[knob.name] = knob
    return specs


# --------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------


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
        got = fetch_image(ref, timeout, "qingbo-sandbox/1 (image fetch)")
        if got.http_status is not None:
            info["http_status"] = got.http_status
        if got.data is None:
            if got.error:
                info["error"] = got.error
                return f"cannot fetch image {ref}: {info['error']}", info
            return f"cannot fetch image {ref}: HTTP {got.http_status}", info
        info["content_type"] = got.content_type
        data = got.data
    info["bytes"] = len(data)
    if len(data) > MAX_IMAGE_BYTES:
        return "image is larger than the sandbox's 20 MB fetch limit", info
    fmt = sniff_image(data)
    info["format"] = fmt
    if fmt is None:
        where = ref if kind == "url" else f"{kind} image"
        return f"{where} is not an image (content type {info.get('content_type') or 'unknown'})", info
    return None, info


def _load_images(images: list[tuple[str, str]], timeout: float) -> tuple[str | None, list[dict[str, Any]]]:
    """Load each ``(field, reference)`` in turn; stop at the first problem, named ``"<field>: <problem>"``."""
    infos = []
    for where, ref in images:
        err, info = load_image(ref, timeout)
        info["field"] = where
        infos.append(info)
        if err:
            return f"{where}: {err}", infos
    return None, infos


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


def _bad(message: str) -> Refused:
    return Refused(400, message, code="invalid_request")


# --------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------


@register_sandbox("qingbo")
class QingboSandbox(TaskSandbox):
    """The qingbo sandbox server (see README.md, "qingbo protocol").

    State lives on the instance and is guarded by ``self.lock``; the ticker
    thread moves tasks along and fires callbacks even when nobody polls.
    """

    api_prefix = ""
    knob_specs = _knob_specs()
    final_states = FINAL_STATUSES
    video_status = "completed"
    file_name = re.compile(r"(task-wave[0-9a-f]+)\.mp4")

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **knobs: Any):
        super().__init__(host, port, **knobs)
        start = self.knobs["quota"] if self.knobs["quota"] is not None else self.knobs["balance"]
        self.knobs.update({"quota": start, "balance": start})
        self._quota_left = self._starting_quota()
        self._spent = Decimal(0)

    def control_route(self, route: str, method: str) -> Response | None:
        """``GET /_sandbox/quota``: ``{quota, remaining, spent}`` in USD."""
        if route == "quota" and method in ("GET", "HEAD"):
            return json_response(200, self.quota_snapshot())
        return None

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

    def reset_accounts(self) -> None:
        self._spent = Decimal(0)
        self._quota_left = self._starting_quota()

    def task_snapshot(self, task: QingboTask, now: float) -> dict[str, Any]:
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

    def advance(self, task: QingboTask, now: float) -> QingboTask | None:
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
            self.sign_result(task, finished)
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

    def deliver(self, jobs: list[QingboTask | None]) -> None:
        """POST the task object to ``callback_url`` (payload NOT FOUND in the docs: invented)."""
        for task in jobs:
            if task is None:
                continue
            with self.lock:
                payload = self._task_object(task, time.time())
            self.send_callback(task, task.callback_url or "", payload,
                               context={"task_id": task.task_id, "task_status": task.status})

    # ---- protocol --------------------------------------------------------

    def error_response(self, status: int, message: str, detail: str, headers: Mapping[str, str] | None = None) -> Response:
        """The task endpoints' error body ``{"error": {"message", "code"}}`` ("Request / Response")."""
        text = f"{message}: {detail}" if detail and detail != message else message
        return self._error(status, text, _ERROR_CODES.get(status, "error"), headers)

    @staticmethod
    def _error(status: int, message: str, code: str, headers: Mapping[str, str] | None = None) -> Response:
        return json_response(status, {"error": {"message": message, "code": code}}, headers)

    def bad_request(self, message: str) -> Refused:
        return _bad(message)

    def refusal_response(self, exc: Refused, request: ApiRequest) -> Response:
        return self._error(exc.status, exc.message, exc.code or _ERROR_CODES.get(exc.status, "error"), exc.headers)

    def route(self, request: ApiRequest) -> Response:
        parts = [p for p in request.path.split("/") if p]
        if parts[:2] != ["v1", "tasks"] or len(parts) > 4 or (len(parts) == 4 and parts[3] != "cancel"):
            return self._error(404, f"no endpoint {request.method} {request.path}", "not_found")
        key = self.bearer_key(request)
        if key is None:
            return self._error(401, "Authentication failed: missing or invalid API key", "invalid_api_key")
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

    def _own_task(self, task_id: str, key: str) -> QingboTask:
        task = self._tasks.get(task_id)
        if task is None or task.api_key != key:
            raise Refused(404, f"task {task_id!r} not found", code="not_found")
        return task

    def _status(self, task_id: str, key: str) -> Response:
        now = time.time()
        with self.lock:
            task = self._own_task(task_id, key)
            job = self.advance(task, now)
            body = self._task_object(task, now)
        self.deliver([job])
        return json_response(200, body)

    def _cancel(self, task_id: str, key: str) -> Response:
        """``POST /v1/tasks/{task_id}/cancel`` ("Cancel Task"): queued only; quota refunded."""
        now = time.time()
        with self.lock:
            task = self._own_task(task_id, key)
            job = self.advance(task, now)
            if task.status != "queued":
                reason = "it has already started processing" if task.status == "processing" else f"it is already {task.status}"
                refused = Refused(400, f"task {task_id} cannot be cancelled: {reason}; only queued tasks can be cancelled",
                                  code="task_not_cancellable")
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
        self.deliver([job])
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
        if callback_url is not None and not is_http_url(callback_url):
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
        v = self._validate(self.json_body(request))
        prompt: str = v["prompt"]
        marks = self.markers(prompt)
        if marks.http_status:
            status = marks.http_status
            headers = {"Retry-After": "1"} if status == 429 else {}
            message = f"{_HTTP_MESSAGES.get(status, 'Error')} (sandbox marker [http:{status}])"
            raise Refused(status, message, headers=headers, code=_ERROR_CODES.get(status, "error"))
        planned_fail = None
        if marks.fail:
            code = marks.fail_code or "task_failed"
            planned_fail = (code, f"Task failed ({code}; sandbox marker)")
        elif self.random_failure():
            planned_fail = ("task_failed", "Video generation failed (sandbox fail_rate)")
        generation = self.generation_time(marks)
        queued = marker_number(prompt, "queue")
        queue = queued if queued is not None else float(self.knobs["queue_seconds"])

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
                raise Refused(402, f"Insufficient balance: the task costs {task.price} USD, the remaining quota is {left} USD",
                              code="insufficient_quota")
            self._charge(task)
            self._tasks[task.task_id] = task
        self.log.update(request.log_entry, task_id=task.task_id)
        if task.images:
            images, timeout = list(task.images), self.knobs["image_fetch_timeout"]
            self.check_image_later(task, lambda: _load_images(images, timeout))
        self.hang_if_asked(marks)
        body = {
            "task_id": task.task_id,
            "model": task.model,
            "action": task.action,
            "status": "queued",
            "created_at": int(task.created if self.knobs["timestamps_in_seconds"] else task.created * 1000),
            "progress": 0,
        }
        return json_response(200, body)
