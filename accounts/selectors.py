"""Reads about users, teams and tokens."""

from django.db.models import OuterRef, Q, Subquery
from django.utils import timezone

from accounts.models import ApiToken, Membership, Team, hash_token
from billing.config_cache import note_version
from billing.models import ConfigVersion


def api_token_for(*, raw_token: str) -> ApiToken | None:
    """The active :class:`ApiToken` for ``raw_token`` (its ``user`` loaded), or None when it is
    unknown, revoked, expired or its user inactive.

    Records the use in ``last_used_at`` at most once per ``ApiToken.TOUCH_EVERY``: when the
    stored time is older, one conditional UPDATE (so concurrent requests write it once);
    otherwise no write at all. The same query reads the user's primary team (kept on the
    user instance) and the provider/price cache counter (``billing.config_cache``).
    """
    if not raw_token or len(raw_token) > 200:
        return None
    now = timezone.now()
    first = Membership.objects.filter(user_id=OuterRef("user_id")).order_by("id")[:1]
    token = (
        ApiToken.objects.select_related("user")
        .filter(token_hash=hash_token(raw_token), revoked_at__isnull=True, user__is_active=True)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .annotate(
            primary_team_id=Subquery(first.values("team_id")),
            primary_team_name=Subquery(first.values("team__name")),
            primary_team_zone=Subquery(first.values("team__time_zone")),
            config_version=Subquery(ConfigVersion.objects.filter(pk=1).values("n")[:1]),
        )
        .first()
    )
    if token is None:
        return None
    # Read in the same query: the user's primary team (no second read this request) and the
    # provider/price cache's counter (billing.config_cache).
    team = None
    if token.primary_team_id is not None:
        team = Team(pk=token.primary_team_id, name=token.primary_team_name, time_zone=token.primary_team_zone)
        team._state.adding = False
    token.user.note_primary_team(team)
    note_version(token.config_version)
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
