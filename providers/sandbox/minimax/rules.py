"""MiniMax sandbox: the documented rules (platform.minimax.io; ``providers.md``, MiniMax).

Models, durations, resolutions, prices, the "Error Codes" messages and ``base_resp``,
MiniMax's knobs, output dimensions and the refusals with code 2013.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any

from ..common import COMMON_KNOBS, Knob, KnobError, Refused, parse_bool, with_defaults

DEFAULT_API_KEY = "sk-sandbox-minimax"

MODEL_STANDARD = "MiniMax-Hailuo-2.3"
MODEL_FAST = "MiniMax-Hailuo-2.3-Fast"
#: model -> needs first_frame_image ("MiniMax-Hailuo-2.3-Fast: image-to-video only").
MODELS: dict[str, bool] = {MODEL_STANDARD: False, MODEL_FAST: True}

DURATIONS = (6, 10)
RESOLUTIONS = ("768P", "1080P")
DEFAULT_DURATION = 6
DEFAULT_RESOLUTION = "768P"
MAX_PROMPT_CHARS = 2000  # images: "Size: < 20MB" (common.MAX_IMAGE_BYTES)
IMAGE_MIME_TYPES = ("image/jpeg", "image/jpg", "image/png", "image/webp")

#: USD per video (providers.md, MiniMax "Price").
PRICES: dict[tuple[str, str, int], Decimal] = {
    (MODEL_STANDARD, "768P", 6): Decimal("0.28"),
    (MODEL_STANDARD, "768P", 10): Decimal("0.56"),
    (MODEL_STANDARD, "1080P", 6): Decimal("0.49"),
    (MODEL_FAST, "768P", 6): Decimal("0.19"),
    (MODEL_FAST, "768P", 10): Decimal("0.32"),
    (MODEL_FAST, "1080P", 6): Decimal("0.33"),
}

#: The "Error Codes" page (messages as listed there).
STATUS_MESSAGES: dict[int, str] = {
    0: "success",
    1000: "unknown error",
    1001: "request timeout",
    1002: "rate limit",
    1004: "not authorized",
    1008: "insufficient balance",
    1024: "internal error",
    1026: "input new_sensitive",
    1027: "output new_sensitive",
    1033: "system error",
    1039: "token limit",
    1041: "conn limit",
    1042: "invisible character ratio limit",
    2013: "invalid params",
    2049: "invalid api key",
}

#: base_resp code used with a non-200 HTTP answer ([http:STATUS], routing errors).
HTTP_TO_CODE = {400: 2013, 401: 1004, 402: 1008, 403: 1004, 404: 2013, 405: 2013, 413: 2013, 429: 1002}

QUERY_STATES = ("Preparing", "Queueing", "Processing")
FINAL_STATES = ("Success", "Fail")
LOWER_STATUS = {"Preparing": "processing", "Queueing": "processing", "Processing": "processing",
                "Success": "success", "Fail": "failed"}

#: Share of the generation time spent in Preparing and in Queueing (the rest is Processing).
PREPARING_SHARE = 0.2
QUEUEING_SHARE = 0.2

_MARK_ERROR = re.compile(r"\[error:(\d{1,6})\]", re.IGNORECASE)
_DATA_URL = re.compile(r"data:(image/[A-Za-z0-9.+-]+);base64,(.*)", re.DOTALL)

LOGIN_FAIL_MSG = "login fail: Please carry the API secret key in the 'Authorization' field of the request header"


def status_message(code: int) -> str:
    return STATUS_MESSAGES.get(code, f"error {code}")


def base_resp(code: int = 0, message: str | None = None) -> dict[str, Any]:
    return {"status_code": code, "status_msg": message if message is not None else status_message(code)}


def price_of(model: str, resolution: str, duration: int) -> Decimal:
    """USD price of one video (per video, whatever the outcome of the prompt)."""
    return PRICES[(model, resolution, duration)]


# --------------------------------------------------------------------------
# Knobs
# --------------------------------------------------------------------------


def _choice(*allowed: Any) -> Callable[[Any], Any]:
    def parse(value: Any) -> Any:
        for option in allowed:
            if value == option or (isinstance(value, str) and value.strip() == str(option)):
                return option
        raise KnobError(f"expected one of {', '.join(map(str, allowed))}, got {value!r}")

    return parse


def _positive(value: Any) -> float:
    if isinstance(value, bool):
        raise KnobError("expected a number, got a boolean")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise KnobError(f"expected a number, got {value!r}") from None
    if number <= 0:
        raise KnobError("must be > 0")
    return number


def _knob_specs() -> dict[str, Knob]:
    specs = with_defaults(COMMON_KNOBS, api_keys=[DEFAULT_API_KEY])
    extra = [
        Knob("rate_limit_http", False, parse_bool,
             "rate_limit_every answers HTTP 429 (true) instead of HTTP 200 with base_resp 1002 (false)"),
        Knob("challenge_timeout", 3.0, _positive, "seconds a callback receiver has to echo the challenge"),
        Knob("callback_status_style", "lower", _choice("lower", "query"),
             "callback status values: lower (processing/success/failed) or query (Preparing..Fail)"),
        Knob("invalid_key_code", 1004, _choice(1004, 2049), "base_resp code for a key that is not accepted"),
        Knob("file_id_as_string", False, parse_bool, "file.file_id in /v1/files/retrieve as a string (default: integer)"),
        Knob("check_images", True, parse_bool, "fetch/decode first_frame_image and check format, size and ratio"),
    ]
    specs.update({k.name: k for k in extra})
    return specs


def output_dimensions(resolution: str, image: tuple[int, int] | None) -> tuple[int, int]:
    """Video width and height: 16:9 for text-to-video; the first frame's ratio otherwise."""
    short = 1080 if resolution == "1080P" else 768
    if not image or not image[0] or not image[1]:
        return (1920, 1080) if short == 1080 else (1366, 768)
    width, height = image

    def even(x: float) -> int:
        return max(2, int(round(x / 2.0)) * 2)

    if width >= height:
        return even(short * width / height), short
    return short, even(short * height / width)


def _refused(code: int, detail: str | None = None, http_status: int = 200,
             headers: Mapping[str, str] | None = None, message: str | None = None) -> Refused:
    """A refusal with ``base_resp`` ``code`` (HTTP ``http_status``, 200 by default)."""
    if message is None:
        message = status_message(code) if detail is None else f"{status_message(code)}, {detail}"
    return Refused(http_status, message, headers=headers, code=code)


def _invalid(detail: str) -> Refused:
    return _refused(2013, detail)
