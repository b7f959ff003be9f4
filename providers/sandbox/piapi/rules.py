"""PiAPI sandbox: the documented rules (seed ``004``; ``providers.md``, PiAPI).

Sub-models, durations, resolutions, the "Pricing" tables, usage units, RFC3339Nano
times, PiAPI's knobs and the inclusive image bounds (300..4096 px, 2:5..5:2).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from ..common import COMMON_KNOBS, MAX_IMAGE_BYTES, Knob, KnobError, fetch_image, sniff_image, with_defaults
from ..common import image_size as _any_image_size

DEFAULT_API_KEY = "sk-sandbox-piapi"

#: Starting balance when the ``balance`` knob is unset (invented).
INITIAL_BALANCE_USD = Decimal("100.00")
ACCOUNT_ID = "sandbox-account-0001"
ACCOUNT_NAME = "piapi-sandbox"

#: "Pricing" tables of the Generate Video page: (model, resolution, duration) -> USD per task.
#: The v2.3 1080 row prints no duration; it is 6 s ("1080p+10s is not supported").
PRICES_USD: dict[tuple[str, int, int], Decimal] = {
    ("v2.3", 768, 6): Decimal("0.23"),
    ("v2.3", 768, 10): Decimal("0.45"),
    ("v2.3", 1080, 6): Decimal("0.46"),
    ("v2.3-fast", 768, 6): Decimal("0.16"),
    ("v2.3-fast", 768, 10): Decimal("0.26"),
    ("v2.3-fast", 1080, 6): Decimal("0.26"),
}
#: ``usage.consume`` unit: the example's 2300000 for a 0.23 USD task.
USAGE_UNITS_PER_USD = 10_000_000

SUB_MODELS = ("v2.3", "v2.3-fast")
DURATIONS = (6, 10)
RESOLUTIONS = (768, 1080)
MAX_PROMPT_CHARS = 2000
MIN_SIDE, MAX_SIDE = 300, 4096

GENERIC_FAIL_CODE = 10000
GO_ZERO_TIME = "0001-01-01T00:00:00Z"

FINAL = ("completed", "failed")

HTTP_TITLES = {
    400: "invalid request",
    401: "unauthorized",
    402: "insufficient credits",
    403: "forbidden",
    404: "not found",
    405: "method not allowed",
    409: "conflict",
    429: "too many requests",
    500: "internal server error",
    502: "bad gateway",
    503: "service unavailable",
    504: "gateway timeout",
}

_UUID_MP4 = re.compile(r"([0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12})\.mp4")


def price_usd(sub_model: str, resolution: int, duration: int) -> Decimal:
    """USD price of one task (the page's "Pricing" tables)."""
    return PRICES_USD[(sub_model, resolution, duration)]


def rfc3339_nano(ns: int | None) -> str:
    """Format Unix nanoseconds like Go's RFC3339Nano in UTC; ``None`` -> Go's zero time."""
    if ns is None:
        return GO_ZERO_TIME
    sec, frac = divmod(int(ns), 1_000_000_000)
    text = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if frac:
        text += "." + f"{frac:09d}".rstrip("0")
    return text + "Z"


# --------------------------------------------------------------------------
# Knob parsers (local)
# --------------------------------------------------------------------------


def _choice(*allowed: str):
    def parse(value: Any) -> str:
        if not isinstance(value, str) or value.lower() not in allowed:
            raise KnobError(f"expected one of: {', '.join(allowed)}")
        return value.lower()

    return parse


def _count(value: Any) -> int:
    if isinstance(value, bool):
        raise KnobError("expected an integer >= 0")
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or value < 0:
        raise KnobError("expected an integer >= 0")
    return value


def _knob_specs() -> dict[str, Knob]:
    specs = with_defaults(COMMON_KNOBS, api_keys=[DEFAULT_API_KEY])
    extra = [
        Knob("status_case", "lower", _choice("lower", "upper", "title"),
             "letter case of task statuses (the docs say it varies)"),
        Knob("video_field", "video", _choice("video", "video_url", "download_url"),
             "output key carrying the video URL"),
        Knob("empty_output", "object", _choice("object", "null"),
             "output of an unfinished or failed task: {} (object) or null"),
        Knob("duplicate_webhooks", 0, _count, "extra identical deliveries of each webhook notification"),
    ]
    for knob in extra:
        specs[knob.name] = knob
    return specs


# --------------------------------------------------------------------------
# Input image checks (own header parsing; no Pillow)
# --------------------------------------------------------------------------


class ImageProblem(ValueError):
    """An input image breaks one of the documented rules."""


def image_size(data: bytes) -> tuple[str, int, int]:
    """Return ``(format, width, height)`` of PNG or JPEG bytes (``common.image_size``).

    Raises :class:`ImageProblem` for any other format or a damaged header.
    """
    fmt = sniff_image(data)
    if fmt not in ("png", "jpeg"):
        raise ImageProblem("unsupported image format: only JPG and PNG are accepted")
    try:
        return _any_image_size(data)
    except ValueError:
        raise ImageProblem("damaged PNG header" if fmt == "png" else "damaged JPEG header (no frame size found)") from None


def check_image_bytes(data: bytes) -> dict[str, Any]:
    """Apply "Image Requirements"; return the image's facts or raise :class:`ImageProblem`."""
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageProblem(f"image is larger than 20MB ({len(data)} bytes)")
    fmt, width, height = image_size(data)
    info = {"format": fmt, "width": width, "height": height, "bytes": len(data)}
    for name, value in (("width", width), ("height", height)):
        if value < MIN_SIDE:
            raise ImageProblem(f"image {name} {value}px is below the minimum of {MIN_SIDE}px")
        if value > MAX_SIDE:
            raise ImageProblem(f"image {name} {value}px is above the maximum of {MAX_SIDE}px")
    # 2/5 <= width/height <= 5/2, in integers
    if 5 * width < 2 * height or 2 * width > 5 * height:
        raise ImageProblem(f"image aspect ratio {width}:{height} is not between 2:5 and 5:2")
    return info


def fetch_and_check_image(url: str, timeout: float) -> tuple[str | None, dict[str, Any]]:
    """Fetch ``url`` and check it; return ``(problem or None, info)``."""
    got = fetch_image(url, timeout, "piapi-sandbox/1 (image check)", trust_length=True)
    info: dict[str, Any] = {"url": url}
    if got.http_status is not None:
        info["http_status"] = got.http_status
    if got.declared_bytes is not None:
        info["bytes"] = got.declared_bytes
        return f"image is larger than 20MB ({got.declared_bytes} bytes)", info
    if got.data is None:
        if got.error:
            info["error"] = got.error
            return f"failed to download image_url: {got.error_type}", info
        return f"failed to download image_url: HTTP {got.http_status}", info
    try:
        info.update(check_image_bytes(got.data))
    except ImageProblem as exc:
        info["bytes"] = len(got.data)
        return str(exc), info
    return None, info
