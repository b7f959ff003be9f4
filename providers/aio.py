"""Provider status reads straight over aiohttp: the poll sweep's HTTP layer.

The sweep keeps hundreds of status reads in flight per provider account; httpx's layer
(even over its aiohttp transport) cost it ~0.85 ms of CPU per task against ~0.29 ms for
aiohttp alone (issue 16, "Where the time goes"). :class:`AioProviderHttp` has
:class:`providers.http.ProviderHttp`'s ``request()`` contract, so the adapters still build
every request and parse every answer (one place per provider's protocol); only the
transport differs. What every provider call keeps here:

- connect and read timeouts (``Timeouts``; a connect timeout also bounds the wait for a
  pooled connection, as httpx's pool timeout does);
- no redirects followed (a provider's 3xx is an answer, never a hop that carries our key
  elsewhere), no proxies or ``.netrc`` from the environment, no cookies kept between calls;
- TLS verified against certifi's CA bundle (the one shared ``tls_context()``);
- every transport failure becomes a :class:`providers.http.ProviderError` with the same
  ``code`` and ``sent`` classification as ``ProviderHttp`` (``connect_error``/``Sent.NO``,
  ``timeout``/``Sent.MAYBE``, ``transport_error``/``Sent.MAYBE``);
- the request metrics (``observe_provider_request``).

Member- or provider-given URLs (videos, images, webhooks) never come here: they go through
the SSRF guard's pinned client (``providers.http.open_public_stream``). Status reads only go
to the account's own base URL, as with ``ProviderHttp``.
"""

from __future__ import annotations

import json as jsonlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

import aiohttp
from yarl import URL

from config.metrics import observe_provider_request
from providers.http import ProviderError, Sent, Timeouts, tls_context


class AioResponse:
    """The parts of an ``httpx.Response`` the adapters read, for an aiohttp answer.

    ``status_code`` (int), ``headers`` (case-insensitive mapping: ``.get("retry-after")``),
    ``content`` (the body, bytes), ``text`` (decoded: the charset of Content-Type, else
    UTF-8 with replacement), ``json()`` (raises ``ValueError``/``json.JSONDecodeError`` on a
    body that is not JSON, as httpx does).
    """

    __slots__ = ("charset", "content", "headers", "status_code", "url")

    def __init__(self, status_code: int, headers: Mapping[str, str], content: bytes, *, url: str = "", charset: str | None = None):
        self.status_code = status_code
        self.headers = headers
        self.content = content
        self.url = url
        self.charset = charset

    @property
    def text(self) -> str:
        """The body as text."""
        return self.content.decode(self.charset or "utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON."""
        return jsonlib.loads(self.content)


class AioProviderHttp:
    """``ProviderHttp.request()`` over an ``aiohttp.ClientSession`` the caller owns (see the module docstring).

    ``session``: made by :func:`make_sweep_session` (one per provider account and sweep);
    ``timeouts``: connect and read, in seconds; ``provider``: the label in error messages.
    """

    def __init__(self, session: aiohttp.ClientSession, *, timeouts: Timeouts | None = None, provider: str = ""):
        self.session = session
        self.timeouts = timeouts or Timeouts()
        self.provider = provider
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=self.timeouts.connect, sock_connect=self.timeouts.connect, sock_read=self.timeouts.read
        )

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Mapping[str, str] | None = None,
        json: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> AioResponse:
        """Send one request and return the answer whatever its status (an :class:`AioResponse`).

        ``params`` are encoded as httpx encodes them (``+`` for a space, ``%2F`` for a slash). Raises
        :class:`ProviderError` for transport failures only, classified as ``ProviderHttp`` does.
        """
        target = URL(url)  # the path quoted where it must be (as httpx does)
        if params:  # the query exactly as httpx encodes it (yarl would turn %2F back into /)
            query = urlencode({k: str(v) for k, v in params.items()})
            url = str(target) + ("&" if target.raw_query_string else "?") + query
            target = URL(url, encoded=True)
        prefix = f"{self.provider}: " if self.provider else ""
        try:
            with observe_provider_request(self.provider):
                async with self.session.request(
                    method, target, headers=headers, json=json, allow_redirects=False, timeout=self._timeout
                ) as resp:
                    body = await resp.read()
                    return AioResponse(resp.status, resp.headers, body, url=url, charset=resp.charset)
        except (aiohttp.ConnectionTimeoutError, aiohttp.ClientConnectorError, aiohttp.InvalidURL,
                aiohttp.NonHttpUrlClientError) as exc:
            raise ProviderError(
                f"{prefix}could not connect ({exc.__class__.__name__}: {exc})", code="connect_error", sent=Sent.NO
            ) from exc
        except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
            raise ProviderError(f"{prefix}no answer within {self.timeouts.read:g} s", code="timeout", sent=Sent.MAYBE) from exc
        except (aiohttp.ClientError, OSError) as exc:
            raise ProviderError(
                f"{prefix}connection failed mid-request ({exc.__class__.__name__}: {exc})",
                code="transport_error",
                sent=Sent.MAYBE,
            ) from exc


def make_sweep_session(limit: int) -> aiohttp.ClientSession:
    """One provider account's client for a sweep: at most ``limit`` connections, kept alive.

    Call it inside a running event loop; close it (``await session.close()``) in the same
    loop. No proxies or credentials from the environment, no cookie jar, certifi's CA bundle.
    """
    connector = aiohttp.TCPConnector(limit=max(1, limit), limit_per_host=0, ssl=tls_context(), ttl_dns_cache=60)
    return aiohttp.ClientSession(connector=connector, trust_env=False, cookie_jar=aiohttp.DummyCookieJar())
