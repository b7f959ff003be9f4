"""The reports' one error: bad parameters (a :class:`config.errors.DomainError`, answered 422)."""

from __future__ import annotations

from config.errors import DomainError


class ReportParamError(DomainError):
    """Bad report parameters: 422 ``invalid_request``; ``fields`` maps a parameter name to its messages."""

    status = 422

    def __init__(self, fields: dict[str, list[str]]):
        super().__init__("invalid_request", "The report parameters are invalid.", fields)

    def __str__(self) -> str:
        return "; ".join(f"{k}: {' '.join(v)}" for k, v in self.fields.items())

