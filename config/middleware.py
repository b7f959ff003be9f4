"""The API's own middleware stack: machine-to-machine requests skip the browser's.

``MIDDLEWARE`` is the browser's stack (sessions, CSRF, the logged-in user, messages, allauth,
HTMX, static files, django-csp). None of it serves a request to the REST API: every API
operation authenticates with a bearer token (``config.apiauth.TokenAuth``), never a session,
and answers JSON. Nor does it serve the other callers that are programs: a provider's
callback (``/hooks/…``, authenticated by the token in its URL), the health checks
(``/healthz``) and Prometheus (``/metrics``, a bearer token or an allowed address).
:class:`ApiStack`, first in ``MIDDLEWARE``, hands each of these requests to a chain built
from ``HAILUO_API_MIDDLEWARE`` instead (security headers, the API's error shape, unknown query
parameters), with the browser stack's ``Content-Security-Policy`` and ``X-Frame-Options``
headers set from values computed once. The interactive docs (``/api/v1/docs``) and the
OpenAPI document stay on the browser stack: an HTML page.

Why: on ``GET /api/v1/generations/{id}`` the browser stack cost about a fifth of the request's
CPU in the process (issue 16, "authenticated read ≥ 50 % of a trivial view"): django-csp
builds its header from the settings on every response, and sessions, messages and allauth
each set up per-request state an API call never reads.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import MiddlewareNotUsed
from django.core.handlers.base import BaseHandler
from django.core.handlers.exception import convert_exception_to_response
from django.utils.module_loading import import_string

#: Path prefixes whose requests run ``HAILUO_API_MIDDLEWARE`` (``settings.HAILUO_API_STACK_PATHS``
#: replaces them): the REST API, providers' callbacks, health checks, metrics.
API_STACK_PATHS = ("/api/v1/", "/hooks/", "/healthz", "/metrics")
#: Paths under those that stay on the browser stack: HTML pages and the document they read.
BROWSER_PATHS = ("/api/v1/docs", "/api/v1/openapi.json")


class _ApiHandler(BaseHandler):
    """A handler whose chain is ``HAILUO_API_MIDDLEWARE`` around Django's own view dispatch
    (``BaseHandler._get_response``: URL resolution, the view, its exception middleware)."""

    def load_api_middleware(self, paths: list[str]) -> None:
        """Builds the chain as ``BaseHandler.load_middleware`` does for a synchronous stack."""
        self._view_middleware, self._template_response_middleware, self._exception_middleware = [], [], []
        handler = convert_exception_to_response(self._get_response)
        for path in reversed(paths):
            try:
                middleware = import_string(path)(handler)
            except MiddlewareNotUsed:
                continue
            if hasattr(middleware, "process_view"):
                self._view_middleware.insert(0, middleware.process_view)
            if hasattr(middleware, "process_template_response"):
                self._template_response_middleware.append(middleware.process_template_response)
            if hasattr(middleware, "process_exception"):
                self._exception_middleware.append(middleware.process_exception)
            handler = convert_exception_to_response(middleware)
        self._middleware_chain = handler


class ApiStack:
    """First in ``MIDDLEWARE``: a request whose path starts with one of :data:`API_STACK_PATHS`,
    except :data:`BROWSER_PATHS`, runs through ``HAILUO_API_MIDDLEWARE``; every other request
    through the rest of ``MIDDLEWARE``. The outer handler's work (the URL configuration,
    request signals, logging 4xx/5xx answers) is the same for both."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.prefix = tuple(getattr(settings, "HAILUO_API_STACK_PATHS", API_STACK_PATHS))
        handler = _ApiHandler()
        handler.load_api_middleware(list(settings.HAILUO_API_MIDDLEWARE))
        self.api_response = handler._middleware_chain

    def __call__(self, request):
        path = request.path_info
        if path.startswith(self.prefix) and not path.startswith(BROWSER_PATHS):
            return self.api_response(request)
        return self.get_response(request)


class ApiHeaders:
    """In ``HAILUO_API_MIDDLEWARE``: the ``Content-Security-Policy`` (or its report-only twin,
    ``DJANGO_CSP_REPORT_ONLY``) and ``X-Frame-Options`` headers the browser stack's
    django-csp and clickjacking middleware would set, computed once from the same settings
    (the API's operations customise neither: no nonce, no per-view policy)."""

    def __init__(self, get_response):
        from csp.constants import HEADER, HEADER_REPORT_ONLY
        from csp.utils import build_policy

        self.get_response = get_response
        self.headers: list[tuple[str, str]] = []
        if getattr(settings, "CONTENT_SECURITY_POLICY", None):
            self.headers.append((HEADER, build_policy()))
        if getattr(settings, "CONTENT_SECURITY_POLICY_REPORT_ONLY", None):
            self.headers.append((HEADER_REPORT_ONLY, build_policy(report_only=True)))
        self.headers.append(("X-Frame-Options", getattr(settings, "X_FRAME_OPTIONS", "DENY").upper()))

    def __call__(self, request):
        response = self.get_response(request)
        for name, value in self.headers:
            if name not in response:
                response[name] = value
        return response
