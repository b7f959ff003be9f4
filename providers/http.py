"""The one outbound HTTP seam for provider traffic: timeouts, error classification, SSRF guard.

Every error a provider call can end in becomes a :class:`ProviderError` that says whether
retrying can help (``permanent``) and whether the request may have reached the provider
(``sent``): ARCHITECTURE.md, "Errors", and providers.md, "What follows for every adapter"
(400/401/402/403/404 are fix-and-don't-retry; 429, 5xx, timeouts and connection errors
are retried with backoff).
"""

from __future__ import annotations

import functools
import ipaddress
import socket
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from config.metrics import observe_provider_request

PERMANENT_STATUSES = frozenset({400, 401, 402, 403, 404, 405, 409, 410, 413, 415, 422})


class Sent:
    """How far a failed request got (values of :attr:`ProviderError.sent`)."""

    NO = "no"  # never left us (connection refused, connect timeout, pool timeout)
    MAYBE = "maybe"  # may have reached the provider (read timeout, connection dropped mid-answer)
    YES = "yes"  # the provider answered (with an error status or an error body)


class ProviderError(Exception):
    """A provider call failed.

    Attributes: ``message`` (the provider's words where it gave some), ``code`` (the
    provider's error code or the HTTP status as text), ``http_status`` (int or None),
    ``permanent`` (True: fix the request, do not retry), ``retry_after`` (seconds, from
    a 429's Retry-After), ``sent`` (a :class:`Sent` value).
    """

    def __init__(
        self,
        message: str,
        *,
        code: str = "",
        http_status: int | None = None,
        permanent: bool = False,
        retry_after: float | None = None,
        sent: str = Sent.YES,
    ):
        super().__init__(message)
        self.message = message
        self.code = code or (str(http_status) if http_status else "")
        self.http_status = http_status
        self.permanent = permanent
        self.retry_after = retry_after
        self.sent = sent

    def __repr__(self) -> str:
        return (
            f"ProviderError({self.message!r}, code={self.code!r}, http_status={self.http_status}, "
            f"permanent={self.permanent}, sent={self.sent!r})"
        )


def parse_retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        from datetime import UTC, datetime

        when = parsedate_to_datetime(value)
        return max(0.0, (when - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return None


def classify_status(status: int) -> bool:
    """True when an HTTP error status is permanent (don't retry); 429 and 5xx are transient."""
    if status == 429 or status >= 500:
        return False
    return status in PERMANENT_STATUSES or 400 <= status < 500


@dataclass(frozen=True)
class Timeouts:
    """Connect and read timeouts in seconds."""

    connect: float = 10.0
    read: float = 60.0


class ProviderHttp:
    """Async JSON-over-HTTP calls to one provider, with errors mapped to :class:`ProviderError`.

    ``client`` is an ``httpx.AsyncClient`` owned by the caller (the poller shares one
    aiohttp-backed client across a sweep; submits use httpx's own transport, whose errors
    tell a refused connection from a dropped answer exactly).
    """

    def __init__(self, client: httpx.AsyncClient, *, timeouts: Timeouts | None = None, provider: str = ""):
        self.client = client
        self.timeouts = timeouts or Timeouts()
        self.provider = provider

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> httpx.Response:
        """Send one request and return the response whatever its status.

        Raises :class:`ProviderError` for transport failures only: ``sent=NO`` when the
        request cannot have reached the provider, ``sent=MAYBE`` when it may have.
        """
        timeout = httpx.Timeout(self.timeouts.read, connect=self.timeouts.connect, pool=self.timeouts.connect)
        prefix = f"{self.provider}: " if self.provider else ""
        try:
            with observe_provider_request(self.provider):  # metrics: requests and latency per provider and operation
                return await self.client.request(method, url, headers=headers, json=json, params=params, timeout=timeout)
        except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol) as exc:
            raise ProviderError(
                f"{prefix}could not connect ({exc.__class__.__name__}: {exc})", code="connect_error", sent=Sent.NO
            ) from exc
        except httpx.TimeoutException as exc:
            raise ProviderError(
                f"{prefix}no answer within {self.timeouts.read:g} s", code="timeout", sent=Sent.MAYBE
            ) from exc
        except (TimeoutError, httpx.TransportError) as exc:
            raise ProviderError(
                f"{prefix}connection failed mid-request ({exc.__class__.__name__}: {exc})",
                code="transport_error",
                sent=Sent.MAYBE,
            ) from exc


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context (certifi's CA bundle) shared by every client we make.

    Building one loads and parses the whole CA bundle (tens of milliseconds); a worker makes
    a client per submit and per download, so it is built once per process.
    """
    import certifi

    return ssl.create_default_context(cafile=certifi.where())


def make_submit_client() -> httpx.AsyncClient:
    """A client for submits: httpx's own transport (exact sent/not-sent classification)."""
    return httpx.AsyncClient(follow_redirects=False, trust_env=False, verify=tls_context())


def make_poll_client(max_connections: int = 500) -> httpx.AsyncClient:
    """A client for many concurrent GETs: httpx over the aiohttp transport (ARCHITECTURE.md measurements)."""
    from httpx_aiohttp import AiohttpTransport

    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    return httpx.AsyncClient(transport=AiohttpTransport(limits=limits, trust_env=False), follow_redirects=False)


# --- SSRF guard ------------------------------------------------------------------------
class UnsafeURL(ValueError):
    """A URL we refuse to fetch: not http(s), or resolving to a non-public address."""


def check_public_url(url: str, *, allowed_private_hosts: frozenset[str] | set[str] = frozenset()) -> None:
    """Raise :class:`UnsafeURL` unless ``url`` is http(s) and every address its host resolves to is public.

    Hosts listed in ``allowed_private_hosts`` (the sandboxes, by explicit setting) skip the
    address check. Call it again for every redirect hop.
    """
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"}:
        raise UnsafeURL(f"only http and https URLs are fetched, not {parts.scheme or 'no scheme'!r}")
    host = parts.hostname
    if not host:
        raise UnsafeURL("the URL has no host")
    if host in allowed_private_hosts:
        return
    try:
        infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise UnsafeURL(f"the host {host!r} does not resolve") from exc
    for info in infos:
        address = ipaddress.ip_address(info[4][0])
        if not address.is_global:
            raise UnsafeURL(f"the host {host!r} resolves to a non-public address ({address})")
