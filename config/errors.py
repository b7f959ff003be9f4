"""One domain error type and one error shape for the whole API.

Every refusal the app raises on purpose (a create request refused, bad report parameters,
a missing object, a forbidden page) is a :class:`DomainError`: a stable machine ``code``, a
human ``message``, ``fields`` mapping a field name to its messages, and the HTTP ``status``
it answers with. The ninja API has one exception handler for it (``config.api``) that writes
:class:`ErrorOut`; views and forms read the same attributes.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from django.http import Http404, JsonResponse
from ninja import Field, Schema

log = logging.getLogger(__name__)


class ErrorOut(Schema):
    """The API's one error body: ``{"code": str, "message": str, "fields": {name: [msg, ...]}}``."""

    code: str = Field(
        description="Stable error code, e.g. validation_error, budget_exceeded, forbidden, not_found", examples=["not_found"]
    )
    message: str = Field(examples=["No such generation."])
    fields: dict[str, list[str]] = Field(default_factory=dict, examples=[{}])


class DomainError(Exception):
    """A refusal with a stable ``code``, a ``message``, per-field ``fields`` and an HTTP ``status``.

    Subclasses set a default ``status`` (and may map codes to statuses in ``STATUS_BY_CODE``);
    a caller may pass ``status=`` to override. ``as_dict()`` is the :class:`ErrorOut` body.
    """

    status: int = 400
    STATUS_BY_CODE: dict[str, int] = {}

    def __init__(self, code: str, message: str, fields: dict[str, list[str]] | None = None, *, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.message = message
        self.fields = fields or {}
        if status is not None:
            self.status = status
        elif code in self.STATUS_BY_CODE:
            self.status = self.STATUS_BY_CODE[code]

    def as_dict(self) -> dict:
        """The :class:`ErrorOut` body of this error."""
        return {"code": self.code, "message": self.message, "fields": self.fields}


class NotFound(DomainError):
    """404 ``not_found``: no such object, or not visible to the caller (never tells which)."""

    status = 404

    def __init__(self, message: str = "Not found."):
        super().__init__("not_found", message)


class Forbidden(DomainError):
    """403 ``forbidden``: the caller is known but may not do this."""

    status = 403

    def __init__(self, message: str = "You may not do this."):
        super().__init__("forbidden", message)


#: The ``code`` of an error answered by status alone (no DomainError raised): unknown paths,
#: wrong methods, rate limits, server errors.
CODE_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    406: "not_acceptable",
    413: "request_too_large",
    415: "unsupported_media_type",
    416: "range_not_satisfiable",
    429: "rate_limited",
    500: "server_error",
}


def error_body(status: int, message: str = "") -> dict:
    """The :class:`ErrorOut` body for a bare HTTP ``status`` (see ``CODE_BY_STATUS``)."""
    code = CODE_BY_STATUS.get(status, "server_error" if status >= 500 else "bad_request")
    return {"code": code, "message": message or HTTPStatus(status).phrase + ".", "fields": {}}


class ApiJsonErrorsMiddleware:
    """Under ``/api/``, every error answer is an :class:`ErrorOut` JSON body.

    Django's own answers there (its HTML 404 for an unknown or trailing-slash path, the
    API's plain-text 405, a 500 from an unhandled exception) are replaced by the one error
    shape with the same status (``Allow``, ``Retry-After`` and ``Content-Range`` kept). JSON answers (the
    ninja handlers' ``ErrorOut``) and successful answers pass through untouched.
    """

    PREFIX = "/api/"

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        if not request.path.startswith(self.PREFIX) or response.status_code < 400:
            return response
        if response.get("Content-Type", "").startswith("application/json"):
            return response
        replacement = JsonResponse(error_body(response.status_code), status=response.status_code)
        for header in ("Allow", "Retry-After", "Content-Range"):
            if header in response:
                replacement[header] = response[header]
        return replacement

    def process_exception(self, request, exception):
        """An unhandled exception under ``/api/``: log it, answer 500 ``server_error``."""
        if not request.path.startswith(self.PREFIX):
            return None
        if isinstance(exception, Http404):
            return JsonResponse(error_body(404), status=404)
        log.exception("Unhandled error on %s %s", request.method, request.path)
        return JsonResponse(error_body(500, "An unexpected error occurred; it was logged."), status=500)


__all__ = ["ApiJsonErrorsMiddleware", "DomainError", "ErrorOut", "Forbidden", "NotFound", "error_body"]
