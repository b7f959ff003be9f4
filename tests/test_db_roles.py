"""Ledger integrity at the database (issue 11, hole 4): the app's PostgreSQL role cannot rewrite,
empty or unprotect the ledger, and TRUNCATE is refused even to the tables' owner.

The suite runs as the app role (tests/pg_roles.py); these tests check that it really does,
what that role can and cannot do, and that ``create_app_role`` and ``migrate`` grant exactly that.
"""

from __future__ import annotations

import io
from decimal import Decimal

import psycopg
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction

from billing import db_roles
from billing.models import LedgerEntry

from .pg_roles import ROLES, owner_connect

# Transactional tests here use serialized_rollback, like every other one in the suite: a plain
# transactional flush re-creates content types, which the next serialized restore would duplicate.
pytestmark = [pytest.mark.postgres]

LEDGER = db_roles.LEDGER_TABLE


@pytest.fixture
def roles():
    """The (app, owner) role names; fails unless the session runs as a separate app role."""
    assert ROLES, "the test database must be set up by an owner other than the app role (DATABASE_MIGRATE_URL)"
    return ROLES["app"][0], ROLES["owner"][0]


def refused(sql: str, params=None) -> str:
    """Run ``sql`` as the app role in a savepoint; return the database's error message (fails if it succeeded)."""
    with pytest.raises(DatabaseError) as info, transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, params)
    return str(info.value)


def owner_refused(conn: psycopg.Connection, sql: str) -> str:
    with pytest.raises(psycopg.Error) as info, conn.transaction():
        conn.execute(sql)
    return str(info.value)


def scalar(sql: str, params=None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


@pytest.mark.django_db
def test_the_app_role_can_append_and_read_the_ledger_and_nothing_more(roles, member):
    app, owner = roles
    assert scalar("SELECT current_user") == app != owner
    assert not scalar("SELECT rolsuper OR rolcreaterole OR rolcreatedb FROM pg_roles WHERE rolname = current_user")

    entry = LedgerEntry.objects.create(kind="credit", amount=Decimal("1.50"), user=member, reason="welcome")
    assert LedgerEntry.objects.get(pk=entry.pk).amount == Decimal("1.500000")

    assert "permission denied" in refused(f"UPDATE {LEDGER} SET amount = 0 WHERE id = %s", [entry.pk])
    assert "permission denied" in refused(f"DELETE FROM {LEDGER} WHERE id = %s", [entry.pk])
    assert "permission denied" in refused(f"TRUNCATE {LEDGER}")
    assert "permission denied" in refused(f"TRUNCATE {LEDGER} CASCADE")
    assert "permission denied" in refused("TRUNCATE billing_balancesnapshot, " + LEDGER)
    for ddl in (
        f"ALTER TABLE {LEDGER} DISABLE TRIGGER billing_ledger_append_only",
        f"ALTER TABLE {LEDGER} DISABLE TRIGGER {db_roles.TRUNCATE_TRIGGER}",
        f"ALTER TABLE {LEDGER} DISABLE TRIGGER ALL",
        f"ALTER TABLE {LEDGER} ADD COLUMN note text",
        f"ALTER TABLE {LEDGER} OWNER TO {app}",
        f"DROP TRIGGER billing_ledger_append_only ON {LEDGER}",
        f"DROP TABLE {LEDGER}",
        f"DROP TABLE {LEDGER} CASCADE",
    ):
        assert "must be owner" in refused(ddl), ddl
    # The replica mode that skips triggers, and rewriting the trigger's function, are the owner's/superuser's.
    assert "permission denied" in refused("SET session_replication_role = replica")
    message = refused(
        "CREATE OR REPLACE FUNCTION billing_ledger_append_only() RETURNS trigger AS $$ BEGIN RETURN OLD; END $$ LANGUAGE plpgsql"
    )
    assert "must be owner" in message or "permission denied for schema" in message
    # Granting itself more is a no-op for a role without the grant option.
    with connection.cursor() as cursor:
        cursor.execute(f"GRANT UPDATE, DELETE, TRUNCATE ON {LEDGER} TO {app}")
    assert not scalar(f"SELECT has_table_privilege(current_user, '{LEDGER}', 'UPDATE, DELETE, TRUNCATE')")

    # The row is still there, unchanged, and the ORM's own guards agree.
    assert LedgerEntry.objects.get(pk=entry.pk).amount == Decimal("1.500000")
    with pytest.raises(PermissionError):
        entry.delete()


@pytest.mark.django_db
def test_the_app_role_owns_nothing_and_can_truncate_nothing_but_writes_every_other_table(roles):
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT relname, relowner::regrole::text, has_table_privilege(oid, 'SELECT'), has_table_privilege(oid, 'INSERT'),"
            " has_table_privilege(oid, 'UPDATE'), has_table_privilege(oid, 'DELETE'), has_table_privilege(oid, 'TRUNCATE'),"
            " has_table_privilege(oid, 'TRIGGER'), has_table_privilege(oid, 'REFERENCES')"
            " FROM pg_class WHERE relkind = 'r' AND relnamespace = current_schema()::regnamespace"
        )
        tables = {row[0]: row[1:] for row in cursor.fetchall()}
    app, owner = roles
    # Django's, allauth's and django-q2's tables are there, with ours.
    for table in ("auth_permission", "django_session", "django_content_type", "account_emailaddress",
                  "django_q_ormq", "django_q_task", "django_q_schedule", "generations_generation", LEDGER):
        assert table in tables, table
    for table, (table_owner, select, insert, update, delete, truncate, trigger, references) in tables.items():
        assert table_owner == owner, table
        assert not (truncate or trigger or references), table
        if table == LEDGER:
            assert (select, insert, update, delete) == (True, True, False, False)
        elif table == "django_migrations":
            assert (select, insert, update, delete) == (True, False, False, False)
        elif table == "billing_budgetusage":  # running totals: the ledger trigger upserts, nobody deletes
            assert (select, insert, update, delete) == (True, True, True, False)
        else:
            assert (select, insert, update, delete) == (True, True, True, True), table


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_truncate_update_and_delete_are_refused_even_to_the_owner(roles, member):
    entry = LedgerEntry.objects.create(kind="credit", amount=Decimal("3"), user=member, reason="owner probe")
    with owner_connect() as conn:
        conn.execute("SET lock_timeout = '30s'")
        assert conn.execute("SELECT current_user").fetchone()[0] == roles[1]
        for sql in (f"TRUNCATE {LEDGER}", f"TRUNCATE {LEDGER} CASCADE", f"TRUNCATE billing_balancesnapshot, {LEDGER}"):
            assert "append-only: TRUNCATE refused" in owner_refused(conn, sql), sql
        # UPDATE and DELETE: 0003's row trigger.
        assert "append-only: UPDATE refused" in owner_refused(conn, f"UPDATE {LEDGER} SET amount = 0 WHERE id = {entry.pk}")
        assert "append-only: DELETE refused" in owner_refused(conn, f"DELETE FROM {LEDGER} WHERE id = {entry.pk}")
    assert LedgerEntry.objects.get(pk=entry.pk).amount == Decimal("3")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_the_test_flush_keeps_the_trigger_and_the_ledger_protected(roles, member):
    """Django's flush (between transactional tests) runs as the owner with the TRUNCATE trigger
    off inside its own transaction only: afterwards the ledger is empty and the trigger is on."""
    LedgerEntry.objects.create(kind="credit", amount=Decimal("2"), user=member, reason="before the flush")
    call_command("flush", interactive=False, verbosity=0, inhibit_post_migrate=True)
    assert not LedgerEntry.objects.exists()
    assert scalar(
        "SELECT tgenabled FROM pg_trigger WHERE tgname = %s AND tgrelid = %s::regclass",
        [db_roles.TRUNCATE_TRIGGER, LEDGER],
    ) == "O"
    assert scalar("SELECT current_user") == roles[0]
    assert "permission denied" in refused(f"TRUNCATE {LEDGER}")
    with owner_connect() as conn:
        assert "append-only: TRUNCATE refused" in owner_refused(conn, f"TRUNCATE {LEDGER}")


@pytest.fixture
def as_owner_settings(settings, roles):
    """DATABASE_MIGRATE pointed at the test database (the session's own is the original database)."""
    db = connection.settings_dict
    user, password = ROLES["owner"]
    settings.DATABASE_MIGRATE = {**db, "USER": user, "PASSWORD": password}
    return settings


@pytest.fixture
def probe_role(roles):
    """A role name for ``create_app_role`` to create; dropped (with its grants) afterwards."""
    name = "hailuo_app_probe"
    yield name
    with owner_connect(autocommit=True) as conn:
        if conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone():
            # DROP OWNED BY would need membership in the role: revoke what create_app_role granted.
            database = conn.execute("SELECT current_database()").fetchone()[0]
            for sql in (
                "REVOKE ALL ON ALL TABLES IN SCHEMA public FROM {r}", "REVOKE ALL ON ALL SEQUENCES IN SCHEMA public FROM {r}",
                "REVOKE ALL ON SCHEMA public FROM {r}", 'REVOKE ALL ON DATABASE "{d}" FROM {r}',
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON TABLES FROM {r}",
                "ALTER DEFAULT PRIVILEGES IN SCHEMA public REVOKE ALL ON SEQUENCES FROM {r}", "DROP ROLE {r}",
            ):
                conn.execute(sql.format(r=name, d=database))


def _privileges(conn: psycopg.Connection, role: str, table: str) -> set[str]:
    return {
        p for p in ("SELECT", "INSERT", "UPDATE", "DELETE", "TRUNCATE", "TRIGGER", "REFERENCES")
        if conn.execute("SELECT has_table_privilege(%s, %s, %s)", [role, table, p]).fetchone()[0]
    }


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_create_app_role_creates_a_role_with_exactly_the_grants_and_is_rerunnable(as_owner_settings, probe_role, roles):
    call_command("create_app_role", probe_role, password="pw-probe-123", stdout=(out := io.StringIO()))
    assert f"created role {probe_role}" in out.getvalue()
    assert scalar("SELECT current_user") == roles[0]  # the command switched back to the app role
    with owner_connect(autocommit=True) as conn:
        attrs = conn.execute(
            "SELECT rolcanlogin, rolsuper, rolcreaterole, rolcreatedb FROM pg_roles WHERE rolname = %s", [probe_role]
        ).fetchone()
        assert attrs == (True, False, False, False)
        assert _privileges(conn, probe_role, LEDGER) == {"SELECT", "INSERT"}
        assert _privileges(conn, probe_role, "django_migrations") == {"SELECT"}
        assert _privileges(conn, probe_role, "django_q_task") == {"SELECT", "INSERT", "UPDATE", "DELETE"}
        # A table a later migration creates is granted by default (no TRUNCATE); a re-run (as
        # `migrate` does) then resets every table to exactly the set.
        conn.execute("CREATE TABLE hailuo_probe_later (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY)")
        try:
            assert _privileges(conn, probe_role, "hailuo_probe_later") == {"SELECT", "INSERT", "UPDATE", "DELETE"}
            conn.execute(f"GRANT ALL ON {LEDGER} TO {probe_role}")  # an accident to be undone
            call_command("create_app_role", probe_role, stdout=(out := io.StringIO()))
            assert f"updated role {probe_role}" in out.getvalue()
            assert _privileges(conn, probe_role, LEDGER) == {"SELECT", "INSERT"}
        finally:
            conn.execute("DROP TABLE hailuo_probe_later")
    # The new role, logged in, is as restricted as the suite's app role.
    db = connection.settings_dict
    with psycopg.connect(host=db["HOST"], port=db["PORT"], dbname=db["NAME"], user=probe_role, password="pw-probe-123") as probe:
        for sql in (f"TRUNCATE {LEDGER}", f"DELETE FROM {LEDGER}", f"ALTER TABLE {LEDGER} DISABLE TRIGGER ALL"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege), probe.transaction():
                probe.execute(sql)


@pytest.mark.django_db
def test_grants_refuse_roles_that_could_undo_them(roles):
    app, owner = roles
    with owner_connect() as conn:
        assert conn.execute("SELECT rolsuper FROM pg_roles WHERE rolname = 'postgres'").fetchone() == (True,)
    with owner_connect(autocommit=True) as conn:
        conn.execute("CREATE ROLE hailuo_app_creator LOGIN CREATEROLE")
    try:
        for bad, why in (
            (owner, "owns the tables"), ("postgres", "superuser"), ("hailuo_app_creator", "may create roles"),
            ("no_such_role_here", "does not exist"),
        ):
            with pytest.raises(ImproperlyConfigured, match=why):
                db_roles.grant_app_role(connection, bad)
    finally:
        with owner_connect(autocommit=True) as conn:
            conn.execute("DROP ROLE hailuo_app_creator")


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_migrate_runs_as_the_owner_and_regrants_the_app_role(as_owner_settings, roles):
    app, owner = roles
    with owner_connect(autocommit=True) as conn:
        conn.execute(f"REVOKE ALL ON {LEDGER} FROM {app}")
        assert _privileges(conn, app, LEDGER) == set()
        call_command("migrate", verbosity=1, stdout=(out := io.StringIO()))
        assert f"Granted the app role {app}" in out.getvalue()
        assert _privileges(conn, app, LEDGER) == {"SELECT", "INSERT"}
    assert scalar("SELECT current_user") == app



@pytest.mark.django_db
def test_the_app_role_keeps_the_running_totals_through_the_ledger_trigger_but_cannot_delete_them(roles, member):
    from billing.models import BudgetUsage

    app, _ = roles
    assert scalar("SELECT current_user") == app
    LedgerEntry.objects.create(kind="adjustment", amount=Decimal("2.25"), user=member, reason="fix", created_by=member)
    lifetime = BudgetUsage.objects.get(layer_key=f"user:{member.pk}", period="none")
    assert lifetime.committed == Decimal("2.25")
    assert "permission denied" in refused("DELETE FROM billing_budgetusage WHERE id = %s", [lifetime.pk])
    assert "permission denied" in refused("TRUNCATE billing_budgetusage")
    assert "must be owner" in refused("DROP TRIGGER billing_ledger_usage ON billing_ledgerentry")
