"""Reusable building blocks for local provider sandboxes (standard library only).

A *sandbox* is a small HTTP server that speaks one provider's protocol on
loopback, written from that provider's documentation alone.  The demo and the
test-suite point the real adapters at it.  This module holds what every
sandbox needs, whatever the provider:

* :class:`Knob` / :class:`Knobs` -- typed, validated settings that can be given
  at start (constructor kwargs, CLI flags) and changed at runtime through
  ``POST /_sandbox/config``;
* :class:`RequestLog` -- an in-memory log of every API request, file download
  and callback delivery attempt (``GET /_sandbox/requests``);
* :class:`UrlSigner` -- expiring HMAC-signed download URLs;
* :class:`CallbackSender` -- background webhook delivery with retries;
* :class:`SandboxServer` / :class:`SandboxRequestHandler` -- a threaded HTTP
  server base with the ``/_sandbox/*`` control routes, ``/files/*`` downloads
  (with single ``Range`` support), latency and fault injection;
* :func:`register_sandbox`, :func:`start_sandbox`, :class:`SandboxHandle` --
  the registry of sandbox kinds and the Python API used by tests and the demo.

Nothing here knows any provider's wire format: provider sandboxes subclass
:class:`SandboxServer` and implement :meth:`SandboxServer.handle_api`,
:meth:`SandboxServer.error_response` and friends.

Do not import Django (or anything outside the standard library) here: the
sandbox must start in a plain Python process.
"""

from __future__ import annotations

from .files import CallbackSender, RequestLog, UrlSigner, parse_range
from .images import MAX_IMAGE_BYTES, FetchedImage, fetch_image, image_size, make_png, sniff_image
from .knobs import COMMON_KNOBS, Knob, KnobError, Knobs, hang_seconds_outlasting, parse_bool, with_defaults
from .prompts import PromptMarkers, Refused, is_http_url, marker_number
from .registry import SandboxHandle, register_sandbox, sandbox_kinds, start_sandbox
from .responses import ASSETS_DIR, SAMPLE_MP4, Response, json_dumps, json_response, text_response
from .server import ApiRequest, SandboxRequestHandler, SandboxServer
from .tasks import TaskSandbox

__all__ = [
    "ASSETS_DIR",
    "SAMPLE_MP4",
    "MAX_IMAGE_BYTES",
    "ApiRequest",
    "CallbackSender",
    "FetchedImage",
    "Knob",
    "KnobError",
    "Knobs",
    "PromptMarkers",
    "Refused",
    "RequestLog",
    "Response",
    "SandboxHandle",
    "SandboxRequestHandler",
    "SandboxServer",
    "TaskSandbox",
    "UrlSigner",
    "COMMON_KNOBS",
    "fetch_image",
    "hang_seconds_outlasting",
    "image_size",
    "is_http_url",
    "json_dumps",
    "json_response",
    "make_png",
    "marker_number",
    "parse_bool",
    "parse_range",
    "register_sandbox",
    "sandbox_kinds",
    "sniff_image",
    "start_sandbox",
    "text_response",
    "with_defaults",
]
