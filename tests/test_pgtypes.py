"""psycopg's C ``timestamptz`` loader in place of Django's Python one (``config/pgtypes.py``, issue 16).

The values must be exactly Django's: same instant, same ``tzinfo`` object
(``datetime.timezone.utc``), microseconds kept, any session-independent literal zone folded
to UTC.
"""

from __future__ import annotations

import datetime

import pytest
from django.db import connection
from django.db.backends.postgresql.psycopg_any import register_tzloader

from config.pgtypes import UtcTimestamptzLoader, use_c_timestamptz_loader

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

LITERALS = [
    "2026-01-02 03:04:05.123456+05",
    "2026-12-31 23:59:59.999999-11:30",
    "1999-03-28 01:30:00+00",
    "2024-02-29 12:00:00+14",
    "0001-01-01 00:00:00+00",
    "2026-06-01 00:00:00.5+02",
]


def _read(cursor, literals):
    cursor.execute("SELECT " + ", ".join("%s::timestamptz" for _ in literals), literals)
    return cursor.fetchone()


def test_every_new_connection_uses_the_c_loader_for_timestamptz():
    connection.ensure_connection()
    loader = connection.connection.adapters.get_loader(1184, 0)  # timestamptz, text
    assert loader is UtcTimestamptzLoader
    with connection.cursor() as cursor:
        cursor.execute("SELECT now()")
        cursor.fetchone()
        built = cursor.cursor._tx.get_loader(1184, 0)
    assert type(built).__module__.startswith("psycopg_"), type(built)  # the C class, not a Python one


def test_the_c_loader_reads_exactly_what_djangos_loader_reads():
    with connection.cursor() as ours:
        fast = _read(ours, LITERALS)
    with connection.cursor() as theirs:
        register_tzloader(connection.timezone, theirs.cursor)  # Django's own loader, on this cursor only
        slow = _read(theirs, LITERALS)
    assert fast == slow
    for a, b in zip(fast, slow, strict=True):
        assert a.tzinfo is datetime.UTC and b.tzinfo is datetime.UTC
        assert (a.year, a.microsecond, a.utcoffset()) == (b.year, b.microsecond, b.utcoffset())
    assert fast[0] == datetime.datetime(2026, 1, 1, 22, 4, 5, 123456, tzinfo=datetime.UTC)


def test_a_model_field_reads_back_aware_in_utc(member):
    from accounts.models import User

    joined = User.objects.values_list("date_joined", flat=True).get(pk=member.pk)
    assert joined.tzinfo is datetime.UTC and joined == member.date_joined


def test_a_session_in_another_zone_keeps_djangos_loader():
    """Both the setting and the session must say UTC: otherwise the values would differ."""
    connection.ensure_connection()
    raw = connection.connection
    with connection.cursor() as cursor:
        cursor.execute("SET TIME ZONE 'Asia/Kolkata'")
    try:
        raw.adapters.register_loader("timestamptz", _djangos_loader())
        assert use_c_timestamptz_loader(sender=None, connection=connection) is False
        assert raw.adapters.get_loader(1184, 0) is not UtcTimestamptzLoader
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SET TIME ZONE 'UTC'")
        assert use_c_timestamptz_loader(sender=None, connection=connection) is True


def _djangos_loader():
    from django.db.backends.postgresql.psycopg_any import get_adapters_template

    return get_adapters_template(True, connection.timezone).get_loader(1184, 0)
