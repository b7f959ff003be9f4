"""The per-process cache of provider accounts and price rules (billing.config_cache) follows
the counter its triggers bump, through rollbacks and an emptied counter table (PostgreSQL:
elsewhere nothing is cached)."""

import pytest
from django.db import connection, transaction

from billing import config_cache
from billing.models import ConfigVersion
from providers.models import ProviderAccount

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _postgres_only():
    if connection.vendor != "postgresql":
        pytest.skip("the counter's triggers are PostgreSQL's; elsewhere nothing is cached")


def _account(label: str) -> ProviderAccount:
    account = ProviderAccount(kind="apixo", label=label, base_url="http://127.0.0.1:9")
    account.set_api_key("sk-cache-0001")
    account.save()
    return account


def test_a_rolled_back_change_does_not_make_a_later_one_look_cached():
    """Found under issue 16: the counter went ``n + 1``; a rollback took it back, so the next
    change brought the same number and the copy cached inside the rolled-back transaction read
    as current (a new account answered as missing)."""
    with pytest.raises(RuntimeError), transaction.atomic():
        first = _account("rolled back")
        assert config_cache.provider_account(first.pk + 1) is None  # cached as missing
        raise RuntimeError("roll back")
    second = _account("kept")
    assert second.pk == first.pk + 1  # a sequence is not rolled back: the same id the cache saw missing
    found = config_cache.provider_account(second.pk)
    assert found is not None and found.label == "kept"


def test_each_change_takes_a_new_number_even_in_one_transaction():
    seen = set()
    with transaction.atomic():
        for i in range(3):
            _account(f"a{i}")
            seen.add(ConfigVersion.objects.get(pk=1).n)
    assert len(seen) == 3


def test_an_emptied_counter_table_comes_back_with_the_next_change():
    """Django's TransactionTestCase flush empties every table: the next change writes the row
    again rather than leaving the counter unknown (and the cache unchecked) for good."""
    ConfigVersion.objects.all().delete()
    assert config_cache.provider_account(10**9) is None
    account = _account("after the flush")
    assert ConfigVersion.objects.filter(pk=1).exists()
    assert config_cache.provider_account(account.pk) is not None
