"""qingbo sandbox: one accepted task, its timeline fields and its callback filter."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .rules import FINAL_STATUSES


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
