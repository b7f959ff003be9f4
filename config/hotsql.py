"""Hand-written statements on the hot paths, bound server-side and prepared (PostgreSQL).

The ORM costs more Python than the database spends on a small query (issue 16: an authenticated
``GET /api/v1/generations/{id}`` spent ~8 ms compiling and instantiating against ~1 ms of
database time), and PostgreSQL spends ~0.5 ms planning each of them. The few statements every
API request or submit runs are therefore written by hand and run through :func:`hot_cursor`:
psycopg binds the parameters server-side and, after :data:`PREPARE_AFTER` uses on a
connection, prepares the statement, so later runs skip parsing and planning. Django keeps
persistent connections (``DB_CONN_MAX_AGE``), so a gunicorn thread reuses its prepared
statements from request to request.

The cursor is Django's wrapper around psycopg's: errors become Django's (``IntegrityError``
…), ``connection.execute_wrapper`` hooks run and test query counting
(``CaptureQueriesContext``) sees every statement. ``DB_PREPARED_STATEMENTS=0`` turns
preparing off (server-side binding stays) for a pooler that cannot keep prepared statements.
"""

from __future__ import annotations

from contextlib import contextmanager

from django.conf import settings
from django.db import connection

#: Uses of one statement on one connection before psycopg prepares it (psycopg's own default).
PREPARE_AFTER = 5


def available() -> bool:
    """Whether the hot statements can run here: PostgreSQL through psycopg 3."""
    if connection.vendor != "postgresql":
        return False
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    return is_psycopg3


def _debug_wrapper_class():
    from django.db.backends.postgresql.base import CursorDebugWrapper
    from django.db.backends.utils import CursorWrapper

    class HotDebugWrapper(CursorDebugWrapper):
        """Django's debug wrapper (``connection.queries``, ``CaptureQueriesContext``), logging the
        statement as written: Django's ``last_executed_query`` reads a text that psycopg does not
        keep for a prepared execution."""

        def execute(self, sql, params=None):
            with self.debug_sql(sql, params):
                return CursorWrapper.execute(self, sql, params)

    return HotDebugWrapper


_DEBUG_WRAPPER = None


@contextmanager
def hot_cursor():
    """A Django cursor (``execute``/``fetchone``/``fetchall``) whose statements are bound
    server-side and prepared after a few uses. PostgreSQL only (:func:`available`): the
    callers keep an ORM path for SQLite. Placeholders are ``%s``; lists bind as arrays."""
    global _DEBUG_WRAPPER
    from django.db.backends.postgresql.base import ServerBindingCursor

    connection.validate_thread_sharing()
    connection.ensure_connection()
    raw = connection.connection
    if raw.prepare_threshold != PREPARE_AFTER and getattr(settings, "HAILUO_DB_PREPARE", True):
        raw.prepare_threshold = PREPARE_AFTER  # Django opens connections with preparing off
    if connection.queries_logged:
        if _DEBUG_WRAPPER is None:
            _DEBUG_WRAPPER = _debug_wrapper_class()
        cursor = _DEBUG_WRAPPER(ServerBindingCursor(raw), connection)
    else:
        cursor = connection.make_cursor(ServerBindingCursor(raw))
    try:
        yield cursor
    finally:
        cursor.close()
