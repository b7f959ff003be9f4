"""The ninja API object at /api/v1 (OpenAPI docs at /api/v1/docs)."""

from ninja import NinjaAPI
from ninja.errors import AuthenticationError, ValidationError
from ninja.security import HttpBearer

from accounts.selectors import user_for_api_token
from config.errors import DomainError


class TokenAuth(HttpBearer):
    """``Authorization: Bearer hs_...`` — a per-user token from ``manage.py create_api_token``."""

    def authenticate(self, request, token):
        return user_for_api_token(raw_token=token)


api = NinjaAPI(
    title="Hailuo Studio API",
    version="1",
    description="Create Hailuo video generations, read their state, price and video. Bearer token auth.",
    auth=TokenAuth(),
    urls_namespace="api-v1",
)


@api.exception_handler(AuthenticationError)
def _unauthorized(request, exc):
    """Stable error shape: ``{"code": "unauthorized", "message": ...}``."""
    return api.create_response(request, {"code": "unauthorized", "message": "A valid bearer token is required."}, status=401)


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


from billing.api import router as reports_router  # noqa: E402
from generations.api import router as generations_router  # noqa: E402
from providers.api import router as providers_router  # noqa: E402
from webhooks.api import router as webhooks_router  # noqa: E402

api.add_router("/", generations_router)
api.add_router("/", providers_router)
api.add_router("/", reports_router)
api.add_router("/", webhooks_router)
