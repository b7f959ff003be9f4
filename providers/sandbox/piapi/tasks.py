"""PiAPI sandbox: one accepted task and its timeline fields."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from .rules import FINAL, USAGE_UNITS_PER_USD


@dataclass
class PiapiTask:
    """One accepted task and its simulated timeline."""

    task_id: str
    sub_model: str
    prompt: str
    expand_prompt: bool
    duration: int
    resolution: int
    image_url: str
    service_mode: str
    webhook_endpoint: str
    webhook_secret: str
    price: Decimal
    api_key: str
    created: float
    created_ns: int
    generation_seconds: float
    planned_fail: tuple[int, str, str] | None = None  # (code, raw_message, message)
    image_check: str = "n/a"  # n/a | pending | ok | failed
    image_info: dict[str, Any] = field(default_factory=dict)
    image_error: str | None = None
    image_done_at: float | None = None
    status: str = "pending"
    started_ns: int | None = None
    ended_ns: int | None = None
    completed: float | None = None
    error_code: int = 0
    error_raw: str = ""
    error_message: str = ""
    result_url: str | None = None
    result_expires: int | None = None
    charged: bool = False
    callback_attempts: list[dict] = field(default_factory=list)  # the webhook deliveries

    @property
    def price_units(self) -> int:
        return int(self.price * USAGE_UNITS_PER_USD)

    @property
    def frozen_usd(self) -> Decimal:
        return Decimal(0) if self.status in FINAL else self.price
