"""Small helpers shared by the adapters (never by the sandboxes)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from providers.http import ProviderError, Sent, classify_status, parse_retry_after


def ms_to_datetime(value: Any) -> datetime | None:
    """Convert a Unix timestamp in milliseconds (int, float or numeric string) to aware UTC."""
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return datetime.fromtimestamp(number / 1000.0, tz=UTC)


def epoch_to_datetime(value: Any) -> datetime | None:
    """Convert a Unix timestamp given in seconds OR milliseconds to aware UTC.

    Values above 10^11 are read as milliseconds (10^11 s is the year 5138), others as seconds;
    for providers whose pages disagree on the unit (providers.md, qingbo).
    """
    if value in (None, ""):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if number > 1e11:
        number /= 1000.0
    return datetime.fromtimestamp(number, tz=UTC)


def read_json(response: httpx.Response, provider: str) -> dict:
    """The response body as a JSON object; a non-JSON body raises a transient ProviderError."""
    try:
        body = response.json()
    except (json.JSONDecodeError, UnicodeDecodeError, ValueError) as exc:
        snippet = response.text[:200] if response.content else ""
        raise ProviderError(
            f"{provider}: answered HTTP {response.status_code} with a body that is not JSON: {snippet!r}",
            http_status=response.status_code,
            permanent=classify_status(response.status_code) if response.status_code >= 400 else False,
            retry_after=parse_retry_after(response.headers.get("retry-after")),
        ) from exc
    if not isinstance(body, dict):
        raise ProviderError(f"{provider}: expected a JSON object, got {type(body).__name__}", http_status=response.status_code)
    return body


def http_error(
    response: httpx.Response, provider: str, message: str, code: str = "", *, status: int | None = None
) -> ProviderError:
    """Build the ProviderError for an error answer; ``status`` overrides the HTTP status for classification."""
    effective = status or response.status_code
    return ProviderError(
        f"{provider}: {message}" if message else f"{provider}: HTTP {effective}",
        code=code or str(effective),
        http_status=response.status_code,
        permanent=classify_status(effective),
        retry_after=parse_retry_after(response.headers.get("retry-after")),
        sent=Sent.YES,
    )


def to_decimal(value: Any) -> Decimal | None:
    """A provider number as an exact Decimal (via its text form), or None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        return Decimal(str(value))
    except (InvalidOperation, ValueError):
        return None


def int_or_none(value: Any) -> int | None:
    """An integer field as the providers send it (``5``, ``"5"``); None when absent, empty,
    a boolean or not a whole number."""
    if value is None or isinstance(value, bool) or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def progress_percent(value: Any) -> int | None:
    """A ``progress`` field 0-100 (PoYo "Status", qingbo "Query Task Status"), clamped; None
    when absent or not a number."""
    if value in (None, "") or isinstance(value, bool):
        return None
    try:
        return max(0, min(100, int(float(value))))
    except (TypeError, ValueError):
        return None


def header_value(headers: Mapping[str, str], name: str) -> str | None:
    """A header's value looked up case-insensitively (Django's and httpx's maps are; a dict is not)."""
    wanted = name.lower()
    for key, value in headers.items():
        if str(key).lower() == wanted:
            return value
    return None
