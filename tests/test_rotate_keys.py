"""``manage.py rotate_provider_keys``: re-encrypt with the first key, retire the old one, the provider still answers."""

from __future__ import annotations

import io

import pytest
from cryptography.fernet import Fernet
from django.core.management import CommandError, call_command

from providers.models import ProviderAccount
from providers.services import provider_account_check

from .conftest import APIXO_KEY

pytestmark = pytest.mark.django_db


def test_rotate_then_retire_the_old_key_and_still_call_the_provider(settings, apixo_account):
    old_key = settings.HAILUO_ENCRYPTION_KEYS[0]
    old_token = ProviderAccount.objects.get(pk=apixo_account.pk).api_key_encrypted
    new_key = Fernet.generate_key().decode()
    settings.HAILUO_ENCRYPTION_KEYS = [new_key, old_key]  # step 1: prepend a new key

    out = io.StringIO()
    call_command("rotate_provider_keys", stdout=out)
    assert "re-encrypted 1 provider API key(s)" in out.getvalue()
    assert APIXO_KEY not in out.getvalue()
    token = ProviderAccount.objects.get(pk=apixo_account.pk).api_key_encrypted
    assert token != old_token
    assert Fernet(new_key.encode()).decrypt(token.encode()).decode() == APIXO_KEY

    settings.HAILUO_ENCRYPTION_KEYS = [new_key]  # step 2: the old key is gone
    account = ProviderAccount.objects.get(pk=apixo_account.pk)
    assert account.api_key == APIXO_KEY and account.api_key_last4 == "0042"
    check = provider_account_check(account=account)  # real HTTP to the APIXO sandbox with the decrypted key
    assert check.ok, check.message
    assert "balance $74.87" in check.message


def test_a_key_no_configured_key_opens_is_reported_and_the_others_rotated(settings, apixo_account):
    other = ProviderAccount(kind="apixo", label="second", base_url=apixo_account.base_url)
    other.set_api_key("sk-other-1234")
    other.save()
    settings.HAILUO_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]  # lost the key of apixo_account
    other.set_api_key("sk-other-1234")  # re-encrypted with the new key: opens
    other.save()
    with pytest.raises(CommandError, match="1 key\\(s\\) cannot be decrypted.*APIXO test"):
        call_command("rotate_provider_keys", stdout=io.StringIO())
    assert ProviderAccount.objects.get(pk=other.pk).api_key == "sk-other-1234"


def test_check_changes_nothing(settings, apixo_account):
    before = ProviderAccount.objects.get(pk=apixo_account.pk).api_key_encrypted
    settings.HAILUO_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *settings.HAILUO_ENCRYPTION_KEYS]
    out = io.StringIO()
    call_command("rotate_provider_keys", "--check", stdout=out)
    assert "would re-encrypt 1" in out.getvalue()
    assert ProviderAccount.objects.get(pk=apixo_account.pk).api_key_encrypted == before
