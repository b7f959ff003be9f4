"""PiAPI sandbox: the protocol (``/api/v1/task``, ``/account/info``), timeline and webhooks."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ..common import ApiRequest, Refused, Response, TaskSandbox, is_http_url, json_response, register_sandbox
from .rules import (
    _UUID_MP4,
    ACCOUNT_ID,
    ACCOUNT_NAME,
    DURATIONS,
    FINAL,
    GENERIC_FAIL_CODE,
    HTTP_TITLES,
    INITIAL_BALANCE_USD,
    MAX_PROMPT_CHARS,
    RESOLUTIONS,
    SUB_MODELS,
    USAGE_UNITS_PER_USD,
    _knob_specs,
    fetch_and_check_image,
    price_usd,
    rfc3339_nano,
)
from .tasks import PiapiTask


def _render_status(status: str, case: str) -> str:
    if case == "upper":
        return status.upper()
    if case == "title":
        return status.title()
    return status


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@register_sandbox("piapi")
class PiapiSandbox(TaskSandbox):
    """The PiAPI sandbox server (see README.md, "PiAPI protocol")."""

    api_prefix = ""  # routes live at the origin: /api/v1/task and /account/info
    knob_specs = _knob_specs()
    final_states = FINAL
    video_status = "completed"
    file_name = _UUID_MP4

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **knobs: Any):
        super().__init__(host, port, **knobs)
        self._balance = self._starting_balance()
        self._webhook_locks: dict[str, threading.Lock] = {}

    # ---- state -----------------------------------------------------------

    def _starting_balance(self) -> Decimal:
        knob = self.knobs["balance"]
        return INITIAL_BALANCE_USD if knob is None else Decimal(str(knob))

    def on_knobs_changed(self, changed: Mapping[str, Any]) -> None:
        if changed.get("balance") is not None:
            self._balance = Decimal(str(changed["balance"]))

    def reset_accounts(self) -> None:
        self._webhook_locks.clear()
        self._balance = self._starting_balance()

    def _available_usd(self) -> Decimal:
        """Balance net of what running tasks hold (call under ``self.lock``)."""
        return self._balance - sum((t.frozen_usd for t in self._tasks.values()), Decimal(0))

    def task_snapshot(self, task: PiapiTask, now: float) -> dict[str, Any]:
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
            "webhook_attempts": [dict(a) for a in task.callback_attempts],
            "task": self._task_object(task),
        }

    # ---- timeline --------------------------------------------------------

    def advance(self, task: PiapiTask, now: float) -> tuple[PiapiTask, list[dict]]:
        """:meth:`_timeline`, paired with its task for :meth:`deliver`."""
        return task, self._timeline(task, now)

    def _timeline(self, task: PiapiTask, now: float) -> list[dict]:
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
        if task.image_error:
            task.status = "failed"
            task.error_code = GENERIC_FAIL_CODE
            task.error_raw = task.image_error
            task.error_message = f"invalid image_url: {task.image_error}"
        elif task.planned_fail:
            task.status = "failed"
            task.error_code, task.error_raw, task.error_message = task.planned_fail
        else:
            task.status = "completed"
            self.sign_result(task, task.completed)
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

    def deliver(self, batches: list[tuple[PiapiTask, list[dict]]]) -> None:
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

                    self.send_callback(
                        task,
                        task.webhook_endpoint,
                        payload,
                        context={"task_id": task.task_id, "task_status": status, "copy": n, "duplicate": n > 1},
                        headers=headers,
                        note={"status_sent": status, "copy": n},
                    ).join()

    def _webhook_lock(self, task: PiapiTask) -> threading.Lock:
        with self.lock:
            return self._webhook_locks.setdefault(task.task_id, threading.Lock())

    # ---- protocol --------------------------------------------------------

    def error_response(self, status: int, message: str, detail: str, headers: Mapping[str, str] | None = None) -> Response:
        """``{"code": N, "message": "<title>: <detail>", "data": {"error", "detail"}}`` (shape partly invented)."""
        text = f"{message}: {detail}" if detail else message
        return json_response(status, {"code": status, "message": text, "data": {"error": message, "detail": detail}}, headers)

    def refusal_response(self, exc: Refused, request: ApiRequest) -> Response:
        return self.error_response(exc.status, HTTP_TITLES.get(exc.status, "error"), exc.message, exc.headers)

    def route(self, request: ApiRequest) -> Response:
        parts = [p for p in request.path.split("/") if p]
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
        return self.error_response(404, "not found", f"no endpoint {request.method} {request.path}")

    def _allow(self, request: ApiRequest, *methods: str) -> None:
        if request.method not in methods:
            raise Refused(405, f"use {' or '.join(methods)}", headers={"Allow": ", ".join(methods)})

    def _auth(self, request: ApiRequest) -> str:
        key = (request.header("x-api-key") or "").strip()  # the request example's header
        if not key or key not in self.knobs["api_keys"]:
            raise Refused(401, "missing or invalid x-api-key header")
        return key

    def _account_info(self) -> Response:
        now = time.time()
        with self.lock:
            batches = self.advance_all(now)
            available = self._available_usd()
        self.deliver(batches)
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
                raise Refused(404, f"task {task_id!r} not found")
            job = self.advance(task, time.time())
            body = {"code": 200, "message": "success", "data": self._task_object(task)}
        self.deliver([job])
        return json_response(200, body)

    # ---- submit ----------------------------------------------------------

    def _validate(self, body: Any) -> dict[str, Any]:
        """Check a create-task body against the page's documented rules (400)."""
        if not isinstance(body, dict):
            raise Refused(400, "request body must be a JSON object")
        if body.get("model") != "hailuo":
            raise Refused(400, f"model must be 'hailuo', got {body.get('model')!r}")
        if body.get("task_type") != "video_generation":
            raise Refused(400, f"task_type must be 'video_generation', got {body.get('task_type')!r}")
        inp = body.get("input")
        if not isinstance(inp, dict):
            raise Refused(400, "input is required and must be an object")

        prompt = inp.get("prompt")
        if prompt is None:
            raise Refused(400, "input.prompt is required")
        if not isinstance(prompt, str):
            raise Refused(400, "input.prompt must be a string")
        if not prompt.strip():
            raise Refused(400, "input.prompt must not be empty")
        if len(prompt) > MAX_PROMPT_CHARS:
            raise Refused(400, f"input.prompt is {len(prompt)} characters; the maximum length is {MAX_PROMPT_CHARS}")

        sub_model = inp.get("model")
        if sub_model not in SUB_MODELS:
            raise Refused(400, f"input.model must be 'v2.3' or 'v2.3-fast', got {sub_model!r}")

        expand = inp.get("expand_prompt")
        if expand is None:
            expand = False
        if not isinstance(expand, bool):
            raise Refused(400, f"input.expand_prompt must be a boolean, got {expand!r}")

        duration = inp.get("duration")
        if duration is None:
            duration = 6
        if not _is_int(duration) or duration not in DURATIONS:
            raise Refused(400, f"input.duration must be the integer 6 or 10, got {duration!r}")

        resolution = inp.get("resolution")
        if resolution is None:
            resolution = 768
        if not _is_int(resolution) or resolution not in RESOLUTIONS:
            raise Refused(400, f"input.resolution must be the integer 768 or 1080, got {resolution!r}")
        if resolution == 1080 and duration == 10:
            raise Refused(400, "1080p+10s is not supported (resolution 1080 needs duration 6)")

        image_url = inp.get("image_url")
        if image_url is None:
            image_url = ""
        if not isinstance(image_url, str):
            raise Refused(400, "input.image_url must be a string")
        image_url = image_url.strip()
        if image_url and not is_http_url(image_url):
            raise Refused(400, f"input.image_url must be an http(s) URL, got {image_url!r}")

        config = body.get("config")
        if config is None:
            config = {}
        if not isinstance(config, dict):
            raise Refused(400, "config must be an object")
        mode = config.get("service_mode")
        if mode is None:
            mode = "public"
        if mode != "public":
            raise Refused(400, f"config.service_mode {mode!r} is not supported; only 'public' is")
        hook = config.get("webhook_config")
        if hook is None:
            hook = {}
        if not isinstance(hook, dict):
            raise Refused(400, "config.webhook_config must be an object")
        endpoint = hook.get("endpoint")
        endpoint = "" if endpoint is None else endpoint
        secret = hook.get("secret")
        secret = "" if secret is None else secret
        if not isinstance(endpoint, str):
            raise Refused(400, "config.webhook_config.endpoint must be a string")
        if endpoint.strip() and not is_http_url(endpoint):
            raise Refused(400, f"config.webhook_config.endpoint must be an http(s) URL, got {endpoint!r}")
        if not isinstance(secret, str):
            raise Refused(400, "config.webhook_config.secret must be a string")
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
        v = self._validate(self.json_body(request))
        prompt: str = v["prompt"]
        marks = self.markers(prompt)
        if marks.http_status:
            status = marks.http_status
            raise Refused(status, f"sandbox marker [http:{status}]", headers={"Retry-After": "1"} if status == 429 else None)
        planned_fail = None
        if marks.fail:
            code = marks.fail_code
            if code is None:
                planned_fail = (GENERIC_FAIL_CODE, "video generation failed (sandbox marker [fail])",
                                "video generation failed")
            elif code.isdigit():
                planned_fail = (int(code), f"sandbox marker [fail:{code}]", f"task failed with code {code}")
            else:
                planned_fail = (GENERIC_FAIL_CODE, code, f"task failed: {code}")
        elif self.random_failure():
            planned_fail = (GENERIC_FAIL_CODE, "upstream generation error (sandbox fail_rate)", "video generation failed")
        generation = self.generation_time(marks)

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
            batches = self.advance_all(task.created)
            available = self._available_usd()
            refused = self.knobs["balance"] is not None and price > available
            if not refused:
                self._tasks[task.task_id] = task
                body_out = {"code": 200, "message": "success", "data": self._task_object(task)}
        self.deliver(batches)
        if refused:
            raise Refused(402, f"this task costs {price} USD but only {available} USD is available")
        self.log.update(request.log_entry, task_id=task.task_id)
        if task.image_url:
            url, timeout = task.image_url, self.knobs["image_fetch_timeout"]
            self.check_image_later(task, lambda: fetch_and_check_image(url, timeout))
        self.hang_if_asked(marks, request)
        return json_response(200, body_out)
