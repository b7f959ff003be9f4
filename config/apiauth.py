"""Bearer-token authentication for the API (``config.api``), apart from the API object so
that routers can give one operation its own :class:`TokenAuth` (a joined read) without
importing the API they are part of."""

from __future__ import annotations

from ninja.security import HttpBearer

from accounts.selectors import api_token_for
from config.errors import DomainError

#: Methods a read-scoped token may use.
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class TokenAuth(HttpBearer):
    """``Authorization: Bearer hs_...``: a token made on the studio's token page, at
    ``/api/v1/tokens`` or with ``manage.py create_api_token``.

    Sets ``request.auth`` (the user) and ``request.api_token``. Unknown, revoked or expired
    tokens: 401 ``unauthorized``; a read-scoped token on a write: 403 ``insufficient_scope``.
    """

    def __init__(self, joined=None):
        """``joined``: None, or a function of the request returning an
        ``accounts.selectors.JoinedRead`` (or None) that the token lookup runs in its own
        statement; its values land in ``request.api_token.joined`` (an operation's own hot read
        in the same round trip, issue 16)."""
        super().__init__()
        self.joined = joined

    def __call__(self, request):
        """ninja's ``HttpBearer.__call__``, reading the header from ``META``: ``request.headers``
        builds a dict of every header on first use, which only this read needed (issue 16)."""
        scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
        if scheme.lower() != self.openapi_scheme:
            return None
        return self.authenticate(request, token)

    def authenticate(self, request, token):
        row = api_token_for(raw_token=token, joined=self.joined(request) if self.joined else None)
        if row is None:
            return None
        request.api_token = row
        if request.method not in READ_METHODS and not row.can_write:
            raise DomainError(
                "insufficient_scope", "This token is read-only: make a read-and-write token to change anything.",
                status=403,
            )
        return row.user
