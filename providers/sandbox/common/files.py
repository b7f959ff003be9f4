"""The request log, signed download URLs with ``Range`` and background callback delivery.

Part of :mod:`providers.sandbox.common` (standard library only: no Django)."""

from __future__ import annotations

import collections
import copy
import hashlib
import hmac
import re
import secrets
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .responses import json_dumps

# --------------------------------------------------------------------------
# Request log
# --------------------------------------------------------------------------


class RequestLog:
    """Bounded in-memory log of API requests, downloads and callback attempts.

    Each entry is a dict with at least ``seq``, ``time`` (Unix seconds) and
    ``kind`` (``"api"``, ``"file"`` or ``"callback"``).  Entries returned by
    :meth:`entries` are deep copies.
    """

    def __init__(self, maxlen: int = 10_000):
        self._lock = threading.Lock()
        self._entries: collections.deque[dict] = collections.deque(maxlen=maxlen)
        self._seq = 0

    def add(self, **entry: Any) -> dict:
        with self._lock:
            self._seq += 1
            record = {"seq": self._seq, "time": time.time(), **entry}
            self._entries.append(record)
            return record

    def update(self, record: dict, **changes: Any) -> None:
        with self._lock:
            record.update(changes)

    def entries(self, kind: str | None = None) -> list[dict]:
        with self._lock:
            return [copy.deepcopy(e) for e in self._entries if kind is None or e.get("kind") == kind]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


# --------------------------------------------------------------------------
# Signed URLs
# --------------------------------------------------------------------------


class UrlSigner:
    """Expiring HMAC-SHA256 signatures for download paths.

    The signature covers the path and the ``expires`` Unix time, so neither
    can be changed by the client.
    """

    def __init__(self, secret: bytes | None = None):
        self._secret = secret or secrets.token_bytes(32)

    def sign(self, path: str, expires: int) -> str:
        msg = f"{path}\n{int(expires)}".encode()
        return hmac.new(self._secret, msg, hashlib.sha256).hexdigest()

    def query(self, path: str, expires: int) -> str:
        return urllib.parse.urlencode({"expires": int(expires), "sig": self.sign(path, expires)})

    def verify(self, path: str, expires: str | None, sig: str | None, now: float | None = None) -> str:
        """Return ``"ok"``, ``"bad_signature"`` or ``"expired"``."""
        if not expires or not sig or not re.fullmatch(r"\d{1,12}", expires):
            return "bad_signature"
        if not hmac.compare_digest(self.sign(path, int(expires)), sig):
            return "bad_signature"
        if (now if now is not None else time.time()) > int(expires):
            return "expired"
        return "ok"


def parse_range(header: str | None, size: int) -> tuple[int, int] | None | str:
    """Parse a single ``Range: bytes=`` header.

    Returns ``None`` to serve the whole file (no header, or a form we do not
    support such as several ranges -- allowed by RFC 9110 §14.2), a
    ``(start, end)`` inclusive pair, or ``"unsatisfiable"`` (416).
    """
    if not header:
        return None
    m = re.fullmatch(r"\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*", header)
    if not m:
        return None
    first, last = m.group(1), m.group(2)
    if first == "" and last == "":
        return None
    if first == "":
        suffix = int(last)
        if suffix == 0 or size == 0:
            return "unsatisfiable"
        return max(0, size - suffix), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if start >= size or end < start:
        return "unsatisfiable"
    return start, min(end, size - 1)


# --------------------------------------------------------------------------
# Callback sender
# --------------------------------------------------------------------------


class CallbackSender:
    """Deliver webhook payloads in background threads, retrying on failure.

    A delivery counts as received only when the receiver answers HTTP 200
    (the rule APIXO documents; other providers may be looser and can pass
    ``ok_statuses``).  After a failure the sender waits ``delays[i]`` seconds
    and tries again, so there are at most ``1 + len(delays)`` attempts.  Every
    attempt is recorded in the :class:`RequestLog` with ``kind="callback"``.
    """

    def __init__(self, log: RequestLog, stop_event: threading.Event, user_agent: str = "provider-sandbox/1"):
        self.log = log
        self.stop_event = stop_event
        self.user_agent = user_agent

    def send(
        self,
        url: str,
        payload: Any,
        *,
        delays: Iterable[float],
        timeout: float,
        context: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        ok_statuses: Iterable[int] = (200,),
        on_attempt: Callable[[dict], None] | None = None,
    ) -> threading.Thread:
        thread = threading.Thread(
            target=self._deliver,
            args=(url, payload, list(delays), timeout, dict(context or {}), dict(headers or {}), set(ok_statuses), on_attempt),
            name="sandbox-callback",
            daemon=True,
        )
        thread.start()
        return thread

    def _deliver(self, url, payload, delays, timeout, context, headers, ok_statuses, on_attempt) -> None:
        body = json_dumps(payload)
        total = 1 + len(delays)
        for attempt in range(1, total + 1):
            if self.stop_event.is_set():
                return
            status: int | None = None
            error: str | None = None
            started = time.time()
            try:
                req = urllib.request.Request(
                    url,
                    data=body,
                    method="POST",
                    headers={"Content-Type": "application/json", "User-Agent": self.user_agent, **headers},
                )
                with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 (sandbox)
                    status = resp.status
                    resp.read(64 * 1024)
            except urllib.error.HTTPError as exc:
                status = exc.code
                exc.close()
            except Exception as exc:  # connection refused, timeout, bad URL...
                error = f"{type(exc).__name__}: {exc}"
            ok = status in ok_statuses
            record = {
                "kind": "callback",
                "method": "POST",
                "url": url,
                "path": urllib.parse.urlsplit(url).path,
                "body": payload,
                "attempt": attempt,
                "max_attempts": total,
                "status": status,
                "error": error,
                "ok": ok,
                "duration_ms": round((time.time() - started) * 1000, 1),
                **context,
            }
            self.log.add(**record)
            if on_attempt:
                on_attempt(record)
            if ok or attempt == total:
                return
            if self.stop_event.wait(delays[attempt - 1]):
                return
