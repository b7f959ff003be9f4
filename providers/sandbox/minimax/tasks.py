"""MiniMax sandbox: one accepted task, and the callback channel that verifies a URL and pushes in order."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from .rules import base_resp

if TYPE_CHECKING:  # the server module imports this one
    from .server import MiniMaxSandbox


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
