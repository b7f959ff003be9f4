"""JSON answers, the sandbox's assets and its request-size cap.

Part of :mod:`providers.sandbox.common` (standard library only: no Django)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
SAMPLE_MP4 = ASSETS_DIR / "sample.mp4"

MAX_REQUEST_BODY = 2 * 1024 * 1024  # a sandbox never needs more


# --------------------------------------------------------------------------
# JSON and responses
# --------------------------------------------------------------------------


def json_dumps(obj: Any) -> bytes:
    """Serialise ``obj`` as compact UTF-8 JSON bytes."""
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


@dataclass
class Response:
    """An HTTP answer built by a route: status, body bytes and extra headers."""

    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"


def json_response(status: int, obj: Any, headers: Mapping[str, str] | None = None) -> Response:
    """Build a JSON :class:`Response`."""
    return Response(status, json_dumps(obj), dict(headers or {}), "application/json")


def text_response(status: int, text: str, headers: Mapping[str, str] | None = None) -> Response:
    """Build a ``text/plain`` :class:`Response`."""
    return Response(status, text.encode("utf-8"), dict(headers or {}), "text/plain; charset=utf-8")
