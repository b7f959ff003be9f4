"""APIXO sandbox: the protocol (``generateTask``, ``statusTask``, balance), timeline and callbacks."""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ..common import (
    COMMON_KNOBS,
    ApiRequest,
    Refused,
    Response,
    TaskSandbox,
    is_http_url,
    json_response,
    register_sandbox,
    with_defaults,
)
from .rules import (
    DEFAULT_API_KEY,
    FAIL_MESSAGES,
    FINAL_STATES,
    HTTP_MESSAGES,
    INITIAL_BALANCE,
    MODELS,
    REQUEST_TYPES,
    ROUTING_PROVIDERS,
    STANDARD_DURATIONS,
    ModeRule,
    fetch_and_inspect_image,
    price_for,
)
from .tasks import ApixoTask


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
        self.hang_if_asked(marks, request)
        return json_response(200, {"code": 200, "message": "success", "data": {"taskId": task.task_id}})
