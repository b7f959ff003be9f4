"""Reads about users, teams and tokens."""

from dataclasses import dataclass
from functools import lru_cache

from django.db import connection
from django.db.models import Q
from django.utils import timezone

from accounts.models import ApiToken, Team, hash_token
from billing.config_cache import note_version


@dataclass(frozen=True)
class JoinedRead:
    """A read that rides on the token lookup's statement (one round trip instead of two: the
    API's hot read of one generation, issue 16).

    ``select``: its select list (expressions over the alias ``j``); ``lateral``: the body of a
    ``LEFT JOIN LATERAL (…) j ON TRUE``, which may use the token's user as ``t.user_id`` and that
    user's team ids as ``tm.team_ids``; ``params``: the lateral's parameters. The values come
    back, in ``select``'s order, as ``token.joined`` (all NULL when the lateral finds no row).
    """

    select: str
    lateral: str
    params: tuple = ()
    key: object = None  #: what the read is for, kept as ``token.joined_key``


@lru_cache(maxsize=8)
def _token_sql(select: str = "", lateral: str = "") -> tuple[str, list[str], list[str]]:
    """The token lookup as one hand-written statement (built once per process from the models'
    columns: the ORM spent ~10x the database's time compiling the annotated query), with a
    :class:`JoinedRead`'s select list and lateral join when given."""
    from accounts.models import User

    token_fields = [f.attname for f in ApiToken._meta.concrete_fields]
    user_fields = [f.attname for f in User._meta.concrete_fields]
    cols = [f"t.{f.column}" for f in ApiToken._meta.concrete_fields]
    cols += [f"u.{f.column}" for f in User._meta.concrete_fields]
    sql = (
        f"SELECT {', '.join(cols)}, tm.team_ids, "
        "(SELECT pt.name FROM accounts_membership pm JOIN accounts_team pt ON pt.id = pm.team_id "
        " WHERE pm.user_id = t.user_id ORDER BY pm.id LIMIT 1), "
        "(SELECT pt.time_zone FROM accounts_membership pm JOIN accounts_team pt ON pt.id = pm.team_id "
        " WHERE pm.user_id = t.user_id ORDER BY pm.id LIMIT 1), "
        f"(SELECT v.n FROM billing_configversion v WHERE v.id = 1){', ' + select if select else ''} "
        f"FROM {ApiToken._meta.db_table} t JOIN {User._meta.db_table} u ON u.id = t.user_id "
        "CROSS JOIN LATERAL (SELECT ARRAY(SELECT m.team_id FROM accounts_membership m "
        " WHERE m.user_id = t.user_id ORDER BY m.id) AS team_ids) tm "
        f"{f'LEFT JOIN LATERAL ({lateral}) j ON TRUE ' if lateral else ''}"
        "WHERE t.token_hash = %s AND t.revoked_at IS NULL AND u.is_active AND (t.expires_at IS NULL OR t.expires_at > %s) "
        "ORDER BY t.created_at DESC, t.id DESC LIMIT 1"
    )
    return sql, token_fields, user_fields


def api_token_for(*, raw_token: str, joined: JoinedRead | None = None) -> ApiToken | None:
    """The active :class:`ApiToken` for ``raw_token`` (its ``user`` loaded), or None when it is
    unknown, revoked, expired or its user inactive.

    Records the use in ``last_used_at`` at most once per ``ApiToken.TOUCH_EVERY``: when the
    stored time is older, one conditional UPDATE (so concurrent requests write it once);
    otherwise no write at all. The same query reads the user's teams and primary team (kept
    on the user instance for this request) and the provider/price cache counter
    (``billing.config_cache``). On PostgreSQL it is one hand-written statement, which also
    runs ``joined`` (its values in ``token.joined``); elsewhere ``token.joined`` is None and
    the caller reads on its own (``token.joined_key`` is ``joined.key`` either way).
    """
    if not raw_token or len(raw_token) > 200:
        return None
    now = timezone.now()
    if connection.vendor == "postgresql":
        token = _token_row(raw_token, now, joined)
    else:
        token = (
            ApiToken.objects.select_related("user")
            .filter(token_hash=hash_token(raw_token), revoked_at__isnull=True, user__is_active=True)
            .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
            .first()
        )
        if token is not None:
            token.joined = None
    if token is None:
        return None
    token.joined_key = joined.key if joined else None
    stale = now - ApiToken.TOUCH_EVERY
    if token.last_used_at is None or token.last_used_at < stale:
        ApiToken.objects.filter(pk=token.pk).filter(Q(last_used_at__isnull=True) | Q(last_used_at__lt=stale)).update(
            last_used_at=now
        )
        token.last_used_at = now
    return token


def _token_row(raw_token: str, now, joined: JoinedRead | None) -> ApiToken | None:
    from accounts.models import User
    from config.hotsql import hot_cursor, instance

    sql, token_fields, user_fields = _token_sql(joined.select, joined.lateral) if joined else _token_sql()
    with hot_cursor() as cursor:  # prepared after a few uses: no planning per request
        cursor.execute(sql, [*(joined.params if joined else ()), hash_token(raw_token), now])
        row = cursor.fetchone()
    if row is None:
        return None
    n_token, n_user = len(token_fields), len(user_fields)
    token = instance(ApiToken, token_fields, row[:n_token])
    user = instance(User, user_fields, row[n_token:n_token + n_user])
    token.user = user
    team_ids, team_name, team_zone, version = row[n_token + n_user:n_token + n_user + 4]
    token.joined = row[n_token + n_user + 4:] if joined else None
    team = None
    if team_ids:
        team = instance(Team, ("id", "name", "time_zone"), (team_ids[0], team_name, team_zone))
    # Read in the same statement: the user's teams and primary team (no second read this
    # request) and the provider/price cache's counter (billing.config_cache).
    user.note_primary_team(team)
    user.note_team_ids(list(team_ids or []))
    note_version(version)
    return token


def user_for_api_token(*, raw_token: str):
    """Return the active user owning ``raw_token``, or None (unknown, revoked, expired or inactive)."""
    token = api_token_for(raw_token=raw_token)
    return token.user if token else None


def api_tokens_of(*, user):
    """``user``'s tokens, newest first, revoked ones included (the token page shows them struck out)."""
    return ApiToken.objects.filter(user=user).order_by("-created_at", "-id")
