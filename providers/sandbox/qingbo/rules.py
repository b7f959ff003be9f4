"""qingbo sandbox: the documented rules (seed ``003``; ``providers.md``, qingbo).

Per-model rules, prices and quota units, error codes and messages, qingbo's knobs
and the input-image loading (URL, ``data:`` URL or bare Base64; sniffed only).
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ..common import COMMON_KNOBS, MAX_IMAGE_BYTES, Knob, fetch_image, parse_bool, sniff_image, with_defaults

DEFAULT_API_KEY = "sk-sandbox-qingbo"

# --------------------------------------------------------------------------
# The documented rules
# --------------------------------------------------------------------------

#: "Pricing" of the newer Hailuo page, USD per second of output.
_PRICE_23 = {"768p": Decimal("0.05185"), "1080p": Decimal("0.0765")}
_PRICE_23_FAST = {"768p": Decimal("0.02635"), "1080p": Decimal("0.04505")}
#: Not documented for the other models.
FALLBACK_USD_PER_SECOND = Decimal("0.05")
#: Invented unit for ``refunded_quota`` (the page shows only an example integer).
QUOTA_UNITS_PER_USD = 500_000


@dataclass(frozen=True)
class ModelRule:
    """What one model accepts, per the "Available Models" tables."""

    default_resolution: str
    resolutions: tuple[str, ...]
    durations: tuple[int, ...]
    subject_reference: str  # "no" | "optional" | "required"
    needs_image: bool = False
    last_frame: bool = False
    usd_per_second: Mapping[str, Decimal] | None = None


#: Seed "Available Models" + newer page "Available Models".  Readings where the
#: docs leave the resolution set open: hailuo-2.3-fast and hailuo-02 take
#: 768p/1080p like hailuo-2.3 (the only "resolution options" list given);
#: the 01 models (6 s only) take their table default and 720p/768p, not 1080p.
MODELS: dict[str, ModelRule] = {
    "hailuo-2.3": ModelRule("768p", ("768p", "1080p"), (6, 10), "optional", usd_per_second=_PRICE_23),
    "hailuo-2.3-fast": ModelRule("768p", ("768p", "1080p"), (6, 10), "optional", usd_per_second=_PRICE_23_FAST),
    "hailuo-02": ModelRule("768p", ("768p", "1080p"), (6, 10), "no", last_frame=True),
    "T2V-01-Director": ModelRule("768p", ("720p", "768p"), (6,), "no"),
    "I2V-01-Director": ModelRule("720p", ("720p", "768p"), (6,), "no", needs_image=True),
    "S2V-01": ModelRule("720p", ("720p", "768p"), (6,), "required"),
    "minimax-hailuo-2.3": ModelRule("768p", ("768p", "1080p"), (6, 10), "optional", usd_per_second=_PRICE_23),
    "minimax-hailuo-2.3-fast": ModelRule("768p", ("768p", "1080p"), (6, 10), "optional", usd_per_second=_PRICE_23_FAST),
}

DURATIONS = (6, 10)
DEFAULT_DURATION = 6
MAX_1080P_DURATION = 6
ACTIONS = ("generate", "image2video")
ASPECT_RATIOS = ("16:9", "9:16", "1:1")
MAX_PROMPT_CHARS = 2000  # images: common.MAX_IMAGE_BYTES is a fetch limit here, not a documented rule

FINAL_STATUSES = ("completed", "failed", "cancelled")

_ERROR_CODES = {
    400: "invalid_request",
    401: "invalid_api_key",
    402: "insufficient_quota",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    429: "rate_limit_exceeded",
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}

_HTTP_MESSAGES = {
    400: "Invalid request parameters",
    401: "Authentication failed",
    402: "Insufficient balance",
    404: "Task or resource not found",
    429: "Rate limit exceeded",
    500: "Internal server error",
}


def price_for(model: str, resolution: str, duration: int) -> Decimal:
    """USD price of one task: per-second rate of (model, resolution) x duration."""
    rates = MODELS[model].usd_per_second or {}
    return rates.get(resolution, FALLBACK_USD_PER_SECOND) * int(duration)


# --------------------------------------------------------------------------
# Knobs
# --------------------------------------------------------------------------

def _is_unset(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip().lower() in {"", "none", "null", "auto"})


def _parse_optional_bool(value: Any) -> bool | None:
    return None if _is_unset(value) else parse_bool(value)


_non_negative = COMMON_KNOBS["generation_seconds"].parse


def _parse_quota(value: Any) -> float | None:
    return None if _is_unset(value) else _non_negative(value)


def _knob_specs() -> dict[str, Knob]:
    specs = with_defaults(COMMON_KNOBS, api_keys=[DEFAULT_API_KEY], result_ttl=86400.0, image_fetch_timeout=3.0)
    specs["generation_seconds"] = Knob(
        "generation_seconds", 8.0, _non_negative, "seconds a task spends in processing (after queue_seconds in queued)"
    )
    specs["balance"] = Knob("balance", None, _parse_quota, "alias of quota")
    for knob in [
        Knob("queue_seconds", 1.0, _non_negative, "seconds a task spends in queued (cancellable) before processing"),
        Knob("url_as_list", True, parse_bool, "result.videos[].url as a list of strings (false: a plain string)"),
        Knob("timestamps_in_seconds", False, parse_bool, "created_at/start_time/completed_at/expires_at in Unix seconds (false: ms)"),
        Knob("expires_at_in_seconds", None, _parse_optional_bool, "unit of expires_at alone (unset: follow timestamps_in_seconds)"),
        Knob("quota", None, _parse_quota, "account quota in USD (unset: unlimited); setting it sets the remaining quota; submits beyond it answer 402"),
    ]:
        specs[knob.name] = knob
    return specs


# --------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------


_B64_CHARS = re.compile(r"[A-Za-z0-9+/=\s_-]+")
_BARE_B64 = re.compile(r"[A-Za-z0-9+/]+={0,2}")


def _decode_base64(text: str) -> bytes | None:
    text = re.sub(r"\s+", "", text)
    if not text or not _B64_CHARS.fullmatch(text):
        return None
    try:
        if "-" in text or "_" in text:
            return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None


def _image_kind(value: Any) -> str | None:
    """``"url"``, ``"data"`` (data: URL) or ``"base64"`` for an acceptable image reference, else None."""
    if not isinstance(value, str) or not value.strip():
        return None
    v = value.strip()
    parts = urllib.parse.urlsplit(v)
    if parts.scheme in ("http", "https") and parts.hostname:
        return "url"
    if v[:5].lower() == "data:":
        header, sep, payload = v[5:].partition(",")
        if sep and header.lower().endswith(";base64") and _decode_base64(payload) is not None:
            return "data"
        return None
    if len(v) >= 16 and len(v) % 4 == 0 and _BARE_B64.fullmatch(v) and _decode_base64(v):
        return "base64"
    return None


def load_image(ref: str, timeout: float) -> tuple[str | None, dict[str, Any]]:
    """Fetch or decode one image reference; return ``(error message or None, info)``."""
    info: dict[str, Any] = {}
    kind = _image_kind(ref)
    if kind == "data":
        data = _decode_base64(ref.strip()[5:].partition(",")[2]) or b""
    elif kind == "base64":
        data = _decode_base64(ref) or b""
    else:
        info["url"] = ref
        got = fetch_image(ref, timeout, "qingbo-sandbox/1 (image fetch)")
        if got.http_status is not None:
            info["http_status"] = got.http_status
        if got.data is None:
            if got.error:
                info["error"] = got.error
                return f"cannot fetch image {ref}: {info['error']}", info
            return f"cannot fetch image {ref}: HTTP {got.http_status}", info
        info["content_type"] = got.content_type
        data = got.data
    info["bytes"] = len(data)
    if len(data) > MAX_IMAGE_BYTES:
        return "image is larger than the sandbox's 20 MB fetch limit", info
    fmt = sniff_image(data)
    info["format"] = fmt
    if fmt is None:
        where = ref if kind == "url" else f"{kind} image"
        return f"{where} is not an image (content type {info.get('content_type') or 'unknown'})", info
    return None, info


def _load_images(images: list[tuple[str, str]], timeout: float) -> tuple[str | None, list[dict[str, Any]]]:
    """Load each ``(field, reference)`` in turn; stop at the first problem, named ``"<field>: <problem>"``."""
    infos = []
    for where, ref in images:
        err, info = load_image(ref, timeout)
        info["field"] = where
        infos.append(info)
        if err:
            return f"{where}: {err}", infos
    return None, infos
