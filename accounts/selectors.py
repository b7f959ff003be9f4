"""Reads about users, teams and tokens."""

from django.db.models import Q
from django.utils import timezone

from accounts.models import ApiToken, hash_token


def api_token_for(*, raw_token: str) -> ApiToken | None:
    """The active :class:`ApiToken` for ``raw_token`` (its ``user`` loaded), or None when it is
    unknown, revoked, expired or its user inactive.

    Records the use in ``last_used_at`` at most once per ``ApiToken.TOUCH_EVERY``: when the
    stored time is older, one conditional UPDATE (so concurrent requests write it once);
    otherwise no write at all.
    """
    if not raw_token or len(raw_token) > 200:
        return None
    now = timezone.now()
    token = (
        ApiToken.objects.select_related("user")
        .filter(token_hash=hash_token(raw_token), revoked_at__isnull=True, user__is_active=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .first()
    )
    if token is None:
        return None
    stale = now - ApiToken.TOUCH_EVERY
    if token.last_used_at is None or token.last_used_at < stale:
        ApiToken.objects.filter(pk=token.pk).filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale)).update(
            last_used_at=now
        )
        token.last_used_at = now
    return token


def user_for_api_token(*, raw_token: str):
    """Return the active user owning ``raw_token``, or None (unknown, revoked, expired or inactive)."""
    token = api_token_for(raw_token=raw_token)
    return token.user if token else None


def api_tokens_of(*, user):
    """``user``'s tokens, newest first, revoked ones included (the token page shows them struck out)."""
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-id")
