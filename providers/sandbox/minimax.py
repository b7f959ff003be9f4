"""MiniMax sandbox: MiniMax's own video API (``/v1/video_generation``, query, files/retrieve).

The protocol as implemented, its knobs and prompt markers are described in
README.md ("MiniMax protocol").  Written only from MiniMax's public docs
(platform.minimax.io: "Video Generation", "Query Video Generation Task",
"Retrieve File", "Error Codes"; ``providers.md``, section MiniMax).  Specific
here: most errors are HTTP 200 with a non-zero ``base_resp.status_code``; keys
are separate accounts; images are checked at submit (refused with 2013) and may
come as a data URL, hence a 28 MB body limit; a callback URL must pass a
challenge handshake before any status push, and pushes go out in order, in one
of two shapes (knob ``callback_status_style``); ``[fail:CODE]`` takes a numeric
code and ``[error:CODE]`` refuses the submit itself.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import queue
import re
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .common import (
    COMMON_KNOBS,
    MAX_IMAGE_BYTES,
    SAMPLE_MP4,
    ApiRequest,
    Knob,
    KnobError,
    Refused,
    Response,
    TaskSandbox,
    fetch_image,
    image_size,
    is_http_url,
    json_dumps,
    json_response,
    parse_bool,
    register_sandbox,
    with_defaults,
)

__all__ = ["MiniMaxSandbox", "MODELS", "PRICES", "STATUS_MESSAGES", "image_size", "output_dimensions", "price_of"]

DEFAULT_API_KEY = "sk-sandbox-minimax"

MODEL_STANDARD = "MiniMax-Hailuo-2.3"
MODEL_FAST = "MiniMax-Hailuo-2.3-Fast"
#: model -> needs first_frame_image ("MiniMax-Hailuo-2.3-Fast: image-to-video only").
MODELS: dict[str, bool] = {MODEL_STANDARD: False, MODEL_FAST: True}

DURATIONS = (6, 10)
RESOLUTIONS = ("768P", "1080P")
DEFAULT_DURATION = 6
DEFAULT_RESOLUTION = "768P"
MAX_PROMPT_CHARS = 2000  # images: "Size: < 20MB" (common.MAX_IMAGE_BYTES)
IMAGE_MIME_TYPES = ("image/jpeg", "image/jpg", "image/png", "image/webp")

#: USD per video (providers.md, MiniMax "Price").
PRICES: dict[tuple[str, str, int], Decimal] = {
    (MODEL_STANDARD, "768P", 6): Decimal("0.28"),
    (MODEL_STANDARD, "768P", 10): Decimal("0.56"),
    (MODEL_STANDARD, "1080P", 6): Decimal("0.49"),
    (MODEL_FAST, "768P", 6): Decimal("0.19"),
    (MODEL_FAST, "768P", 10): Decimal("0.32"),
    (MODEL_FAST, "1080P", 6): Decimal("0.33"),
}

#: The "Error Codes" page (messages as listed there).
STATUS_MESSAGES: dict[int, str] = {
    0: "success",
    1000: "unknown error",
    1001: "request timeout",
    1002: "rate limit",
    1004: "not authorized",
    1008: "insufficient balance",
    1024: "internal error",
    1026: "input new_sensitive",
    1027: "output new_sensitive",
    1033: "system error",
    1039: "token limit",
    1041: "conn limit",
    1042: "invisible character ratio limit",
    2013: "invalid params",
    2049: "invalid api key",
}

#: base_resp code used with a non-200 HTTP answer ([http:STATUS], routing errors).
HTTP_TO_CODE = {400: 2013, 401: 1004, 402: 1008, 403: 1004, 404: 2013, 405: 2013, 413: 2013, 429: 1002}

QUERY_STATES = ("Preparing", "Queueing", "Processing")
FINAL_STATES = ("Success", "Fail")
LOWER_STATUS = {"Preparing": "processing", "Queueing": "processing", "Processing": "processing",
                "Success": "success", "Fail": "failed"}

#: Share of the generation time spent in Preparing and in Queueing (the rest is Processing).
PREPARING_SHARE = 0.2
QUEUEING_SHARE = 0.2

_MARK_ERROR = re.compile(r"\[error:(\d{1,6})\]", re.IGNORECASE)
_DATA_URL = re.compile(r"data:(image/[A-Za-z0-9.+-]+);base64,(.*)", re.DOTALL)

LOGIN_FAIL_MSG = "login fail: Please carry the API secret key in the 'Authorization' field of the request header"


def status_message(code: int) -> str:
    return STATUS_MESSAGES.get(code, f"error {code}")


def base_resp(code: int = 0, message: str | None = None) -> dict[str, Any]:
    return {"status_code": code, "status_msg": message if message is not None else status_message(code)}


def price_of(model: str, resolution: str, duration: int) -> Decimal:
    """USD price of one video (per video, whatever the outcome of the prompt)."""
    return PRICES[(model, resolution, duration)]


# --------------------------------------------------------------------------
# Knobs
# --------------------------------------------------------------------------


def _choice(*allowed: Any) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        for option in allowed:
            if value == option or (isinstance(value, str) and value.strip() == str(option)):
                return option
        raise KnobError(f"expected one of {', '.join(map(str, allowed))}, got {value!r}")

    return parse


def _positive(value: Any) -> float:
    if isinstance(value, bool):
        raise KnobError("expected a number, got a boolean")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise KnobError(f"expected a number, got {value!r}") from None
    if number <= 0:
        raise KnobError("must be > 0")
    return number


def _knob_specs() -> dict[str, Knob]:
    specs = with_defaults(COMMON_KNOBS, api_keys=[DEFAULT_API_KEY])
    extra = [
        Knob("rate_limit_http", False, parse_bool,
             "rate_limit_every answers HTTP 429 (true) instead of HTTP 200 with base_resp 1002 (false)"),
        Knob("challenge_timeout", 3.0, _positive, "seconds a callback receiver has to echo the challenge"),
        Knob("callback_status_style", "lower", _choice("lower", "query"),
             "callback status values: lower (processing/success/failed) or query (Preparing..Fail)"),
        Knob("invalid_key_code", 1004, _choice(1004, 2049), "base_resp code for a key that is not accepted"),
        Knob("file_id_as_string", False, parse_bool, "file.file_id in /v1/files/retrieve as a string (default: integer)"),
        Knob("check_images", True, parse_bool, "fetch/decode first_frame_image and check format, size and ratio"),
    ]
    specs.update({k.name: k for k in extra})
    return specs


def output_dimensions(resolution: str, image: tuple[int, int] | None) -> tuple[int, int]:
    """Video width and height: 16:9 for text-to-video; the first frame's ratio otherwise."""
    short = 1080 if resolution == "1080P" else 768
    if not image or not image[0] or not image[1]:
        return (1920, 1080) if short == 1080 else (1366, 768)
    width, height = image

    def even(x: float) -> int:
        return max(2, int(round(x / 2.0)) * 2)

    if width >= height:
        return even(short * width / height), short
    return short, even(short * height / width)


def _refused(code: int, detail: str | None = None, http_status: int = 200,
             headers: Mapping[str, str] | None = None, message: str | None = None) -> Refused:
    """A refusal with ``base_resp`` ``code`` (HTTP ``http_status``, 200 by default)."""
    if message is None:
        message = status_message(code) if detail is None else f"{status_message(code)}, {detail}"
    return Refused(http_status, message, headers=headers, code=code)


def _invalid(detail: str) -> Refused:
    return _refused(2013, detail)


# --------------------------------------------------------------------------
# Tasks
# --------------------------------------------------------------------------


@dataclass
class MiniMaxTask:
    """One accepted task and its simulated timeline."""

    task_id: str
    model: str
    prompt: str
    duration: int
    resolution: str
    options: dict[str, Any]
    first_frame_image: str | None  # shortened for data URLs
    image_info: dict[str, Any]
    callback_url: str | None
    api_key: str
    created: float
    generation_seconds: float
    price: Decimal
    video_width: int
    video_height: int
    planned_fail: tuple[int, str] | None = None
    status: str = "Preparing"
    history: list[tuple[str, float]] = field(default_factory=list)
    completed: float | None = None
    file_id: str | None = None
    charged: bool = False
    callback_state: str = "none"  # none | verifying | verified | rejected
    challenge: dict[str, Any] = field(default_factory=dict)
    pushes: list[dict[str, Any]] = field(default_factory=list)
    last_pushed: str | None = None
    channel: _CallbackChannel | None = None

    def query_body(self) -> dict[str, Any]:
        """The ``GET /v1/query/video_generation`` answer for this task."""
        body: dict[str, Any] = {"task_id": self.task_id, "status": self.status}
        if self.status == "Success":
            body["file_id"] = self.file_id
            body["video_width"] = self.video_width
            body["video_height"] = self.video_height
            body["base_resp"] = base_resp(0)
        elif self.status == "Fail" and self.planned_fail:
            body["base_resp"] = base_resp(*self.planned_fail)
        else:
            body["base_resp"] = base_resp(0)
        return body

    def snapshot(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "model": self.model,
            "prompt": self.prompt,
            "duration": self.duration,
            "resolution": self.resolution,
            "options": dict(self.options),
            "first_frame_image": self.first_frame_image,
            "image_info": dict(self.image_info),
            "callback_url": self.callback_url,
            "api_key": self.api_key,
            "created": self.created,
            "generation_seconds": self.generation_seconds,
            "price": float(self.price),
            "charged": self.charged,
            "status": self.status,
            "history": [s for s, _ in self.history],
            "completed": self.completed,
            "file_id": self.file_id,
            "video_width": self.video_width,
            "video_height": self.video_height,
            "callback_state": self.callback_state,
            "challenge": dict(self.challenge),
            "pushes": [dict(p) for p in self.pushes],
            "query": self.query_body(),
        }


class _CallbackChannel:
    """Per-task delivery: the challenge handshake first, then status pushes in order.

    One daemon thread per task with a ``callback_url``; each push is handed to
    the shared :class:`~providers.sandbox.common.CallbackSender` (retries,
    logging) and awaited before the next one, so pushes never overtake each
    other.  If the handshake fails, queued pushes are dropped.
    """

    def __init__(self, server: MiniMaxSandbox, task: MiniMaxTask):
        self.server = server
        self.task = task
        self.queue: queue.Queue[tuple[dict[str, Any], bool]] = queue.Queue()
        self.thread = threading.Thread(target=self._run, name="minimax-callback", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def put(self, payload: dict[str, Any], final: bool) -> None:
        self.queue.put((payload, final))

    def _run(self) -> None:
        srv = self.server
        if not srv.handshake(self.task):
            return
        while not srv.stop_event.is_set():
            try:
                payload, final = self.queue.get(timeout=0.1)
            except queue.Empty:
                with srv.lock:
                    if srv._tasks.get(self.task.task_id) is not self.task:
                        return  # forgotten by a reset: it will never become final
                continue
            task = self.task

            def on_attempt(record: dict, task: MiniMaxTask = task, status: str = payload.get("status")) -> None:
                with srv.lock:
                    task.pushes.append({"push": status, "attempt": record["attempt"], "http_status": record["status"],
                                        "error": record["error"], "ok": record["ok"]})

            thread = srv.callbacks.send(
                task.callback_url or "",
                payload,
                delays=srv.knobs["callback_retry_delays"],
                timeout=srv.knobs["callback_timeout"],
                context={"task_id": task.task_id, "push_status": payload.get("status")},
                ok_statuses=range(200, 300),
                on_attempt=on_attempt,
            )
            thread.join()
            if final:
                return


# --------------------------------------------------------------------------
# Server
# --------------------------------------------------------------------------


@register_sandbox("minimax")
class MiniMaxSandbox(TaskSandbox):
    """The MiniMax sandbox server (see README.md, "MiniMax protocol")."""

    api_prefix = ""  # the API lives at the origin's /v1/..., like https://api.minimax.io
    knob_specs = _knob_specs()
    max_request_body = 28 * 1024 * 1024  # a < 20 MB image fits as a base64 data URL
    final_states = FINAL_STATES
    video_status = "Success"
    file_name = re.compile(r"(\d{6,24})\.mp4")
    fail_code_pattern = r"\d{1,6}"

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **knobs: Any):
        super().__init__(host, port, **knobs)
        self._files: dict[str, str] = {}  # file_id -> task_id
        self._balance: Decimal | None = self._starting_balance()
        self._spent = Decimal(0)

    # ---- state helpers ---------------------------------------------------

    def _starting_balance(self) -> Decimal | None:
        knob = self.knobs["balance"]
        return None if knob is None else Decimal(str(knob))

    def on_knobs_changed(self, changed: Mapping[str, Any]) -> None:
        if "balance" in changed:
            self._balance = self._starting_balance()

    def reset_accounts(self) -> None:
        self._files.clear()
        self._balance = self._starting_balance()
        self._spent = Decimal(0)

    def balance(self) -> float | None:
        """Remaining balance in USD (None: unlimited, the ``balance`` knob is unset)."""
        with self.lock:
            return None if self._balance is None else float(self._balance)

    def spent(self) -> float:
        with self.lock:
            return float(self._spent)

    def task_for_file(self, key: str) -> MiniMaxTask | None:
        return self._tasks.get(self._files.get(key, ""))

    def _new_id(self, digits: int) -> str:
        while True:
            value = str(10 ** (digits - 1) + secrets.randbelow(9 * 10 ** (digits - 1)))
            if value not in self._tasks and value not in self._files:
                return value

    # ---- timeline --------------------------------------------------------

    def _target_status(self, task: MiniMaxTask, now: float) -> str:
        gen = task.generation_seconds
        elapsed = now - task.created
        if elapsed < PREPARING_SHARE * gen:
            return "Preparing"
        if task.planned_fail and task.planned_fail[0] == 1026:
            return "Fail"  # the input check fails before the task is queued
        if elapsed < (PREPARING_SHARE + QUEUEING_SHARE) * gen:
            return "Queueing"
        if elapsed < gen:
            return "Processing"
        return "Fail" if task.planned_fail else "Success"

    def advance(self, task: MiniMaxTask, now: float) -> None:
        """Move ``task`` to the status its age calls for (under ``self.lock``).

        Every status passed on the way is recorded (and pushed), even when
        nobody looked during a short phase.
        """
        if task.status in FINAL_STATES:
            return
        target = self._target_status(task, now)
        if target == task.status:
            return
        current = QUERY_STATES.index(task.status)
        if target in QUERY_STATES:
            wanted = QUERY_STATES.index(target)
            if wanted <= current:
                return
            passed = list(QUERY_STATES[current + 1:wanted + 1])
        elif task.planned_fail and task.planned_fail[0] == 1026:
            passed = [target]
        else:
            passed = list(QUERY_STATES[current + 1:]) + [target]
        for status in passed:
            task.status = status
            task.history.append((status, now))
            if status in FINAL_STATES:
                self._finish(task)
            self._queue_push(task)

    def _finish(self, task: MiniMaxTask) -> None:
        gen = task.generation_seconds
        early = task.planned_fail is not None and task.planned_fail[0] == 1026
        task.completed = task.created + (PREPARING_SHARE * gen if early else gen)
        if task.status == "Success":
            task.file_id = self._new_id(15)
            self._files[task.file_id] = task.task_id
            task.charged = True
            self._spent += task.price
            if self._balance is not None:
                self._balance -= task.price

    def _queue_push(self, task: MiniMaxTask) -> None:
        if task.channel is None:
            return
        final = task.status in FINAL_STATES
        if self.knobs["callback_status_style"] == "query":
            payload = task.query_body()
            key = task.status
        else:
            key = LOWER_STATUS[task.status]
            payload = {"task_id": task.task_id, "status": key}
            if task.status == "Success":
                payload["file_id"] = task.file_id
            payload["base_resp"] = task.query_body()["base_resp"]
        if key == task.last_pushed and not final:
            return
        task.last_pushed = key
        task.channel.put(payload, final)

    # ---- callbacks -------------------------------------------------------

    def handshake(self, task: MiniMaxTask) -> bool:
        """POST ``{"challenge": ...}``; True when echoed within ``challenge_timeout``."""
        url = task.callback_url or ""
        token = secrets.token_urlsafe(18)
        timeout = float(self.knobs["challenge_timeout"])
        status: int | None = None
        error: str | None = None
        echoed: Any = None
        started = time.time()
        try:
            req = urllib.request.Request(
                url, data=json_dumps({"challenge": token}), method="POST",
                headers={"Content-Type": "application/json", "User-Agent": "minimax-sandbox/1"},
            )
            with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (sandbox)
                status = resp.status
                raw = resp.read(64 * 1024)
            try:
                answer = json.loads(raw or b"null")
                echoed = answer.get("challenge") if isinstance(answer, dict) else None
            except (ValueError, UnicodeDecodeError):
                error = "answer is not JSON"
        except urllib.error.HTTPError as exc:
            status = exc.code
            exc.close()
        except Exception as exc:  # refused, timeout, bad URL...
            error = f"{type(exc).__name__}: {exc}"
        elapsed = time.time() - started
        ok = status is not None and 200 <= status < 300 and echoed == token and elapsed <= timeout
        if not ok and error is None:
            error = "too slow" if elapsed > timeout else f"challenge not echoed (got {echoed!r})"
        record = {
            "kind": "callback", "method": "POST", "url": url, "path": urllib.parse.urlsplit(url).path,
            "body": {"challenge": token}, "challenge": True, "attempt": 1, "max_attempts": 1,
            "status": status, "error": None if ok else error, "ok": ok, "echoed": echoed,
            "duration_ms": round(elapsed * 1000, 1), "task_id": task.task_id,
        }
        self.log.add(**record)
        with self.lock:
            task.callback_state = "verified" if ok else "rejected"
            task.challenge = {"token": token, "status": status, "echoed": echoed, "ok": ok,
                              "error": record["error"], "duration_ms": record["duration_ms"]}
        return ok

    # ---- protocol --------------------------------------------------------

    def error_response(self, status: int, message: str, detail: str, headers: Mapping[str, str] | None = None) -> Response:
        """A non-200 answer: ``{"base_resp": {...}}`` with a fitting MiniMax code."""
        code = HTTP_TO_CODE.get(status, 1000 if status >= 500 else 2013)
        return json_response(status, {"base_resp": base_resp(code, f"{message}: {detail}" if detail else message)}, headers)

    def bad_request(self, message: str) -> Refused:
        return _invalid(message)

    def refusal_response(self, exc: Refused, request: ApiRequest) -> Response:
        extra: dict[str, Any] = {"task_id": ""} if request.path.rstrip("/") == "/v1/video_generation" else {}
        return json_response(exc.status, {**extra, "base_resp": base_resp(exc.code, exc.message)}, exc.headers)

    def injected_fault(self) -> Response | None:
        """``rate_limit_every`` answers base_resp 1002 (HTTP 200, or 429 with ``rate_limit_http``)."""
        rate_every = self.knobs["rate_limit_every"]
        err_every = self.knobs["error_5xx_every"]
        with self.lock:
            self._api_counter += 1
            n = self._api_counter
        if rate_every and n % rate_every == 0:
            body = {"base_resp": base_resp(1002)}
            if self.knobs["rate_limit_http"]:
                return json_response(429, body, {"Retry-After": "1"})
            return json_response(200, body)
        if err_every and n % err_every == 0:
            return self.error_response(503, "Service unavailable", "upstream temporarily unavailable (sandbox error_5xx_every)")
        return None

    def _authorised_key(self, request: ApiRequest) -> str:
        """``Authorization: Bearer KEY`` with an accepted key, else 1004 (or ``invalid_key_code``)."""
        header = (request.header("Authorization") or "").strip()
        if not header:
            raise _refused(1004, message=LOGIN_FAIL_MSG)
        scheme, _, key = header.partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            raise _refused(1004, "the Authorization header must be 'Bearer <API key>'")
        if key not in self.knobs["api_keys"]:
            raise _refused(self.knobs["invalid_key_code"], "invalid api key")
        return key

    def route(self, request: ApiRequest) -> Response:
        route = request.path.rstrip("/") or "/"
        routes = {
            "/v1/video_generation": ("POST", self._submit),
            "/v1/query/video_generation": ("GET", self._query),
            "/v1/files/retrieve": ("GET", self._retrieve),
        }
        if route not in routes:
            return self.error_response(404, "Not found", f"no endpoint {request.method} {request.path}")
        method, handler = routes[route]
        if request.method != method and not (method == "GET" and request.method == "HEAD"):
            return self.error_response(405, "Method not allowed", f"use {method}", {"Allow": method})
        return handler(request, self._authorised_key(request))

    # ---- GET /v1/query/video_generation ----------------------------------

    def _query(self, request: ApiRequest, key: str) -> Response:
        """``Preparing`` -> ``Queueing`` -> ``Processing`` -> ``Success`` | ``Fail``."""
        task_id = (request.query.get("task_id") or [""])[0].strip()
        if not task_id:
            raise _invalid("task_id is required")
        with self.lock:
            task = self._tasks.get(task_id)
            if task is None or task.api_key != key:
                raise _invalid(f"invalid task_id {task_id!r} (unknown, or created by another account)")
            self.advance(task, time.time())
            body = task.query_body()
        return json_response(200, body)

    # ---- GET /v1/files/retrieve ------------------------------------------

    def _retrieve(self, request: ApiRequest, key: str) -> Response:
        file_id = (request.query.get("file_id") or [""])[0].strip()
        if not file_id:
            raise _invalid("file_id is required")
        if not re.fullmatch(r"\d{1,24}", file_id):
            raise _invalid("file_id must be an integer")
        now = time.time()
        with self.lock:
            task = self._tasks.get(self._files.get(file_id, ""))
            if task is None or task.api_key != key:
                raise _invalid(f"file {file_id} not found")
            expires = math.ceil(now + self.knobs["result_ttl"])
            url = self.signed_file_url(f"{file_id}.mp4", expires)
            created_at = int(task.completed or task.created)
        file_obj = {
            "file_id": file_id if self.knobs["file_id_as_string"] else int(file_id),
            "bytes": SAMPLE_MP4.stat().st_size,
            "created_at": created_at,
            "filename": "output_aigc.mp4",
            "purpose": "video_generation",
            "download_url": url,
        }
        return json_response(200, {"file": file_obj, "base_resp": base_resp(0)})

    # ---- POST /v1/video_generation ---------------------------------------

    def _validate(self, body: Any) -> dict[str, Any]:
        """The documented rules for MiniMax-Hailuo-2.3 / -Fast; 2013 "invalid params, <rule>" on a refusal."""
        if not isinstance(body, dict):
            raise _invalid("request body must be a JSON object")
        model = body.get("model")
        if model is None or model == "":
            raise _invalid("model is required")
        if not isinstance(model, str) or model not in MODELS:
            raise _invalid(f"model must be one of {', '.join(MODELS)} (got {model!r})")

        prompt = body.get("prompt")
        if prompt is not None and not isinstance(prompt, str):
            raise _invalid("prompt must be a string")
        prompt = prompt or ""
        if len(prompt) > MAX_PROMPT_CHARS:
            raise _invalid(f"prompt must be at most {MAX_PROMPT_CHARS} characters (got {len(prompt)})")

        image = body.get("first_frame_image")
        if image is not None:
            if not isinstance(image, str) or not image.strip():
                raise _invalid("first_frame_image must be a non-empty string (an http(s) URL or a data URL)")
            image = image.strip()
            if image.startswith("data:"):
                m = _DATA_URL.fullmatch(image)
                if not m or m.group(1).lower() not in IMAGE_MIME_TYPES:
                    raise _invalid("first_frame_image data URL must look like data:image/jpeg;base64,... "
                                   "(JPG, JPEG, PNG or WebP)")
            elif not is_http_url(image):
                raise _invalid("first_frame_image must be a public http(s) URL or a base64 data URL")
        if MODELS[model] and image is None:
            raise _invalid(f"{model} is image-to-video only: first_frame_image is required")
        if image is None and not prompt.strip():
            raise _invalid("prompt is required when first_frame_image is absent (text-to-video)")

        for unsupported, only in (("last_frame_image", "MiniMax-Hailuo-02"), ("subject_reference", "S2V-01")):
            if body.get(unsupported) is not None:
                raise _invalid(f"{unsupported} is not supported by {model} (only {only})")

        duration = body.get("duration", DEFAULT_DURATION)
        if duration is None:
            duration = DEFAULT_DURATION
        if isinstance(duration, bool) or not isinstance(duration, int) or duration not in DURATIONS:
            raise _invalid(f"duration must be 6 or 10 (got {duration!r})")
        resolution = body.get("resolution", DEFAULT_RESOLUTION)
        if resolution is None:
            resolution = DEFAULT_RESOLUTION
        if not isinstance(resolution, str) or resolution not in RESOLUTIONS:
            raise _invalid(f"resolution must be 768P or 1080P (got {resolution!r})")
        if resolution == "1080P" and duration != 6:
            raise _invalid("1080P supports only duration 6 (10 s videos are 768P only)")

        options: dict[str, Any] = {}
        for flag, default in (("prompt_optimizer", True), ("fast_pretreatment", False), ("aigc_watermark", False)):
            value = body.get(flag)
            if value is not None and not isinstance(value, bool):
                raise _invalid(f"{flag} must be a boolean (got {value!r})")
            options[flag] = default if value is None else value

        callback_url = body.get("callback_url")
        if callback_url is not None:
            if not isinstance(callback_url, str) or not is_http_url(callback_url):
                raise _invalid("callback_url must be an http(s) URL")
            callback_url = callback_url.strip()
        return {"model": model, "prompt": prompt, "image": image, "duration": duration, "resolution": resolution,
                "options": options, "callback_url": callback_url}

    def _inspect_image(self, image: str) -> dict[str, Any]:
        """Decode or fetch ``first_frame_image`` and apply the documented image rules.

        "Formats: JPG, JPEG, PNG, WebP; Size: < 20MB; Dimensions: short side >
        300px; aspect ratio between 2:5 and 5:2" (the bounds themselves are
        accepted).
        """
        info: dict[str, Any] = {}
        if image.startswith("data:"):
            m = _DATA_URL.fullmatch(image)
            assert m is not None  # checked by _validate
            info["source"] = "data_url"
            try:
                data = base64.b64decode(re.sub(r"\s+", "", m.group(2)), validate=True)
            except (binascii.Error, ValueError):
                raise _invalid("first_frame_image data URL is not valid base64") from None
        else:
            info["source"] = "url"
            got = fetch_image(image, self.knobs["image_fetch_timeout"], "minimax-sandbox/1 (image check)")
            if got.http_status is not None and got.data is not None:
                info["http_status"] = got.http_status
            if got.data is None:
                if got.error:
                    raise _invalid(f"first_frame_image url could not be downloaded ({got.error_type})")
                raise _invalid(f"first_frame_image url could not be downloaded (HTTP {got.http_status})")
            data = got.data
        info["bytes"] = len(data)
        if len(data) >= MAX_IMAGE_BYTES:
            raise _invalid("first_frame_image must be smaller than 20MB")
        try:
            fmt, width, height = image_size(data)
        except ValueError:
            raise _invalid("first_frame_image must be a JPG, JPEG, PNG or WebP image") from None
        info.update(format=fmt, width=width, height=height)
        if min(width, height) <= 300:
            raise _invalid(f"first_frame_image short side must be greater than 300px (got {width}x{height})")
        if 5 * width < 2 * height or 2 * width > 5 * height:
            raise _invalid(f"first_frame_image aspect ratio must be between 2:5 and 5:2 (got {width}x{height})")
        return info

    def _submit(self, request: ApiRequest, key: str) -> Response:
        v = self._validate(self.json_body(request))
        prompt: str = v["prompt"]
        marks = self.markers(prompt)
        if marks.http_status:
            status = marks.http_status
            code = HTTP_TO_CODE.get(status, 1000 if status >= 500 else 2013)
            raise _refused(code, f"sandbox marker [http:{status}]", status, {"Retry-After": "1"} if status == 429 else None)
        m = _MARK_ERROR.search(prompt)
        if m and int(m.group(1)) != 0:
            raise _refused(int(m.group(1)), "sandbox marker [error]")

        image_info: dict[str, Any] = {}
        if v["image"] is not None and self.knobs["check_images"]:
            image_info = self._inspect_image(v["image"])

        planned_fail = None
        if marks.fail:
            code = int(marks.fail_code) if marks.fail_code else 1027
            planned_fail = (code, status_message(code)) if code else None
        elif self.random_failure():
            planned_fail = (1027, status_message(1027))
        generation = self.generation_time(marks)

        price = price_of(v["model"], v["resolution"], v["duration"])
        dims = (image_info["width"], image_info["height"]) if "width" in image_info else None
        width, height = output_dimensions(v["resolution"], dims)
        image = v["image"]
        if image is not None and image.startswith("data:"):
            image = image[:48] + f"...({len(image)} chars)"
        now = time.time()
        with self.lock:
            if self._balance is not None:
                for t in self._tasks.values():
                    self.advance(t, now)
                reserved = sum((t.price for t in self._tasks.values() if t.status not in FINAL_STATES), Decimal(0))
                if price > self._balance - reserved:
                    raise _refused(1008, f"this video costs {price} USD, available balance is {self._balance - reserved} USD")
            task = MiniMaxTask(
                task_id=self._new_id(18), model=v["model"], prompt=prompt, duration=v["duration"],
                resolution=v["resolution"], options=v["options"], first_frame_image=image, image_info=image_info,
                callback_url=v["callback_url"], api_key=key, created=now, generation_seconds=generation,
                price=price, video_width=width, video_height=height, planned_fail=planned_fail,
            )
            task.history.append(("Preparing", now))
            self._tasks[task.task_id] = task
            if task.callback_url:
                task.callback_state = "verifying"
                task.channel = _CallbackChannel(self, task)
                self._queue_push(task)  # the first status; delivered once the challenge passed
                task.channel.start()
        self.log.update(request.log_entry, task_id=task.task_id)

        self.hang_if_asked(marks)
        return json_response(200, {"task_id": task.task_id, "base_resp": base_resp(0)})
