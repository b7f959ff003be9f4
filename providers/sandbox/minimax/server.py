"""MiniMax sandbox: the protocol (``/v1/video_generation``, query, files/retrieve), timeline and callbacks."""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from ..common import (
    MAX_IMAGE_BYTES,
    SAMPLE_MP4,
    ApiRequest,
    Refused,
    Response,
    TaskSandbox,
    fetch_image,
    image_size,
    json_dumps,
    json_response,
    register_sandbox,
)
from .rules import (
    _DATA_URL,
    _MARK_ERROR,
    FINAL_STATES,
    HTTP_TO_CODE,
    LOGIN_FAIL_MSG,
    LOWER_STATUS,
    PREPARING_SHARE,
    QUERY_STATES,
    QUEUEING_SHARE,
    _invalid,
    _knob_specs,
    _refused,
    base_resp,
    output_dimensions,
    price_of,
    status_message,
)
from .tasks import MiniMaxTask, _CallbackChannel
from .validation import validate_submit


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

    def _inspect_image(self, image: str) -> dict[str, Any]:
        """Decode or fetch ``first_frame_image`` and apply the documented image rules.

        "Formats: JPG, JPEG, PNG, WebP; Size: < 20MB; Dimensions: short side >
        300px; aspect ratio between 2:5 and 5:2" (the bounds themselves are
        accepted).
        """
        info: dict[str, Any] = {}
        if image.startswith("data:"):
            m = _DATA_URL.fullmatch(image)
            assert m is not None  # checked by validate_submit
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
        v = validate_submit(self.json_body(request))
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

        self.hang_if_asked(marks, request)
        return json_response(200, {"task_id": task.task_id, "base_resp": base_resp(0)})
