"""APIXO sandbox: the documented rules (seeds ``001``/``002``; ``providers.md``, APIXO).

Models and modes, durations, the "Billing" prices, fail codes and HTTP messages,
and the input-image rules (JPEG/PNG, short side > 300 px, 2:5..5:2, at most 20 MB).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ..common import MAX_IMAGE_BYTES, fetch_image, image_size, sniff_image

DEFAULT_API_KEY = "sk-sandbox-apixo"

#: The example balance of "System APIs" / ``providers.md`` (USD).
INITIAL_BALANCE = Decimal("74.87")


@dataclass(frozen=True)
class ModeRule:
    """One mode of one model, per the docs' mode tables."""

    family: str  # "standard" or "pro"
    needs_image: bool
    resolution: str
    fixed_seconds: int | None  # pro modes: fixed output length; standard: None (duration 6|10)


#: "Request body" mode table (hailuo-2-3) and "Parameters" (hailuo-2-3-fast).
MODELS: dict[str, dict[str, ModeRule]] = {
    "hailuo-2-3": {
        "standard-text-to-video": ModeRule("standard", False, "768p", None),
        "standard-image-to-video": ModeRule("standard", True, "768p", None),
        "pro-text-to-video": ModeRule("pro", False, "1080p", 5),
        "pro-image-to-video": ModeRule("pro", True, "1080p", 5),
    },
    # "This model only supports image-to-video"; pro output "fixed ... 6 seconds".
    "hailuo-2-3-fast": {
        "standard-image-to-video": ModeRule("standard", True, "768p", None),
        "pro-image-to-video": ModeRule("pro", True, "1080p", 6),
    },
}

STANDARD_DURATIONS = (6, 10)
REQUEST_TYPES = ("async", "callback")
ROUTING_PROVIDERS = ("auto", "value", "official")

#: "Billing" table of the Hailuo 2.3 page.
STANDARD_USD_PER_SECOND = Decimal("0.056")
PRO_USD_PER_TASK = Decimal("0.49")

#: failMsg for the documented fail codes ("Task failure codes"; fast page "Error Codes").
FAIL_MESSAGES = {
    "PromptInvalid": "Prompt is invalid or rejected by provider",
    "SensitiveContent": "Prompt, input image, or output failed content checks",
    "SensitiveContentDetected": "Sensitive content detected",
    "InputOutputSensitiveContentDetected": "Prompt, input image, or output failed content checks",
    "InputImageSensitiveContentDetected": "Input image failed content checks",
    "NSFW": "NSFW content detected",
    "ProhibitedContentDetected": "Prohibited content detected",
    "PromptLengthExceeded": "Prompt length exceeded",
    "ImageFormatIncorrect": "Input image format is incorrect; use a JPG/JPEG/PNG image",
    "InvalidImageSize": "Input image size is invalid: short side must be greater than 300px, aspect ratio between 2:5 and 5:2, at most 20MB",
    "RateLimited": "Provider-side rate limit",
    "Timeout": "Provider-side timeout",
    "CONTENT_VIOLATION": "Content violates safety guidelines",
    "INVALID_IMAGE_URL": "Cannot access the provided image URL",
    "PROCESSING_TIMEOUT": "Processing timed out",
    "GENERATION_FAILED": "Video generation failed",
    "INSUFFICIENT_CREDITS": "Insufficient credits",
}

#: Messages for ``[http:STATUS]`` ("Errors and troubleshooting" > "HTTP errors").
HTTP_MESSAGES = {
    400: "Invalid request body",
    401: "Missing or invalid API key",
    402: "Insufficient balance or quota",
    403: "Key or route cannot access the model",
    404: "Not found",
    429: "Rate limit or concurrency limit reached",
    500: "Server error or unknown upstream failure",
    502: "Upstream provider error",
    503: "Service unavailable",
    504: "Upstream timeout",
}

FINAL_STATES = ("success", "failed")


def price_for(model: str, mode: str, duration: int | None) -> Decimal:
    """APIXO price of one task, per the "Billing" table of the Hailuo 2.3 page.

    Standard modes: ``duration * 0.056`` USD; pro modes: 0.49 USD per task.
    The hailuo-2-3-fast page only says standard is "billed by duration" and
    pro "billed per task" without figures, so the sandbox uses the same
    figures for it (an assumption, not a documented price).
    """
    rule = MODELS[model][mode]
    if rule.family == "standard":
        return STANDARD_USD_PER_SECOND * int(duration or 0)
    return PRO_USD_PER_TASK


# --------------------------------------------------------------------------
# Image checks (own header parsing; no Pillow)
# --------------------------------------------------------------------------


def image_dimensions(data: bytes) -> tuple[str, int, int]:
    """Return ``(format, width, height)`` for PNG or JPEG bytes (``common.image_size``).

    Raises ``ValueError("format")`` for anything else (ImageFormatIncorrect)
    and ``ValueError("corrupt")`` for a truncated or malformed header.
    """
    if sniff_image(data) not in ("png", "jpeg"):
        raise ValueError("format")
    return image_size(data)


def inspect_image_bytes(data: bytes) -> tuple[str | None, dict[str, Any]]:
    """Apply the documented image rules; return ``(failCode or None, info)``.

    Rules (Hailuo 2.3 "Parameters" note; hailuo-2-3-fast "Parameters"):
    format JPG/JPEG/PNG; aspect ratio strictly greater than 2:5 and less than
    5:2; short side strictly greater than 300 px; at most 20 MB.
    """
    info: dict[str, Any] = {"bytes": len(data)}
    if len(data) > MAX_IMAGE_BYTES:
        return "InvalidImageSize", info
    try:
        fmt, width, height = image_dimensions(data)
    except ValueError:
        return "ImageFormatIncorrect", info
    info.update(format=fmt, width=width, height=height)
    if min(width, height) <= 300:
        return "InvalidImageSize", info
    # 2/5 < w/h < 5/2, in integers
    if not (5 * width > 2 * height and 2 * width < 5 * height):
        return "InvalidImageSize", info
    return None, info


def fetch_and_inspect_image(url: str, timeout: float) -> tuple[str | None, dict[str, Any]]:
    """Fetch ``url`` (at most 20 MB + 1 byte) and inspect it.

    An unreachable URL or a non-2xx answer gives ``INVALID_IMAGE_URL``
    ("Cannot access the provided image URL", fast page "Error Codes").
    """
    got = fetch_image(url, timeout, "apixo-sandbox/1 (image check)", trust_length=True)
    info: dict[str, Any] = {"url": url}
    if got.http_status is not None:
        info["http_status"] = got.http_status
    if got.error:
        info["error"] = got.error
    if got.data is None and got.declared_bytes is None:
        return "INVALID_IMAGE_URL", info
    info["content_type"] = got.content_type
    if got.declared_bytes is not None:
        info["bytes"] = got.declared_bytes
        return "InvalidImageSize", info
    code, more = inspect_image_bytes(got.data or b"")
    info.update(more)
    return code, info
