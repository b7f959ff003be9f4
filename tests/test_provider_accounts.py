"""Provider accounts: keys encrypted at rest and never shown whole; test connection from the admin."""

from __future__ import annotations

import pytest

from providers.models import ProviderAccount
from providers.services import provider_account_check

from .conftest import APIXO_KEY

pytestmark = pytest.mark.django_db


def test_key_is_encrypted_at_rest_and_masked(apixo_account):
    row = ProviderAccount.objects.values("api_key_encrypted", "api_key_last4").get(pk=apixo_account.pk)
    assert APIXO_KEY not in row["api_key_encrypted"] and row["api_key_last4"] == "0042"
    assert ProviderAccount.objects.get(pk=apixo_account.pk).api_key == APIXO_KEY
    assert apixo_account.masked_key == "••••0042"


def test_admin_never_shows_the_key_and_tests_the_connection(admin_client, apixo_account):
    page = admin_client.get(f"/admin/providers/provideraccount/{apixo_account.pk}/change/").content.decode()
    assert APIXO_KEY not in page and apixo_account.api_key_encrypted not in page
    listing = admin_client.get("/admin/providers/provideraccount/").content.decode()
    assert "••••0042" in listing
    response = admin_client.post(
        "/admin/providers/provideraccount/",
        {"action": "test_connection", "_selected_action": [apixo_account.pk]},
        follow=True,
    )
    assert "Connected to “APIXO · APIXO test”: balance $74.87" in response.content.decode()


def test_admin_keeps_the_key_when_left_blank_and_replaces_it_when_typed(admin_client, apixo_account):
    url = f"/admin/providers/provideraccount/{apixo_account.pk}/change/"
    data = {"kind": "apixo", "label": "APIXO test", "new_api_key": "", "base_url": apixo_account.base_url,
            "enabled": "on", "priority": 100, "options": "{}"}
    assert admin_client.post(url, data).status_code == 302
    assert ProviderAccount.objects.get(pk=apixo_account.pk).api_key == APIXO_KEY
    admin_client.post(url, {**data, "new_api_key": "sk-new-key-9999"})
    assert ProviderAccount.objects.get(pk=apixo_account.pk).api_key_last4 == "9999"


def test_check_reports_errors_instead_of_raising(apixo_account):
    apixo_account.set_api_key("sk-wrong")
    check = provider_account_check(account=apixo_account)
    assert not check.ok
    assert check.message.startswith("Connection to “APIXO · APIXO test” failed: APIXO:") and check.balance is None
