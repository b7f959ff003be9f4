"""The one outbound HTTP seam: provider calls (timeouts, error classification), the SSRF
guard, and the one bounded download of a public URL (result videos, input images).

Every error a provider call can end in becomes a :class:`ProviderError` that says whether
retrying can help (``permanent``) and whether the request may have reached the provider
(``sent``): ARCHITECTURE.md, "Errors", and providers.md, "What follows for every adapter"
(400/401/402/403/404 are fix-and-don't-retry; 429, 5xx, timeouts and connection errors
are retried with backoff).
"""

from __future__ import annotations

import contextlib
import functools
import ipaddress
import socket
import ssl
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

import httpcore
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
    transport = AiohttpTransport(limits=limits, trust_env=False, verify=_verifying_tls_context())
    return httpx.AsyncClient(transport=transport, follow_redirects=False)


@functools.cache
def _verifying_tls_context() -> ssl.SSLContext:
    """One certificate-verifying TLS context (certifi's bundle) per process, shared by every poll
    client: loading the bundle costs 25-100 ms of CPU, which a callback's status read (one
    client per read) paid on every callback. An ``SSLContext`` is safe to share between threads."""
    return httpx.create_ssl_context(trust_env=False)


# --- SSRF guard ------------------------------------------------------------------------
# Every URL we fetch for someone else (a member's first-frame image, a provider's result
# video) goes through ``open_public_stream``: the host is resolved ONCE per connection by
# the guard, every address is checked, and the socket connects to an address that was
# checked (pinned), so a DNS answer that changes between check and connect (rebinding)
# cannot reach a private address. The URL keeps its host name, so the Host header and the
# TLS server name (SNI and certificate check) are the original ones. Redirects are followed
# by hand, each hop checked and pinned the same way.
class UnsafeURL(ValueError):
    """A URL we refuse to fetch: not http(s), no host, a non-public address, too many redirects.

    The message names the host as written in the URL, never the address it resolved to.
    """


class TooManyRedirects(UnsafeURL):
    """The URL redirected more times than allowed."""


#: A resolver: ``(host, port) -> [address text, ...]`` in the order to try them. Raises
#: ``OSError`` (e.g. ``socket.gaierror``) when the host does not resolve.
Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    """The operating system's answer for ``host`` (``getaddrinfo``), addresses in its order, deduplicated."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


#: The resolver the guard uses when a caller passes none (a module-level hook: tests may
#: pass their own resolver to the functions below instead of replacing this).
RESOLVER: Resolver = system_resolver

# IPv6 ranges that carry (or route to) an IPv4 address: refused whatever the IPv4 inside,
# since what they reach depends on a translator we do not control.
_TRANSITION_NETWORKS = tuple(
    ipaddress.IPv6Network(net)
    for net in (
        "::ffff:0:0/96",  # IPv4-mapped (RFC 4291)
        "::/96",  # IPv4-compatible (deprecated, RFC 4291); also :: and ::1
        "::ffff:0:0:0/96",  # IPv4-translated (RFC 2765)
        "64:ff9b::/96",  # NAT64 well-known prefix (RFC 6052)
        "64:ff9b:1::/48",  # NAT64 local-use prefix (RFC 8215)
        "2002::/16",  # 6to4 (RFC 3056)
        "2001::/32",  # Teredo (RFC 4380)
    )
)


def _isatap_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address embedded in an ISATAP interface identifier (``…:0:5efe:a.b.c.d``,
    ``…:200:5efe:a.b.c.d``, RFC 5214), or None."""
    iid_high = (int(address) >> 32) & 0xFFFFFFFF
    if iid_high in (0x00005EFE, 0x02005EFE):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _ipv4_is_public(address: ipaddress.IPv4Address) -> bool:
    return address.is_global and not (address.is_multicast or address.is_reserved or address.is_unspecified)


def is_public_address(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """True when ``address`` is a public unicast address we may connect to for a member.

    Refused: everything Python's ``ipaddress`` does not call global (private, loopback,
    link-local, shared 100.64/10, documentation, …), multicast, reserved, unspecified,
    IPv6 site-local, every IPv6 transition range that embeds or routes to an IPv4 address
    (IPv4-mapped, IPv4-compatible, IPv4-translated, NAT64 ``64:ff9b::/96`` and
    ``64:ff9b:1::/48``, 6to4 ``2002::/16``, Teredo ``2001::/32``), and ISATAP interface
    identifiers embedding a non-public IPv4 address.
    """
    if isinstance(address, ipaddress.IPv4Address):
        return _ipv4_is_public(address)
    if address.scope_id:
        return False
    if any(address in net for net in _TRANSITION_NETWORKS):
        return False
    if not address.is_global or address.is_multicast or address.is_site_local or address.is_reserved:
        return False
    embedded = _isatap_ipv4(address)
    return embedded is None or _ipv4_is_public(embedded)


AllowedHosts = frozenset[tuple[str, int | None]]


def parse_allowed_private_hosts(entries) -> AllowedHosts:
    """``HAILUO_ALLOWED_PRIVATE_HOSTS`` entries → ``{(host, port or None)}``.

    Each entry is ``host:port`` (``127.0.0.1:8801``, ``[::1]:8801``, ``localhost:8801``) or
    ``host:*`` (any port of that host: for test setups whose servers take free ports; a
    deployment lists its ports). Hosts compare case-insensitively. Raises ``ValueError`` for
    an entry without a port (a bare host is no longer accepted: it allowed every local port).
    """
    out: set[tuple[str, int | None]] = set()
    for raw in entries:
        entry = str(raw).strip()
        if not entry:
            continue
        host, sep, port = entry.rpartition(":")
        if not sep or not host or host.endswith(":") or (":" in host and not host.startswith("[")):
            raise ValueError(f"{entry!r}: give host:port (e.g. 127.0.0.1:8801), or host:* for any port")
        host = host.strip("[]").lower()
        if port == "*":
            out.add((host, None))
        elif port.isdigit() and 0 < int(port) < 65536:
            out.add((host, int(port)))
        else:
            raise ValueError(f"{entry!r}: the port must be a number from 1 to 65535 or *")
    return frozenset(out)


def _allowed(host: str, port: int, allowed: AllowedHosts) -> bool:
    host = host.lower().strip("[]")
    return (host, port) in allowed or (host, None) in allowed


def resolve_checked(host: str, port: int, *, allowed: AllowedHosts = frozenset(), resolver: Resolver | None = None) -> list[str]:
    """Resolve ``host`` once and return the addresses to connect to, all checked.

    A ``(host, port)`` in ``allowed`` may resolve to any address (the sandboxes); otherwise
    every address must be public (:func:`is_public_address`), and one non-public answer
    refuses the host (a name that mixes public and private answers is not fetched). Raises
    :class:`UnsafeURL`; its message names ``host`` but not the addresses.
    """
    resolve = resolver or RESOLVER
    try:
        answers = resolve(host, port)
    except (OSError, UnicodeError) as exc:
        raise UnsafeURL(f"the host {host!r} does not resolve") from exc
    addresses = []
    for answer in answers:
        try:
            addresses.append(ipaddress.ip_address(answer))
        except ValueError as exc:
            raise UnsafeURL(f"the host {host!r} resolves to an address we cannot check") from exc
    if not addresses:
        raise UnsafeURL(f"the host {host!r} does not resolve")
    if not _allowed(host, port, allowed) and not all(is_public_address(a) for a in addresses):
        raise UnsafeURL(f"the host {host!r} resolves to a non-public address")
    return [str(a) for a in addresses]


def _url_host_port(url: str) -> tuple[str, int]:
    """The host and port a URL connects to; raises :class:`UnsafeURL` unless it is http(s) with a host."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeURL("the URL is malformed") from exc
    if parts.scheme not in {"http", "https"}:
        raise UnsafeURL(f"only http and https URLs are fetched, not {parts.scheme or 'no scheme'!r}")
    if not parts.hostname:
        raise UnsafeURL("the URL has no host")
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def check_public_url(url: str, *, allowed_private_hosts=(), resolver: Resolver | None = None) -> list[str]:
    """Raise :class:`UnsafeURL` unless ``url`` is http(s) and its host resolves to public addresses only.

    A check only (e.g. to refuse early): it resolves now and the answer may change before a
    connection; to fetch, use :func:`open_public_stream`, which connects to what it checked.
    ``allowed_private_hosts`` are ``host:port`` entries (:func:`parse_allowed_private_hosts`).
    Returns the checked addresses.
    """
    host, port = _url_host_port(url)
    return resolve_checked(host, port, allowed=parse_allowed_private_hosts(allowed_private_hosts), resolver=resolver)


class PinnedBackend(httpcore.SyncBackend):
    """An httpcore network backend whose every TCP connection goes to an address the guard checked.

    ``connect_tcp(host, port)`` resolves ``host`` once through :func:`resolve_checked` and
    connects to those addresses in turn (never resolving again); TLS then runs over that
    socket with the URL's host as server name. Unix sockets are refused.
    """

    def __init__(self, *, allowed: AllowedHosts = frozenset(), resolver: Resolver | None = None):
        self.allowed = allowed
        self.resolver = resolver

    def connect_tcp(self, host, port, timeout=None, local_address=None, socket_options=None):
        last: Exception | None = None
        for address in resolve_checked(host, port, allowed=self.allowed, resolver=self.resolver):
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last = exc
        assert last is not None
        raise last

    def connect_unix_socket(self, path, timeout=None, socket_options=None):
        raise UnsafeURL("unix sockets are not fetched")


class PinnedTransport(httpx.HTTPTransport):
    """httpx's own transport over a :class:`PinnedBackend` (no proxies, HTTP/1.1, our CA bundle).

    Any client built on it connects only to checked addresses, whatever URL it is given and
    however many redirects it follows. Raises :class:`UnsafeURL` from ``handle_request``
    when a host is refused.
    """

    def __init__(self, *, allowed: AllowedHosts = frozenset(), resolver: Resolver | None = None,
                 limits: httpx.Limits | None = None):
        limits = limits or httpx.Limits(max_connections=4, max_keepalive_connections=2)
        super().__init__(verify=tls_context(), trust_env=False, limits=limits)
        # httpx takes no network backend: the pool it made is replaced by the same one over ours.
        self._pool = httpcore.ConnectionPool(
            ssl_context=tls_context(),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=PinnedBackend(allowed=allowed, resolver=resolver),
        )


def make_public_client(*, allowed_private_hosts=(), resolver: Resolver | None = None,
                       timeout: httpx.Timeout | float = 30.0) -> httpx.Client:
    """A sync client for fetching member- or provider-given URLs: pinned connections
    (:class:`PinnedTransport`), no redirects followed automatically, no proxies from the environment.

    ``allowed_private_hosts`` are ``host:port`` entries; raises ``ValueError`` for a bad one.
    """
    allowed = parse_allowed_private_hosts(allowed_private_hosts)
    return httpx.Client(
        transport=PinnedTransport(allowed=allowed, resolver=resolver), follow_redirects=False,
        trust_env=False, timeout=timeout,
    )


@contextlib.contextmanager
def open_public_stream(url: str, *, allowed_private_hosts=(), resolver: Resolver | None = None,
                       timeout: httpx.Timeout | float = 30.0, max_redirects: int = 5,
                       headers: Mapping[str, str] | None = None) -> Iterator[httpx.Response]:
    """GET ``url`` with every hop checked and pinned; yields the final (non-redirect) response, streaming.

    Redirects (301/302/303/307/308 with a Location) are followed by hand up to
    ``max_redirects``, each new URL checked again (scheme, host, addresses) and its
    connection pinned. The response is whatever status the last hop answered; the caller
    reads it (``iter_bytes``) inside the ``with`` and applies its own size and time caps.
    Raises :class:`UnsafeURL` (refused URL or address), :class:`TooManyRedirects`, and
    ``httpx.HTTPError`` for transport failures.
    """
    with make_public_client(allowed_private_hosts=allowed_private_hosts, resolver=resolver, timeout=timeout) as client:
        for _hop in range(max_redirects + 1):
            _url_host_port(url)
            response = client.send(client.build_request("GET", url, headers=headers), stream=True)
            if response.is_redirect:
                location = response.headers.get("location", "")
                response.close()
                url = urljoin(url, location)
                continue
            try:
                yield response
            finally:
                response.close()
            return
    raise TooManyRedirects(f"more than {max_redirects} redirects")
