"""PoYo sandbox: the documented rules (seed ``000``; ``providers.md``, PoYo).

Model, durations, resolutions, credit prices, accepted keys, error types and messages,
the (invented) webhook signature, PoYo's knobs and the start-image check.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from decimal import Decimal
from typing import Any

from ..common import COMMON_KNOBS, MAX_IMAGE_BYTES, Knob, KnobError, fetch_image, sniff_image, with_defaults

DEFAULT_API_KEY = "sk-sandbox-poyo"
MODEL = "hailuo-2.3"
DURATIONS = (6, 10)
RESOLUTIONS = ("768p", "1080p")
MAX_PROMPT_CHARS = 5000  # images: at most common.MAX_IMAGE_BYTES, an arbitrary cap (the docs give no limit)

#: Capability catalogue prices, in credits.
PRICE_CREDITS: dict[tuple[str, int], int] = {
    ("768p", 6): 35,
    ("768p", 10): 70,
    ("1080p", 6): 60,
}
USD_PER_CREDIT = Decimal("0.005")

#: Invented: the docs do not say what an account starts with.
INITIAL_CREDITS = 10_000
USER_EMAIL = "sandbox@poyo.local"

TOP_LEVEL_KEYS = frozenset({"model", "callback_url", "input"})
INPUT_KEYS = frozenset({"prompt", "duration", "resolution", "start_image_url", "prompt_optimizer"})

#: ``error.type`` per HTTP status; only ``invalid_request_error`` is documented.
ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "insufficient_credits_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "invalid_request_error",
    429: "rate_limit_error",
    500: "server_error",
    502: "upstream_error",
    503: "server_error",
    504: "upstream_error",
}

#: Messages for ``[http:STATUS]`` (the status codes PoYo lists, plus a few).
HTTP_MESSAGES = {
    400: "Invalid request",
    401: "Invalid API key",
    402: "Insufficient credits",
    403: "Forbidden",
    404: "Not found",
    429: "Too many requests",
    500: "Internal server error",
    502: "Bad gateway: service temporarily unavailable",
    503: "Service unavailable",
    504: "Gateway timeout",
}

FAIL_DEFAULT_MESSAGE = "Content moderation failed"
FAIL_RANDOM_MESSAGE = "Video generation failed"

_ID_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789"

FINAL_STATES = ("finished", "failed")


def credits_for(resolution: str, duration: int) -> int:
    """Credits of one hailuo-2.3 task (capability catalogue)."""
    return PRICE_CREDITS[(resolution, duration)]


def credits_to_usd(credits: int) -> Decimal:
    """1 credit = 0.005 USD."""
    return USD_PER_CREDIT * credits


def sign_webhook(secret: str, timestamp: str, body: bytes) -> str:
    """The sandbox's (arbitrary, undocumented by PoYo) webhook signature.

    Lowercase hex of HMAC-SHA256(secret, ``timestamp + "." + body``).
    """
    msg = timestamp.encode("ascii") + b"." + body
    return hmac.new(secret.encode("utf-8"), msg, hashlib.sha256).hexdigest()


def iso_time(ts: float) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` in UTC, without a zone (as the docs' examples)."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts))


def new_task_id(now: float) -> str:
    """``task-unified-<unix seconds>-<8 lowercase alphanumerics>`` (the docs' example)."""
    suffix = "".join(secrets.choice(_ID_ALPHABET) for _ in range(8))
    return f"task-unified-{int(now)}-{suffix}"


# --------------------------------------------------------------------------
# Knob parsers (local: PoYo-specific knobs)
# --------------------------------------------------------------------------


def _optional_credits(value: Any) -> int | None:
    if value is None or value == "" or (isinstance(value, str) and value.lower() in {"none", "null"}):
        return None
    if isinstance(value, bool):
        raise KnobError("expected an integer, got a boolean")
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise KnobError(f"expected an integer, got {value!r}") from None
    if not isinstance(value, (int, float)) or float(value) != int(value):
        raise KnobError(f"expected an integer, got {value!r}")
    if value < 0:
        raise KnobError("must be >= 0")
    return int(value)


def _count(value: Any) -> int:
    parsed = _optional_credits(value)
    if parsed is None:
        raise KnobError("expected an integer >= 0")
    return parsed


def _optional_secret(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise KnobError("expected a string")
    return value


def _knob_specs() -> dict[str, Knob]:
    specs = with_defaults(COMMON_KNOBS, api_keys=[DEFAULT_API_KEY])
    specs.pop("balance", None)  # PoYo counts credits, see "credits"
    specs["credits"] = Knob(
        "credits", None, _optional_credits,
        "credit balance; when set, resets the balance and refuses (400) submits that cost more than is left",
    )
    specs["duplicate_callbacks"] = Knob(
        "duplicate_callbacks", 0, _count, "extra duplicate deliveries of each callback (the docs say duplicates happen)",
    )
    specs["webhook_secret"] = Knob(
        "webhook_secret", None, _optional_secret, "HMAC key of x-webhook-signature (default: random per sandbox)",
    )
    return specs


# --------------------------------------------------------------------------
# Input image
# --------------------------------------------------------------------------


def check_start_image(url: str, timeout: float) -> tuple[str | None, dict[str, Any]]:
    """Fetch ``start_image_url``; return ``(error_message or None, info)``."""
    got = fetch_image(url, timeout, "poyo-sandbox/1 (image check)")
    info: dict[str, Any] = {"url": url}
    if got.http_status is not None:
        info["http_status"] = got.http_status
    if got.data is None:
        if got.error:
            info["error"] = got.error
            return "Failed to download start_image_url: the URL is not reachable", info
        return f"Failed to download start_image_url: HTTP {got.http_status}", info
    info["content_type"] = got.content_type
    info["bytes"] = len(got.data)
    if len(got.data) > MAX_IMAGE_BYTES:
        return "start_image_url is too large", info
    fmt = sniff_image(got.data)
    info["format"] = fmt
    if fmt is None:
        return "start_image_url is not a valid image", info
    return None, info
