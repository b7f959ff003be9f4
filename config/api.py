"""The ninja API object at /api/v1 (OpenAPI docs at /api/v1/docs).

Bearer tokens (``accounts.ApiToken``): a read-scoped token may only read (GET/HEAD); writes
answer 403 ``insufficient_scope``. Every request is counted against the token's rate limits
(``HAILUO_API_RATE_LIMIT``, and ``HAILUO_API_WRITE_RATE_LIMIT`` for writes); beyond them,
429 ``rate_limited`` with ``Retry-After``. Every error is an ``ErrorOut``.
"""

from __future__ import annotations

import logging
import math
import threading
import time

from django.conf import settings
from django.http import Http404
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.throttling import SimpleRateThrottle

from config.apiauth import READ_METHODS, TokenAuth
from config.errors import DomainError, error_body

log = logging.getLogger(__name__)

class TokenRateThrottle(SimpleRateThrottle):
    """Requests per API token, keyed on the token id, as a generic cell rate algorithm (GCRA).

    ``setting`` names the Django setting holding the rate ("count/period", e.g. ``600/min``),
    read on every request so tests and deployments can change it. ``writes_only`` counts
    POST/PUT/PATCH/DELETE only. A token may send ``count`` requests at once, then one every
    ``period / count`` seconds; beyond that the answer is 429 with ``Retry-After`` (seconds
    until the next request fits). Per token the cache holds one number, the theoretical
    arrival time of its next request (Django's ``CACHES``; per process with the default
    local-memory cache), so a check costs the same whatever the limit: django-ninja's own
    throttle keeps the list of every request of the period and pickles it on each request
    (issue 16), and keeps per-request state on the shared throttle object, which a gthread
    worker's threads overwrite. Here the wait is kept per thread.
    """

    def __init__(self, setting: str, *, writes_only: bool = False):
        self.setting = setting
        self.writes_only = writes_only
        self.scope = setting.lower()
        self._rates: dict[str, tuple[int, int]] = {}
        self._local = threading.local()

    def allow_request(self, request) -> bool:
        self._local.wait = None
        rate = getattr(settings, self.setting, None)
        if not rate:
            return True
        key = self.get_cache_key(request)
        if key is None:
            return True
        if rate not in self._rates:
            self._rates[rate] = self.parse_rate(rate)
        count, period = self._rates[rate]
        now = time.time()
        arrival = max(self.cache.get(key) or now, now) + period / count
        if arrival - now > period:
            self._local.wait = arrival - now - period
            return False
        self.cache.set(key, arrival, math.ceil(arrival - now) + 1)
        return True

    def wait(self) -> float | None:
        """Seconds until this thread's last refused request would fit (``Retry-After``)."""
        return getattr(self._local, "wait", None)

    def get_cache_key(self, request) -> str | None:
        token = getattr(request, "api_token", None)
        if token is None or (self.writes_only and request.method in READ_METHODS):
            return None
        return f"throttle_gcra_{self.scope}_{token.pk}"


class StudioApi(NinjaAPI):
    """The NinjaAPI whose OpenAPI document also lists the answers every operation may give:
    401 ``unauthorized`` and 429 ``rate_limited`` (with ``Retry-After``) on every secured
    operation, 403 ``insufficient_scope`` on every write, 400 ``bad_request`` (not JSON) wherever
    there is a body, 422 ``invalid_request`` wherever there are parameters or a body."""

    def get_openapi_schema(self, *, path_prefix=None, path_params=None):
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        error = {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}}
        for path, methods in schema.get("paths", {}).items():
            for method, operation in methods.items():
                responses = operation.setdefault("responses", {})

                def add(status: int, description: str, headers=None, responses=responses) -> None:
                    entry = responses.setdefault(status, responses.pop(str(status), {"description": description}))
                    entry.setdefault("content", error)
                    if headers:
                        entry.setdefault("headers", headers)

                if operation.get("security"):
                    add(401, "`unauthorized`: no, an unknown, a revoked or an expired token")
                    add(429, "`rate_limited`: over this token's rate limit", {
                        "Retry-After": {"description": "Seconds to wait", "schema": {"type": "integer"}},
                    })
                    if method.upper() not in READ_METHODS:
                        add(403, "`insufficient_scope` (a read-only token) or `forbidden`")
                if operation.get("requestBody"):
                    add(400, "`bad_request`: the body is not JSON")
                if operation.get("parameters") or operation.get("requestBody") or "{" in path:
                    add(422, "`invalid_request`: malformed parameters or body, with `fields`")
        return schema


api = StudioApi(
    title="Hailuo Studio API",
    version="1",
    description=(
        "Create Hailuo video generations, read their state, price and video; cancel and retry them; "
        "manage your API tokens. Bearer token auth (`Authorization: Bearer hs_...`). Every error is "
        "`{code, message, fields}`; rate limits per token answer 429 with `Retry-After`."
    ),
    auth=TokenAuth(),
    throttle=[TokenRateThrottle("HAILUO_API_RATE_LIMIT"), TokenRateThrottle("HAILUO_API_WRITE_RATE_LIMIT", writes_only=True)],
    urls_namespace="api-v1",
)


@api.exception_handler(AuthenticationError)
def _unauthorized(request, exc):
    """Stable error shape: ``{"code": "unauthorized", "message": ...}``."""
    return api.create_response(
        request,
        {"code": "unauthorized", "message": "A valid bearer token is required (unknown, revoked or expired).", "fields": {}},
        status=401,
    )


@api.exception_handler(DomainError)
def _domain_error(request, exc: DomainError):
    """Every deliberate refusal: ``ErrorOut`` with the error's own status."""
    return api.create_response(request, exc.as_dict(), status=exc.status)


@api.exception_handler(ValidationError)
def _invalid(request, exc):
    """Stable error shape for malformed bodies: ``{"code": "invalid_request", "fields": {...}}``."""
    fields: dict[str, list[str]] = {}
    for error in exc.errors:
        name = ".".join(str(p) for p in error.get("loc", [])[1:] or ["body"])
        fields.setdefault(name, []).append(error.get("msg", "invalid"))
    return api.create_response(
        request, {"code": "invalid_request", "message": "The request is invalid.", "fields": fields}, status=422
    )


@api.exception_handler(HttpError)
def _http_error(request, exc: HttpError):
    """ninja's own refusals (429 from the throttles, 400 for unparsable JSON...) in ``ErrorOut``."""
    return api.create_response(request, error_body(exc.status_code, str(exc)), status=exc.status_code)


@api.exception_handler(Http404)
def _not_found(request, exc):
    return api.create_response(request, error_body(404, "Not found."), status=404)


@api.exception_handler(Exception)
def _server_error(request, exc):
    """Anything unexpected: logged, answered 500 ``server_error`` (never a traceback)."""
    log.exception("Unhandled API error on %s %s", request.method, request.path)
    return api.create_response(request, error_body(500, "An unexpected error occurred; it was logged."), status=500)


from accounts.api import router as tokens_router  # noqa: E402
from approvals.api import router as approvals_router  # noqa: E402
from billing.api import router as reports_router  # noqa: E402
from billing.budgets_api import router as budgets_router  # noqa: E402
from generations.api import router as generations_router  # noqa: E402
from generations.batches.api import router as batches_router  # noqa: E402
from providers.api import router as providers_router  # noqa: E402
from teamwork.api import router as teamwork_router  # noqa: E402
from teamwork.library_api import router as library_router  # noqa: E402
from webhooks.api import router as webhooks_router  # noqa: E402

api.add_router("/", generations_router)
api.add_router("/", tokens_router)
api.add_router("/", providers_router)
api.add_router("/", reports_router)
api.add_router("/", webhooks_router)
api.add_router("/", teamwork_router)
api.add_router("/", library_router)
api.add_router("/", batches_router)
api.add_router("/", approvals_router)
api.add_router("/", budgets_router)
