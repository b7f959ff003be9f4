"""PoYo sandbox: the protocol (submit, status, account), credits held and given back, signed callbacks."""

from __future__ import annotations

import re
import secrets
import threading
import time
import urllib.parse
from collections.abc import Mapping
from typing import Any

from ..common import (
    ApiRequest,
    Refused,
    Response,
    TaskSandbox,
    is_http_url,
    json_dumps,
    json_response,
    register_sandbox,
)
from .rules import (
    DURATIONS,
    ERROR_TYPES,
    FAIL_DEFAULT_MESSAGE,
    FAIL_RANDOM_MESSAGE,
    FINAL_STATES,
    HTTP_MESSAGES,
    INITIAL_CREDITS,
    INPUT_KEYS,
    MAX_PROMPT_CHARS,
    MODEL,
    RESOLUTIONS,
    TOP_LEVEL_KEYS,
    USER_EMAIL,
    _knob_specs,
    check_start_image,
    credits_for,
    iso_time,
    new_task_id,
    sign_webhook,
)
from .tasks import PoyoTask


def _invalid(message: str) -> Refused:
    return Refused(400, message)


@register_sandbox("poyo")
class PoyoSandbox(TaskSandbox):
    """The PoYo sandbox server (see README.md, "PoYo protocol").

    State (tasks, credits) lives on the instance and is guarded by
    ``self.lock``; the ticker thread finalises tasks on time and fires
    callbacks even when nobody polls.
    """

    api_prefix = ""  # the API lives at the origin's /api/..., like https://api.poyo.ai
    knob_specs = _knob_specs()
    final_states = FINAL_STATES
    video_status = "finished"
    file_name = re.compile(r"(task-unified-\d+-[a-z0-9]{8})\.mp4")
    fail_code_pattern = r"[^\]]*"  # [fail:TEXT]: any text
    body_messages = {"content_type": "Invalid request body: Content-Type must be application/json",
                     "json": "Invalid request body: not valid JSON"}

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **knobs: Any):
        super().__init__(host, port, **knobs)
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

    def reset_accounts(self) -> None:
        self._credits = self._starting_credits()

    def advance(self, task: PoyoTask, now: float) -> PoyoTask | None:
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
        failure = task.image_error or task.planned_fail
        if failure:
            task.status = "failed"
            task.error_message = failure
            self._credits += task.price  # failed tasks consume no credits: release the hold
        else:
            task.status = "finished"
            task.progress = 100
            self.sign_result(task, task.completed)
        return task if task.callback_url else None

    # ---- callbacks ---------------------------------------------------------

    def deliver(self, jobs: list[PoyoTask | None]) -> None:
        """POST the final status response to ``callback_url``, signed, with duplicates."""
        for task in jobs:
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

            thread = self.send_callback(
                task,
                task.callback_url or "",
                payload,
                context={
                    "task_id": task.task_id,
                    "delivery": n,
                    "duplicate": n > 1,
                    "webhook_timestamp": timestamp,
                    "webhook_signature": signature,
                },
                headers={"x-webhook-timestamp": timestamp, "x-webhook-signature": signature},
                note={"delivery": n},
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

    def refusal_response(self, exc: Refused, request: ApiRequest) -> Response:
        return self.error_response(exc.status, exc.message, "", exc.headers, type_=exc.code)

    def route(self, request: ApiRequest) -> Response:
        """Route a request after ``Authorization: Bearer YOUR_API_KEY``."""
        key = self.bearer_key(request)
        if key is None:
            return self.error_response(401, "Invalid API key", "missing or invalid Authorization: Bearer key")
        path = request.path.rstrip("/") or "/"
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
        return self.error_response(404, "Not found", f"no endpoint {request.method} {request.path}")

    def _status(self, task_id: str, key: str) -> Response:
        """``GET /api/generate/status/{task_id}``."""
        with self.lock:
            task = self._tasks.get(task_id)
            if task is None:
                raise Refused(404, f"Task not found: {task_id}")
            if task.api_key != key:
                raise Refused(403, "Task belongs to another user")
            job = self.advance(task, time.time())
            body = {"code": 200, "data": task.status_data()}
        self.deliver([job])
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
        if callback_url is not None and not is_http_url(callback_url):
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
        if start_image_url is not None and not is_http_url(start_image_url):
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
        v = self._validate(self.json_body(request))
        prompt: str = v["prompt"]
        marks = self.markers(prompt)
        if marks.http_status:
            status = marks.http_status
            headers = {"Retry-After": "1"} if status == 429 else {}
            raise Refused(status, f"{HTTP_MESSAGES.get(status, 'Error')} (sandbox marker [http:{status}])", headers=headers)
        planned_fail = None
        if marks.fail:
            planned_fail = (marks.fail_code or "").strip() or FAIL_DEFAULT_MESSAGE
        elif self.random_failure():
            planned_fail = FAIL_RANDOM_MESSAGE
        generation = self.generation_time(marks)

        price = credits_for(v["resolution"], v["duration"])
        now = time.time()
        with self.lock:
            task_id = new_task_id(now)
            while task_id in self._tasks:
                task_id = new_task_id(now)
            if self.knobs["credits"] is not None and price > self._credits:
                raise Refused(400, f"Insufficient credits: this task needs {price} credits, {self._credits} left",
                              code="insufficient_credits_error")
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
            url, timeout = task.start_image_url, self.knobs["image_fetch_timeout"]
            self.check_image_later(task, lambda: check_start_image(url, timeout))
        self.hang_if_asked(marks, request)
        return json_response(
            200, {"code": 200, "data": {"task_id": task_id, "status": "not_started", "created_time": iso_time(now)}}
        )
