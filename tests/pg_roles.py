"""The test session's PostgreSQL roles: the suite runs as the restricted app role.

The root ``conftest.py`` installs the two session fixtures below (so that the tests under
``billing/``, ``providers/``, ``generations/`` and ``accounts/`` get them as well as ``tests/``).
When ``DATABASE_MIGRATE_URL`` names an owner other than ``DATABASE_URL``'s user (the test
command's PostgreSQL, ``scripts/with-postgres.sh``, sets both):

1. :func:`django_db_modify_db_settings` switches the default connection to the owner and
   removes ``DATABASE_MIGRATE_URL`` from the environment, so no process a test starts (the
   django-q2 clusters, ``run_workers``) ever sees the owner's credentials;
2. pytest-django creates and migrates the test database as the owner;
3. :func:`django_db_setup` grants the app role (:func:`billing.db_roles.grant_app_role`) and
   switches the connection back to it: the tests, the live server's threads and the
   clusters the end-to-end tests start (``tests.conftest.test_database_url``) all log in as
   the app role.

Flushes between transactional tests (``transaction=True``, the live server's tests): Django
TRUNCATEs every table, which the app role may not do and the ledger's trigger refuses to
anyone. :func:`flush_as_owner` runs that TRUNCATE on a connection of the owner instead, in one
transaction that disables the ledger's TRUNCATE trigger, truncates and enables it again:
``ALTER TABLE … DISABLE TRIGGER`` needs ownership (the app role cannot), the trigger is never
off outside that transaction (which holds ACCESS EXCLUSIVE on the ledger meanwhile), and this
lives in test code with credentials the app never has. Nothing in the app does this.
"""

from __future__ import annotations

import os

import psycopg
import pytest
from django.conf import settings
from django.db import connections
from django.db.backends.postgresql.operations import DatabaseOperations

from billing import db_roles

#: Filled when the session runs as the app role: ``{"app": (user, password), "owner": (user, password)}``.
ROLES: dict[str, tuple[str, str]] = {}


def owner_connect(**kwargs) -> psycopg.Connection:
    """A new psycopg connection to the test database as the tables' owner (autocommit off).

    Raises KeyError when the session does not run with separate roles (see :data:`ROLES`).
    """
    user, password = ROLES["owner"]
    db = connections["default"].settings_dict
    return psycopg.connect(
        host=db["HOST"], port=db["PORT"], dbname=db["NAME"], user=user, password=password or None, **kwargs
    )


def execute_as_owner(sql: str) -> None:
    """Run test-setup SQL the app role may not (DDL such as a test's own trigger) as the owner,
    committed at once; on the default connection when the session runs with one role."""
    if not ROLES:
        with connections["default"].cursor() as cursor:
            cursor.execute(sql)
        return
    with owner_connect(autocommit=True) as conn:
        conn.execute(sql)


def flush_as_owner(self: DatabaseOperations, sql_list: list[str]) -> None:
    """``DatabaseOperations.execute_sql_flush`` for the test session: Django's flush SQL run as
    the owner, with the ledger's TRUNCATE trigger disabled inside the same transaction only."""
    ledger, trigger = db_roles.LEDGER_TABLE, db_roles.TRUNCATE_TRIGGER
    with owner_connect() as conn:  # commits at the end, rolls back on an exception
        conn.execute("SET LOCAL lock_timeout = '60s'")
        conn.execute(f"ALTER TABLE {ledger} DISABLE TRIGGER {trigger}")
        for sql in sql_list:
            conn.execute(sql)
        conn.execute(f"ALTER TABLE {ledger} ENABLE TRIGGER {trigger}")


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """Before the test database is created: connect as the owner (``DATABASE_MIGRATE_URL``)."""
    owner = settings.DATABASE_MIGRATE
    db = settings.DATABASES["default"]
    if owner and db["ENGINE"].endswith("postgresql") and owner["USER"] != db["USER"]:
        ROLES["app"] = (db["USER"], db.get("PASSWORD") or "")
        ROLES["owner"] = (owner["USER"], owner.get("PASSWORD") or "")
        os.environ.pop("DATABASE_MIGRATE_URL", None)
        db_roles.switch_credentials("default", *ROLES["owner"])


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup, django_db_blocker):
    """After the test database is created and migrated: grant the app role and connect as it."""
    if not ROLES:
        yield
        return
    with django_db_blocker.unblock():
        db_roles.grant_app_role(connections["default"], ROLES["app"][0])
        db_roles.switch_credentials("default", *ROLES["app"])
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(DatabaseOperations, "execute_sql_flush", flush_as_owner)
        yield
    # pytest-django drops the test database next: as its owner.
    db_roles.switch_credentials("default", *ROLES["owner"])
