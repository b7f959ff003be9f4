"""The task sandbox base: submit, status and callbacks of asynchronous tasks.

Part of :mod:`providers.sandbox.common` (standard library only: no Django)."""

from __future__ import annotations

import json
import math
import random
import re
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from .prompts import PromptMarkers, Refused
from .responses import SAMPLE_MP4, Response
from .server import ApiRequest, SandboxServer

# --------------------------------------------------------------------------
# Task sandbox base
# --------------------------------------------------------------------------


class TaskSandbox(SandboxServer):
    """Base of a sandbox whose API creates tasks that move through states over time.

    It holds what every provider sandbox repeats, so that a provider module
    holds only its protocol:

    * task storage: ``self._tasks`` (task id -> task object, guarded by
      ``self.lock``); a task object has at least ``task_id`` and ``status``;
    * time: :meth:`tick` (the ticker thread) and :meth:`tasks_snapshot` move
      every task along with :meth:`advance` under the lock, then hand what it
      returned to :meth:`deliver` (callbacks, webhooks) outside the lock;
    * files: ``/files/<name>`` serves ``assets/sample.mp4`` when ``file_name``
      matches ``name`` and the task found by :meth:`task_for_file` for its first
      group is in ``video_status``;
    * requests: :meth:`handle_api` calls :meth:`route` and renders a raised
      :class:`Refused` with :meth:`refusal_response`; :meth:`json_body` reads a
      JSON submit body; :meth:`bearer_key` checks ``Authorization: Bearer KEY``;
    * prompt markers (:meth:`markers`, :meth:`generation_time`,
      :meth:`random_failure`, :meth:`hang_if_asked`), background image checks
      (:meth:`check_image_later`) and recorded callback deliveries
      (:meth:`send_callback`).
    """

    final_states: tuple[str, ...] = ()
    video_status = ""
    file_name: re.Pattern[str] = re.compile(r"(.+)\.mp4")
    fail_code_pattern = r"[A-Za-z0-9_.\-]+"
    body_messages = {"content_type": "Content-Type must be application/json", "json": "request body is not valid JSON"}

    def __init__(self, host: str = "127.0.0.1", port: int = 0, **knobs: Any):
        super().__init__(host, port, **knobs)
        self._tasks: dict[str, Any] = {}

    # ---- state -----------------------------------------------------------

    def reset_state(self) -> None:
        self._tasks.clear()
        self.reset_accounts()

    def reset_accounts(self) -> None:
        """Hook: put balances and counters back to their start values (called under ``self.lock``)."""

    def advance(self, task: Any, now: float) -> Any:
        """Move ``task`` to the state its age calls for (under ``self.lock``); return a job for :meth:`deliver`."""
        return None

    def deliver(self, jobs: list) -> None:
        """Send what :meth:`advance` returned (called outside the lock)."""

    def task_snapshot(self, task: Any, now: float) -> dict:
        """One entry of ``GET /_sandbox/tasks``."""
        return task.snapshot()

    def advance_all(self, now: float, *, running_only: bool = False) -> list:
        """:meth:`advance` every task (only the non-final ones with ``running_only``); call under the lock."""
        return [self.advance(t, now) for t in self._tasks.values() if not (running_only and t.status in self.final_states)]

    def tasks_snapshot(self) -> list[dict]:
        now = time.time()
        with self.lock:
            jobs = self.advance_all(now)
            out = [self.task_snapshot(t, now) for t in self._tasks.values()]
        self.deliver(jobs)
        return out

    def tick(self, now: float) -> None:
        with self.lock:
            jobs = self.advance_all(now, running_only=True)
        self.deliver(jobs)

    def task_for_file(self, key: str) -> Any:
        """The task whose video ``/files/<key>.mp4`` is (under ``self.lock``)."""
        return self._tasks.get(key)

    def resolve_file(self, name: str) -> Path | None:
        m = self.file_name.fullmatch(name)
        if not m:
            return None
        with self.lock:
            task = self.task_for_file(m.group(1))
            if task is None or task.status != self.video_status:
                return None
        return SAMPLE_MP4

    def sign_result(self, task: Any, completed: float) -> None:
        """Set ``task.result_expires`` (``result_ttl`` after ``completed``) and its signed ``task.result_url``."""
        task.result_expires = math.ceil(completed + self.knobs["result_ttl"])
        task.result_url = self.signed_file_url(f"{task.task_id}.mp4", task.result_expires)

    # ---- requests --------------------------------------------------------

    def handle_api(self, request: ApiRequest) -> Response:
        try:
            return self.route(request)
        except Refused as exc:
            return self.refusal_response(exc, request)

    def route(self, request: ApiRequest) -> Response:
        """Answer one API request; may raise :class:`Refused`."""
        return self.error_response(404, "Not found", f"no endpoint {request.method} {request.path}")

    def refusal_response(self, exc: Refused, request: ApiRequest) -> Response:
        """Render a :class:`Refused` in the provider's error shape."""
        return self.error_response(exc.status, exc.message, exc.detail, exc.headers)

    def bad_request(self, message: str) -> Refused:
        """The provider's refusal of an invalid request (400 unless the provider says otherwise)."""
        return Refused(400, message)

    def json_body(self, request: ApiRequest) -> Any:
        """The JSON body of ``request``; raises :meth:`bad_request` (``body_messages``) when the
        ``Content-Type`` is not ``application/json`` or the body is not JSON.  An empty body is None."""
        ctype = (request.header("Content-Type") or "").split(";")[0].strip().lower()
        if ctype != "application/json":
            raise self.bad_request(self.body_messages["content_type"])
        try:
            return json.loads(request.body.decode("utf-8")) if request.body else None
        except (ValueError, UnicodeDecodeError):
            raise self.bad_request(self.body_messages["json"]) from None

    def bearer_key(self, request: ApiRequest) -> str | None:
        """The key of ``Authorization: Bearer KEY`` when it is one of the ``api_keys`` knob, else None."""
        header = request.header("Authorization") or ""
        scheme, _, key = header.strip().partition(" ")
        key = key.strip()
        if scheme.lower() != "bearer" or not key:
            return None
        return key if key in self.knobs["api_keys"] else None

    # ---- markers, images, callbacks ---------------------------------------

    def markers(self, prompt: str) -> PromptMarkers:
        return PromptMarkers.parse(prompt, self.fail_code_pattern)

    def random_failure(self) -> bool:
        """True with the probability of the ``fail_rate`` knob."""
        return random.random() < self.knobs["fail_rate"]

    def generation_time(self, markers: PromptMarkers) -> float:
        """``[seconds:N]`` if given, else the ``generation_seconds`` knob."""
        return markers.seconds if markers.seconds is not None else float(self.knobs["generation_seconds"])

    def hang_if_asked(self, markers: PromptMarkers, request: ApiRequest | None = None) -> None:
        """Hold the answer when the prompt had ``[hang]`` (the task already exists).

        Waits until the client hangs up (its read timeout ran out), ``hang_seconds``
        pass or the server stops, whichever comes first, and records on the request's
        log entry ``hang: {"seconds": <float>, "ended": "client hung up" | "hang_seconds"
        | "server stopping"}``.  Without ``request`` it only waits ``hang_seconds``.
        """
        if not markers.hang:
            return
        started = time.monotonic()
        ended = self._wait_while_connected(request.connection if request else None, self.knobs["hang_seconds"])
        if request is not None:
            self.log.update(request.log_entry, hang={"seconds": round(time.monotonic() - started, 3), "ended": ended})

    def _wait_while_connected(self, conn: socket.socket | None, seconds: float) -> str:
        """Wait up to ``seconds`` while ``conn`` stays open; returns why the wait ended.

        A hang-up shows as the socket turning readable with nothing to read (or an
        error); bytes from the client (a pipelined request) end the watch, not the wait.
        """
        deadline = time.monotonic() + seconds
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "hang_seconds"
            if conn is None:
                return "server stopping" if self.sleep(remaining) else "hang_seconds"
            if self.stop_event.is_set():
                return "server stopping"
            try:
                readable, _, _ = select.select([conn], [], [], min(0.2, remaining))
                if not readable:
                    continue
                if not conn.recv(1, socket.MSG_PEEK):
                    return "client hung up"
            except (OSError, ValueError):
                return "client hung up"
            conn = None

    def check_image_later(self, task: Any, inspect: Callable[[], tuple[str | None, Any]]) -> None:
        """Run ``inspect() -> (error or None, info)`` in a thread, then record it on ``task``.

        Sets ``task.image_info``, ``image_done_at``, ``image_error`` and
        ``image_check`` (``"ok"`` or ``"failed"``) under the lock.
        """

        def run() -> None:
            error, info = inspect()
            with self.lock:
                task.image_info = info
                task.image_done_at = time.time()
                task.image_error = error
                task.image_check = "failed" if error else "ok"

        threading.Thread(target=run, name=f"{self.kind}-image-check", daemon=True).start()

    def send_callback(self, task: Any, url: str, payload: Any, *, context: Mapping[str, Any],
                      headers: Mapping[str, str] | None = None, ok_statuses: Iterable[int] = range(200, 300),
                      note: Mapping[str, Any] | None = None) -> threading.Thread:
        """POST ``payload`` to ``url`` with the knobs' retries; each attempt is appended to
        ``task.callback_attempts`` as ``{**note, attempt, status, error, ok}``."""

        def on_attempt(record: dict) -> None:
            with self.lock:
                task.callback_attempts.append({**(note or {}), **{k: record[k] for k in ("attempt", "status", "error", "ok")}})

        return self.callbacks.send(
            url, payload, delays=self.knobs["callback_retry_delays"], timeout=self.knobs["callback_timeout"],
            context=context, headers=headers, ok_statuses=ok_statuses, on_attempt=on_attempt,
        )
