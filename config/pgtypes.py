"""psycopg's C loader for ``timestamptz`` on every PostgreSQL connection (issue 16).

Django registers its own ``timestamptz`` loader on each connection
(``django.db.backends.postgresql.psycopg_any.BaseTzLoader``): a Python subclass of psycopg's
Python loader that parses the text and then replaces the zone with the connection's. Being a
subclass, psycopg cannot swap in its C loader for it, so every timestamp read through the ORM
or a hand-written statement was parsed in Python: ~9% of an authenticated
``GET /api/v1/generations/{id}`` in one process, and a third of an export's CPU before the COPY path.

When the session's ``TimeZone`` is UTC (Django sets it to ``connection.timezone_name``: "UTC"
whenever ``USE_TZ`` is on and the database has no ``TIME_ZONE`` of its own), psycopg's loader
already returns aware datetimes whose ``tzinfo`` is ``datetime.timezone.utc``
(``psycopg._tz.get_tzinfo``), the very object Django's ``replace`` would put there. So the
C loader gives the same values, ``tzinfo`` included, and this module registers it on the
connection's own adapters map (``connection_created``), leaving Django's loader wherever
the zone differs or no C implementation is installed.
"""

from __future__ import annotations

import datetime

#: The value Django's ``BaseTzLoader.timezone`` would have: checked by Django's
#: ``DatabaseWrapper.create_cursor``, which re-registers its own loader on a cursor whose
#: connection's loader disagrees.
UTC = datetime.UTC


def _c_loader():
    """psycopg's C ``TimestamptzLoader`` (``psycopg[binary]`` or ``psycopg[c]``), or None."""
    try:
        from psycopg._cmodule import _psycopg
    except ImportError:  # pragma: no cover - psycopg without its C module
        return None
    return getattr(_psycopg, "TimestamptzLoader", None)


class UtcTimestamptzLoader:
    """A loader class whose instances are psycopg's C ``TimestamptzLoader``.

    The C class cannot be subclassed (it is final), and Django's ``create_cursor`` reads a
    ``timezone`` attribute off the registered class: this class carries the attribute and
    builds the C loader. Shape: ``UtcTimestamptzLoader(oid, context)`` → a loader whose
    ``load(bytes)`` returns an aware ``datetime`` in UTC (``tzinfo is datetime.timezone.utc``).
    """

    timezone = UTC
    format = 0  # psycopg.pq.Format.TEXT: Django reads and writes timestamps as text
    c_loader = _c_loader()

    def __new__(cls, oid, context=None):
        return cls.c_loader(oid, context)


def use_c_timestamptz_loader(sender, connection, **kwargs) -> bool:
    """``connection_created`` receiver: register :class:`UtcTimestamptzLoader` for ``timestamptz``
    on a new PostgreSQL connection whose session zone is UTC. Returns whether it did.

    Left alone (Django's loader stays): another vendor, psycopg 2, no C module, ``USE_TZ`` off
    or a database ``TIME_ZONE`` other than UTC, or a session whose ``TimeZone`` parameter is
    not "UTC" (both must agree, or the values would differ from Django's).
    """
    from django.conf import settings

    if connection.vendor != "postgresql" or not settings.USE_TZ or connection.timezone is not UTC:
        return False
    raw = connection.connection
    adapters = getattr(raw, "adapters", None)
    if adapters is None or UtcTimestamptzLoader.c_loader is None:  # psycopg 2, or psycopg without its C module
        return False
    if raw.info.parameter_status("TimeZone") != "UTC":
        return False
    adapters.register_loader("timestamptz", UtcTimestamptzLoader)
    return True
