"""Writes about API tokens: issue and revoke (the studio's token page and ``/api/v1/tokens``)."""

from __future__ import annotations

from datetime import UTC, datetime

from django.utils import timezone

from accounts.models import ApiToken
from config.errors import DomainError, NotFound

#: Longest a token's name may be (the column's length).
TOKEN_NAME_MAX = 100


def api_token_create(*, user, name: str, scope: str = ApiToken.Scope.READ_WRITE, expires_at: datetime | None = None):
    """Issue a token for ``user``; returns ``(ApiToken, raw_secret)`` (the secret is shown once).

    ``expires_at``: an aware datetime in the future, or None for no expiry. Raises
    :class:`DomainError` ``validation_error`` (422) with ``fields`` for a blank or too long
    name, an unknown scope or an expiry in the past.
    """
    name = (name or "").strip()
    fields: dict[str, list[str]] = {}
    if not name:
        fields["name"] = ["Give the token a name (what script or integration uses it)."]
    elif len(name) > TOKEN_NAME_MAX:
        fields["name"] = [f"At most {TOKEN_NAME_MAX} characters."]
    if scope not in ApiToken.Scope.values:
        fields["scope"] = [f"One of: {', '.join(ApiToken.Scope.values)}."]
    if expires_at is not None:
        if timezone.is_naive(expires_at):
            expires_at = timezone.make_aware(expires_at, UTC)
        if expires_at <= timezone.now():
            fields["expires_at"] = ["The expiry must be in the future."]
    if fields:
        raise DomainError("validation_error", "The token cannot be created.", fields, status=422)
    return ApiToken.issue(user=user, name=name, scope=scope, expires_at=expires_at)


def api_token_revoke(*, user, token_id: int) -> ApiToken:
    """Revoke one of ``user``'s own tokens (idempotent: revoking twice keeps the first time).

    Raises :class:`NotFound` when ``token_id`` is not one of ``user``'s tokens (staff revoke
    anyone's in Django admin).
    """
    token = ApiToken.objects.filter(user=user, pk=token_id).first()
    if token is None:
        raise NotFound("No such token.")
    if token.revoked_at is None:
        ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
        token.refresh_from_db()
    return token
