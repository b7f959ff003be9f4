"""Root conftest: the whole suite (tests/ and the apps' own tests) runs as the restricted
PostgreSQL app role; the test database is created and migrated as the owner (tests/pg_roles.py)."""

import pytest

from tests.pg_roles import django_db_modify_db_settings, django_db_setup  # noqa: F401


@pytest.fixture(autouse=True)
def _fresh_default_cache():
    """Every test starts with an empty default cache (the process-local LocMemCache).

    Cached reads such as the ETA medians (``generations.eta``, cached for minutes) would
    otherwise carry one test's data into the next and make results depend on test order.
    """
    from django.core.cache import caches

    caches["default"].clear()
    yield
