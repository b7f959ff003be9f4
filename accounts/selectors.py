"""Reads about users, teams and tokens."""

from django.utils import timezone

from accounts.models import ApiToken, hash_token


def user_for_api_token(*, raw_token: str):
    """Return the active user owning ``raw_token``, or None (unknown, revoked or inactive)."""
    if not raw_token:
        return None
    token = (
        ApiToken.objects.select_related("user")
        .filter(token_hash=hash_token(raw_token), revoked_at__isnull=True, user__is_active=True)
        .first()
    )
    if token is None:
        return None
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now())
    return token.user
