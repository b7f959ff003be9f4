"""Shared protocol helpers: refusals, URLs and prompt markers.

Part of :mod:`providers.sandbox.common` (standard library only: no Django)."""

from __future__ import annotations

import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

# --------------------------------------------------------------------------
# Shared protocol helpers: refusals, URLs, prompt markers, images
# --------------------------------------------------------------------------


class Refused(Exception):
    """A request refused by a provider route; :meth:`TaskSandbox.refusal_response` renders it.

    ``status`` is the HTTP status, ``message`` the main text, ``detail`` a second
    text (providers whose error body has one), ``headers`` extra response headers
    and ``code`` a provider-specific code (PoYo's ``error.type``, qingbo's
    ``error.code``, MiniMax's ``base_resp.status_code``).
    """

    def __init__(self, status: int, message: str, detail: str = "", headers: Mapping[str, str] | None = None,
                 code: Any = None):
        super().__init__(message)
        self.status, self.message, self.detail, self.code = status, message, detail, code
        self.headers = dict(headers or {})


def is_http_url(value: Any) -> bool:
    """True for a non-blank string that is an ``http``/``https`` URL with a host."""
    if not isinstance(value, str) or not value.strip():
        return False
    parts = urllib.parse.urlsplit(value.strip())
    return parts.scheme in ("http", "https") and bool(parts.hostname)


_MARK_HTTP = re.compile(r"\[http:(\d{3})\]", re.IGNORECASE)
_MARK_HANG = re.compile(r"\[hang\]", re.IGNORECASE)


def marker_number(prompt: str, name: str) -> float | None:
    """The N of the first ``[name:N]`` marker in ``prompt`` (N a decimal number), else None."""
    m = re.search(r"\[" + re.escape(name) + r":(\d+(?:\.\d+)?)\]", prompt, re.IGNORECASE)
    return float(m.group(1)) if m else None


@dataclass(frozen=True)
class PromptMarkers:
    """The test markers found in a prompt (README, "Prompt markers").

    ``fail`` is True when a ``[fail]`` or ``[fail:CODE]`` marker is present (CODE
    in ``fail_code``, None without one); ``http_status`` is the STATUS of the
    first ``[http:STATUS]`` marker when it lies in 400..599; ``seconds`` the N
    of ``[seconds:N]``; ``hang`` whether ``[hang]`` is present.
    """

    fail: bool
    fail_code: str | None
    http_status: int | None
    seconds: float | None
    hang: bool

    @classmethod
    def parse(cls, prompt: str, fail_code: str = r"[A-Za-z0-9_.\-]+") -> PromptMarkers:
        """Read the markers of ``prompt``; ``fail_code`` is the regex a ``[fail:CODE]`` CODE must match."""
        fail = re.search(r"\[fail(?::(" + fail_code + r"))?\]", prompt, re.IGNORECASE)
        http = _MARK_HTTP.search(prompt)
        status = int(http.group(1)) if http else None
        return cls(
            fail=fail is not None,
            fail_code=fail.group(1) if fail else None,
            http_status=status if status is not None and 400 <= status <= 599 else None,
            seconds=marker_number(prompt, "seconds"),
            hang=bool(_MARK_HANG.search(prompt)),
        )
