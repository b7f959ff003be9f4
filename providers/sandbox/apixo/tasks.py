"""APIXO sandbox: one accepted task, its timeline fields and its status shape (``resultJson`` a JSON string)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any


@dataclass
class ApixoTask:
    """One accepted generation task and its simulated timeline."""

    task_id: str
    model: str
    mode: str
    prompt: str
    duration: int | None
    output_seconds: int
    resolution: str
    price: Decimal
    request_type: str
    callback_url: str | None
    provider: str | None
    image_url: str | None
    api_key: str
    created: float
    generation_seconds: float
    planned_fail: tuple[str, str] | None = None
    image_check: str = "n/a"  # n/a | pending | ok | failed
    image_info: dict[str, Any] = field(default_factory=dict)
    image_error: str | None = None  # the failCode of a failed image check
    image_done_at: float | None = None
    status: str = "pending"  # APIXO's "state"
    completed: float | None = None
    fail_code: str | None = None
    fail_msg: str | None = None
    result_url: str | None = None
    result_expires: int | None = None
    charged: bool = False
    callback_attempts: list[dict] = field(default_factory=list)

    @property
    def create_ms(self) -> int:
        return int(self.created * 1000)

    def status_data(self) -> dict[str, Any]:
        """``data`` of the status response ("Status response fields")."""
        data: dict[str, Any] = {"taskId": self.task_id, "state": self.status}
        if self.status == "success":
            data["resultJson"] = json_string({"resultUrls": [self.result_url]})
        elif self.status == "failed":
            data["failCode"] = self.fail_code
            data["failMsg"] = self.fail_msg
        data["createTime"] = self.create_ms
        if self.completed is not None:
            complete_ms = int(self.completed * 1000)
            data["completeTime"] = complete_ms
            data["costTime"] = complete_ms - self.create_ms
        return data

    def snapshot(self) -> dict[str, Any]:
        return {
            "taskId": self.task_id,
            "model": self.model,
            "mode": self.mode,
            "prompt": self.prompt,
            "duration": self.duration,
            "output_seconds": self.output_seconds,
            "resolution": self.resolution,
            "price": float(self.price),
            "request_type": self.request_type,
            "callback_url": self.callback_url,
            "provider": self.provider,
            "image_url": self.image_url,
            "image_check": self.image_check,
            "image_info": dict(self.image_info),
            "api_key": self.api_key,
            "created": self.created,
            "generation_seconds": self.generation_seconds,
            "state": self.status,
            "charged": self.charged,
            "result_url": self.result_url,
            "result_expires": self.result_expires,
            "callback_attempts": [dict(a) for a in self.callback_attempts],
            "status": self.status_data(),
        }


def json_string(obj: Any) -> str:
    """Compact JSON text (``resultJson`` is a JSON *string*, "Status response fields")."""
    return json.dumps(obj, separators=(",", ":"))
