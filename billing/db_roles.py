"""The PostgreSQL roles: the tables' owner runs migrations, the app runs as a role that owns nothing.

Why: the ledger's triggers (billing/migrations 0003 and 0007) refuse UPDATE, DELETE and
TRUNCATE, but the owner of a table may disable or drop its triggers, and may TRUNCATE it. So
the web server and the workers connect (``DATABASE_URL``) as an *app role* that owns no
table and is granted exactly:

- ``CONNECT`` on the database, ``USAGE`` on the schema;
- ``SELECT, INSERT, UPDATE, DELETE`` on every table (Django's, allauth's, django-q2's, ours),
  except the ledger (``billing_ledgerentry``: ``SELECT, INSERT`` only), the budget running
  totals (``billing_budgetusage``: ``SELECT, INSERT, UPDATE``, kept by the ledger's trigger) and
  ``django_migrations`` (``SELECT`` only: only ``migrate`` records migrations);
- ``USAGE`` on every sequence (identity columns);
- the same by default on tables and sequences the owner creates later (``ALTER DEFAULT
  PRIVILEGES``), so a later migration's new table works at once; ``migrate`` re-applies the
  whole set after migrating anyway (``billing/management/commands/migrate.py``).

No TRUNCATE, REFERENCES or TRIGGER anywhere; not being the owner, the role can neither ALTER,
DROP nor DISABLE TRIGGER. ``manage.py migrate`` and ``manage.py create_app_role`` connect as
the owner given by ``DATABASE_MIGRATE_URL`` (settings ``DATABASE_MIGRATE``) instead of
``DATABASE_URL``'s user. PostgreSQL only: SQLite has no roles.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper

#: The append-only ledger's table (billing.LedgerEntry).
LEDGER_TABLE = "billing_ledgerentry"
#: Its statement-level trigger refusing TRUNCATE (migration 0007).
TRUNCATE_TRIGGER = "billing_ledger_no_truncate"
#: Tables the app role may read but never write, with the privileges it gets on them.
RESTRICTED_TABLES = {
    LEDGER_TABLE: "SELECT, INSERT",
    "django_migrations": "SELECT",
    # The running totals (billing.usage): the ledger trigger upserts them; never deleted.
    "billing_budgetusage": "SELECT, INSERT, UPDATE",
}
#: Privileges on every other table.
TABLE_PRIVILEGES = "SELECT, INSERT, UPDATE, DELETE"


def _require_postgres(connection: BaseDatabaseWrapper) -> None:
    if connection.vendor != "postgresql":
        raise ImproperlyConfigured("database roles are a PostgreSQL feature; this database is " + connection.vendor)


def role_exists(connection: BaseDatabaseWrapper, role: str) -> bool:
    """Whether a PostgreSQL role named ``role`` exists in the cluster."""
    _require_postgres(connection)
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
        return cursor.fetchone() is not None


def create_role(connection: BaseDatabaseWrapper, role: str, password: str | None) -> bool:
    """Create login role ``role`` (no superuser, createdb, createrole, replication or bypassrls)
    unless it exists; set its password when one is given. Returns True if it was created.

    Needs CREATEROLE (or a superuser) for the connecting role when the role is new, or to
    change the password of a role the connecting role does not administer.
    """
    _require_postgres(connection)
    name = connection.ops.quote_name(role)
    created = not role_exists(connection, role)
    with connection.cursor() as cursor:
        if created:
            cursor.execute(f"CREATE ROLE {name} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS")
        if password is not None:
            # Client-side binding (Django's psycopg default): the password is sent as a literal.
            cursor.execute(f"ALTER ROLE {name} PASSWORD %s", [password])
    return created


def _check_role(cursor, role: str) -> None:
    """Refuse a role that could undo the ledger's protection: the current user, a superuser, a
    role able to create roles (it could grant itself the owner's role), or a member of the
    ledger's owner role."""
    cursor.execute(
        "SELECT rolsuper, rolcreaterole, rolname = current_user, "
        "pg_has_role(rolname, (SELECT relowner FROM pg_class WHERE oid = %s::regclass), 'MEMBER') "
        "FROM pg_roles WHERE rolname = %s",
        [LEDGER_TABLE, role],
    )
    row = cursor.fetchone()
    if row is None:
        raise ImproperlyConfigured(f"role {role!r} does not exist: create it with `manage.py create_app_role {role}`")
    superuser, createrole, is_current, owner_member = row
    if superuser:
        raise ImproperlyConfigured(f"role {role!r} is a superuser: the app role must not be")
    if is_current or owner_member:
        raise ImproperlyConfigured(f"role {role!r} owns the tables (or is a member of their owner): the app role must not")
    if createrole:
        raise ImproperlyConfigured(f"role {role!r} may create roles (and grant itself the owner's): the app role must not")


def grant_app_role(connection: BaseDatabaseWrapper, role: str) -> None:
    """(Re)set the app role's privileges to exactly the set in this module's docstring, in one
    transaction (a running app never sees a half-granted state). Run as the tables' owner.

    Raises ImproperlyConfigured when ``role`` does not exist, is the connecting role, a
    superuser, may create roles, or is a member of the owner; on a database that is not
    PostgreSQL; and psycopg's errors when the connecting role does not own the tables.
    """
    _require_postgres(connection)
    q = connection.ops.quote_name
    name = q(role)
    with transaction.atomic(using=connection.alias), connection.cursor() as cursor:
        _check_role(cursor, role)
        cursor.execute("SELECT current_database(), current_schema()")
        database, schema = cursor.fetchone()
        database, schema = q(database), q(schema)
        cursor.execute(f"GRANT CONNECT ON DATABASE {database} TO {name}")
        cursor.execute(f"GRANT USAGE ON SCHEMA {schema} TO {name}")
        cursor.execute(f"REVOKE ALL ON ALL TABLES IN SCHEMA {schema} FROM {name}")
        cursor.execute(f"GRANT {TABLE_PRIVILEGES} ON ALL TABLES IN SCHEMA {schema} TO {name}")
        for table, privileges in RESTRICTED_TABLES.items():
            cursor.execute("SELECT to_regclass(%s)", [table])
            if cursor.fetchone()[0] is not None:
                cursor.execute(f"REVOKE ALL ON {q(table)} FROM {name}")
                cursor.execute(f"GRANT {privileges} ON {q(table)} TO {name}")
        cursor.execute(f"REVOKE ALL ON ALL SEQUENCES IN SCHEMA {schema} FROM {name}")
        cursor.execute(f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {schema} TO {name}")
        cursor.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE ALL ON TABLES FROM {name}")
        cursor.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT {TABLE_PRIVILEGES} ON TABLES TO {name}")
        cursor.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} REVOKE ALL ON SEQUENCES FROM {name}")
        cursor.execute(f"ALTER DEFAULT PRIVILEGES IN SCHEMA {schema} GRANT USAGE ON SEQUENCES TO {name}")


def switch_credentials(alias: str, user: str, password: str) -> None:
    """Make connection ``alias`` log in as ``user`` from its next query on (closes it now).

    The settings dict is shared by every thread's connection of that alias, so the change
    applies process-wide.
    """
    connection = connections[alias]
    connection.close()
    connection.settings_dict.update(USER=user, PASSWORD=password)


@contextlib.contextmanager
def as_owner(alias: str = DEFAULT_DB_ALIAS) -> Iterator[str | None]:
    """Within the block, connection ``alias`` logs in as the owner (``DATABASE_MIGRATE_URL``).

    Yields the app role's name (``DATABASE_URL``'s user) when the credentials were switched,
    None when there was nothing to switch: no ``DATABASE_MIGRATE_URL``, not PostgreSQL, an
    alias other than the default, or already connected as the owner. Raises
    ImproperlyConfigured when the two URLs name different servers or databases.
    """
    owner = settings.DATABASE_MIGRATE
    connection = connections[alias]
    current = connection.settings_dict
    if not owner or alias != DEFAULT_DB_ALIAS or connection.vendor != "postgresql" or owner["USER"] == current["USER"]:
        yield None
        return
    for key in ("HOST", "PORT", "NAME"):
        if str(owner.get(key) or "") != str(current.get(key) or ""):
            raise ImproperlyConfigured(f"DATABASE_MIGRATE_URL and DATABASE_URL must name the same {key.lower()}")
    app_user, app_password = current["USER"], current.get("PASSWORD") or ""
    switch_credentials(alias, owner["USER"], owner.get("PASSWORD") or "")
    try:
        yield app_user
    finally:
        switch_credentials(alias, app_user, app_password)
