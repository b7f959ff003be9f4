"""qingbo sandbox: the protocol (submit, status, cancel, quota), timeline, refunds and callbacks."""

from __future__ import annotations

import re
import secrets
import time
import urllib.parse
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ..common import (
    ApiRequest,
    Refused,
    Response,
    TaskSandbox,
    json_response,
    marker_number,
    register_sandbox,
)
from .rules import (
    _ERROR_CODES,
    _HTTP_MESSAGES,
    FINAL_STATUSES,
    QUOTA_UNITS_PER_USD,
    _knob_specs,
    _load_images,
    price_for,
)
from .tasks import QingboTask
from .validation import _bad, validate_submit


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

    def _submit(self, request: ApiRequest, key: str) -> Response:
        """``POST /v1/tasks`` (seed 003)."""
        v = validate_submit(self.json_body(request))
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
        self.hang_if_asked(marks, request)
        body = {
            "task_id": task.task_id,
            "model": task.model,
            "action": task.action,
            "status": "queued",
            "created_at": int(task.created if self.knobs["timestamps_in_seconds"] else task.created * 1000),
            "progress": 0,
        }
        return json_response(200, body)
