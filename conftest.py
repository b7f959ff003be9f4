"""Root conftest: the whole suite (tests/ and the apps' own tests) runs as the restricted
PostgreSQL app role; the test database is created and migrated as the owner (tests/pg_roles.py)."""

from tests.pg_roles import django_db_modify_db_settings, django_db_setup  # noqa: F401
