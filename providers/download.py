"""The one bounded download of a public URL (first-frame images, result videos).

Part of the HTTP seam: it opens every hop through :func:`providers.http.open_public_stream`
(the SSRF guard with pinned connections, redirects re-checked) and adds the size cap and the
overall deadline both callers need (``providers.images.fetch_image`` and the archive,
``generations.services.archive``).
"""

from __future__ import annotations

import time
from typing import BinaryIO

import httpx

from providers.http import Resolver, TooManyRedirects, UnsafeURL, open_public_stream


# --- bounded public download ----------------------------------------------------------------
class DownloadFailed(Exception):
    """A :func:`download_public` that did not complete; callers word the reason for their reader.

    ``reason`` is one of ``"refused"`` (the SSRF guard refused a hop; ``cause`` is the
    :class:`UnsafeURL`), ``"status"`` (the final hop answered ``status``, not 200),
    ``"too_large"`` (over ``max_bytes``; ``size`` is the declared Content-Length, or None when
    the stream itself passed the cap), ``"too_slow"`` (the overall deadline passed),
    ``"transport"`` (``cause`` is the httpx error) or ``"redirects"`` (more than
    ``max_redirects`` hops).
    """

    def __init__(self, reason: str, message: str, *, status: int | None = None, size: int | None = None,
                 cause: Exception | None = None):
        super().__init__(message)
        self.reason = reason
        self.status = status
        self.size = size
        self.cause = cause


def download_public(
    url: str,
    *,
    into: BinaryIO,
    max_bytes: int,
    timeout: float,
    connect_timeout: float = 10.0,
    read_timeout: float = 60.0,
    allowed_private_hosts=(),
    max_redirects: int = 5,
    resolver: Resolver | None = None,
) -> int:
    """GET ``url`` and stream its body into ``into`` (anything with ``write(bytes)``); return the byte count.

    The one bounded download for member- and provider-given URLs (first-frame images,
    result videos). Limits: every hop through :func:`open_public_stream` (http(s) only, the
    host resolved once and the connection pinned to the checked addresses, public unless a
    ``host:port`` of ``allowed_private_hosts``; redirects re-checked, at most
    ``max_redirects``); ``max_bytes`` (a larger Content-Length is refused before reading,
    and the stream is cut at the cap); ``timeout`` seconds overall, from the first request to
    the last chunk (each read also times out after ``min(read_timeout, timeout)`` s, each
    connect after ``connect_timeout`` s). Shared TLS context (:func:`tls_context`), no proxy
    from the environment. Raises :class:`DownloadFailed`; what was written to ``into``
    before a failure is the caller's to discard.
    """
    deadline = time.monotonic() + timeout
    limits = httpx.Timeout(min(read_timeout, timeout), connect=connect_timeout)
    try:
        with open_public_stream(url, allowed_private_hosts=allowed_private_hosts, resolver=resolver,
                                timeout=limits, max_redirects=max_redirects) as response:
            if response.status_code != 200:
                raise DownloadFailed("status", f"HTTP {response.status_code}", status=response.status_code)
            declared = response.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise DownloadFailed("too_large", f"{int(declared):,} bytes declared", size=int(declared))
            size = 0
            # Each piece as it arrives (no re-chunking): a trickle is cut at the deadline,
            # not only once 64 KB have gathered.
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > max_bytes:
                    raise DownloadFailed("too_large", f"over {max_bytes:,} bytes")
                if time.monotonic() > deadline:
                    raise DownloadFailed("too_slow", f"over {timeout:g} s")
                into.write(chunk)
            return size
    except TooManyRedirects as exc:
        raise DownloadFailed("redirects", f"more than {max_redirects} redirects", cause=exc) from exc
    except UnsafeURL as exc:
        raise DownloadFailed("refused", str(exc), cause=exc) from exc
    except httpx.HTTPError as exc:
        raise DownloadFailed("transport", f"{exc.__class__.__name__}: {exc}", cause=exc) from exc
