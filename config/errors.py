"""One domain error type and one error shape for the whole API.

Every refusal the app raises on purpose (a create request refused, bad report parameters,
a missing object, a forbidden page) is a :class:`DomainError`: a stable machine ``code``, a
human ``message``, ``fields`` mapping a field name to its messages, and the HTTP ``status``
it answers with. The ninja API has one exception handler for it (``config.api``) that writes
:class:`ErrorOut`; views and forms read the same attributes.
"""

from __future__ import annotations

from ninja import Field, Schema


class ErrorOut(Schema):
    """The API's one error body: ``{"code": str, "message": str, "fields": {name: [msg, ...]}}``."""

    code: str = Field(description="Stable error code, e.g. validation_error, budget_exceeded, forbidden, not_found")
    message: str
    fields: dict[str, list[str]] = Field(default_factory=dict)


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


__all__ = ["DomainError", "ErrorOut", "Forbidden", "NotFound"]
