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
from functools import cache

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.db.models.base import ModelState

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

    db = connections[DEFAULT_DB_ALIAS]  # once: each ``connection.x`` is a thread-local lookup
    db.validate_thread_sharing()
    db.ensure_connection()
    raw = db.connection
    if raw.prepare_threshold != PREPARE_AFTER and getattr(settings, "HAILUO_DB_PREPARE", True):
        raw.prepare_threshold = PREPARE_AFTER  # Django opens connections with preparing off
    if db.queries_logged:
        if _DEBUG_WRAPPER is None:
            _DEBUG_WRAPPER = _debug_wrapper_class()
        cursor = _DEBUG_WRAPPER(ServerBindingCursor(raw), db)
    else:
        cursor = db.make_cursor(ServerBindingCursor(raw))
    try:
        yield cursor
    finally:
        cursor.close()


# --- rows: insert one, load one ------------------------------------------------------------
@cache
def _insert_plan(model) -> tuple[tuple, object, tuple]:
    """(the fields an INSERT writes in order, the auto primary key it returns or None, the
    fields' ``pre_save``: a plain attribute read for most)."""
    from django.db.models import AutoField, BigAutoField, Field, SmallAutoField

    meta = model._meta
    pk = meta.pk
    auto_pk = pk if isinstance(pk, AutoField | BigAutoField | SmallAutoField) else None
    fields = tuple(f for f in meta.local_concrete_fields if f is not auto_pk)
    plain = Field.pre_save
    readers = tuple(
        (lambda instance, attname=f.attname: getattr(instance, attname)) if type(f).pre_save is plain
        else (lambda instance, f=f: f.pre_save(instance, True))
        for f in fields
    )
    return fields, auto_pk, readers


@cache
def _insert_sql(model, nulls: tuple[bool, ...]) -> str:
    """The INSERT for ``model`` with a ``NULL`` literal where ``nulls`` is true and a placeholder
    elsewhere: a row's NULL columns cost no parameter (psycopg caches the parsing of statements
    of at most 50 parameters, and a generation has 56 columns, most of them empty at creation).
    One text per pattern of empty columns: a hot INSERT's pattern does not vary."""
    fields, auto_pk, _ = _insert_plan(model)
    quote = connection.ops.quote_name
    sql = (
        f"INSERT INTO {quote(model._meta.db_table)} ({', '.join(quote(f.column) for f in fields)}) "
        f"VALUES ({', '.join('NULL' if null else '%s' for null in nulls)})"
    )
    if auto_pk is not None:
        sql += f" RETURNING {quote(auto_pk.column)}"
    return sql


def create(model_class, /, **values):
    """``model_class.objects.create(**values)`` as one prepared INSERT (PostgreSQL; the ORM's create
    elsewhere). Field defaults, ``pre_save`` (``auto_now_add`` …) and the database preparation
    of each value are Django's; ``pre_save``/``post_save`` signals are sent as ``save()`` sends
    them, so receivers see no difference. Returns the saved instance (its auto primary key set).
    Not for models with multi-table inheritance or database defaults (``db_default``)."""
    if not available():
        return model_class.objects.create(**values)
    from django.db.models import signals

    instance = model_class(**values)
    origin = model_class._meta.concrete_model
    if signals.pre_save.has_listeners(origin):
        signals.pre_save.send(sender=origin, instance=instance, raw=False, using="default", update_fields=None)
    fields, auto_pk, readers = _insert_plan(origin)
    db = connections[DEFAULT_DB_ALIAS]  # not the ``connection`` proxy: each field's preparation reads ``.ops``
    prepared = [f.get_db_prep_save(read(instance), db) for f, read in zip(fields, readers, strict=True)]
    nulls = tuple(v is None for v in prepared)
    params = [v for v in prepared if v is not None]
    with hot_cursor() as cursor:
        cursor.execute(_insert_sql(origin, nulls), params)
        if auto_pk is not None:
            setattr(instance, auto_pk.attname, cursor.fetchone()[0])
    instance._state.adding = False
    instance._state.db = "default"
    if signals.post_save.has_listeners(origin):
        signals.post_save.send(sender=origin, instance=instance, created=True, update_fields=None, raw=False, using="default")
    return instance


@cache
def _converters(model, attnames: tuple[str, ...]) -> tuple:
    fields = {f.attname: f for f in model._meta.concrete_fields}
    return tuple(
        (i, fields[name]) for i, name in enumerate(attnames) if hasattr(fields[name], "from_db_value")
    )


def instance(model, attnames, values):
    """``model.from_db("default", attnames, values)``, without running ``Model.__init__`` when
    no ``pre_init``/``post_init`` receiver listens for ``model`` (issue 16: four instances per
    authenticated read cost about a tenth of its CPU). The instance is the one ``from_db``
    makes: each value in its attribute, the fields not in ``attnames`` deferred (read on first
    access), ``_state`` saying "in the database". Values are taken as given: see :func:`load`
    for the fields' ``from_db_value``."""
    from django.db.models import signals

    if signals.pre_init.has_listeners(model) or signals.post_init.has_listeners(model):
        return model.from_db("default", attnames, values)
    obj = model.__new__(model)
    state = obj._state = ModelState()
    state.adding = False
    state.db = "default"
    obj.__dict__.update(zip(attnames, values, strict=True))
    return obj


def load(model, attnames: tuple[str, ...], values):
    """A ``model`` instance from a hand-written row: ``values`` in the order of ``attnames``
    (which follow the model's field order, as ``Model.from_db`` wants), each passed through its
    field's ``from_db_value`` (JSON fields arrive as text from Django's psycopg setup) as the
    ORM would. Fields not in ``attnames`` are deferred."""
    values = list(values)
    db = connections[DEFAULT_DB_ALIAS]
    for i, field in _converters(model, attnames):
        values[i] = field.from_db_value(values[i], None, db)
    return instance(model, attnames, values)


def columns(model, alias: str, *, only: tuple[str, ...] | None = None) -> tuple[str, tuple[str, ...]]:
    """``("alias.col1, alias.col2, …", attnames)`` for ``model``'s concrete fields (or ``only``
    those attnames), in the model's field order: the select list for :func:`load`."""
    fields = [f for f in model._meta.concrete_fields if only is None or f.attname in only]
    return ", ".join(f"{alias}.{connection.ops.quote_name(f.column)}" for f in fields), tuple(f.attname for f in fields)
