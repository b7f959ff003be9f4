"""PoYo sandbox: one accepted task, its timeline fields and its status shape."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .rules import MODEL, credits_to_usd, iso_time


@dataclass
class PoyoTask:
    """One accepted generation task and its simulated timeline."""

    task_id: str
    prompt: str
    duration: int
    resolution: str
    prompt_optimizer: bool | None
    start_image_url: str | None
    callback_url: str | None
    api_key: str
    price: int
    created: float
    generation_seconds: float
    planned_fail: str | None = None
    image_check: str = "n/a"  # n/a | pending | ok | failed
    image_info: dict[str, Any] = field(default_factory=dict)
    image_error: str | None = None
    image_done_at: float | None = None
    status: str = "not_started"
    progress: int = 0
    completed: float | None = None
    error_message: str | None = None
    result_url: str | None = None
    result_expires: int | None = None
    callback_attempts: list[dict] = field(default_factory=list)

    @property
    def credits_amount(self) -> int:
        return 0 if self.status == "failed" else self.price

    def status_data(self) -> dict[str, Any]:
        """``data`` of ``GET /api/generate/status/{task_id}`` (and of callbacks)."""
        files = [{"file_url": self.result_url, "file_type": "video"}] if self.status == "finished" else []
        return {
            "task_id": self.task_id,
            "status": self.status,
            "progress": self.progress,
            "files": files,
            "created_time": iso_time(self.created),
            "error_message": self.error_message if self.status == "failed" else None,
            "credits_amount": self.credits_amount,
            "finished_time": iso_time(self.completed) if self.completed is not None else None,
        }

    def snapshot(self) -> dict[str, Any]:
        return {
            "task_id": self.task_id,
            "model": MODEL,
            "prompt": self.prompt,
            "duration": self.duration,
            "resolution": self.resolution,
            "prompt_optimizer": self.prompt_optimizer,
            "start_image_url": self.start_image_url,
            "image_check": self.image_check,
            "image_info": dict(self.image_info),
            "callback_url": self.callback_url,
            "api_key": self.api_key,
            "price_credits": self.price,
            "price_usd": float(credits_to_usd(self.price)),
            "created": self.created,
            "generation_seconds": self.generation_seconds,
            "status": self.status,
            "result_url": self.result_url,
            "result_expires": self.result_expires,
            "callback_attempts": [dict(a) for a in self.callback_attempts],
            "data": self.status_data(),
        }
