"""Writes and actions on provider accounts."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from django.conf import settings

from providers.http import ProviderError, ProviderHttp, Timeouts, make_submit_client
from providers.models import ProviderAccount


@dataclass(frozen=True)
class ConnectionCheck:
    """The outcome of a test connection: ``ok``, the ``balance`` (provider's unit) and a message."""

    ok: bool
    balance: object
    message: str


def provider_account_check(*, account: ProviderAccount) -> ConnectionCheck:
    """Call the provider's balance or account endpoint with the account's key.

    Uses APIXO ``/apikeys/current-balance``, PiAPI ``/account/info``, PoYo ``/api/user/info``
    (whatever the adapter's ``fetch_balance`` reads). Never raises: errors become the message.
    """

    async def go():
        async with make_submit_client() as client:
            http = ProviderHttp(
                client, timeouts=Timeouts(connect=settings.HAILUO_PROVIDER_CONNECT_TIMEOUT, read=15.0),
                provider=account.adapter_cls.label,
            )
            return await account.adapter().fetch_balance(http)

    # The admin capitalises a message's first letter: start with our words, not the provider's
    # own spelling ("qingbo").
    name = f"“{account}”"
    try:
        balance = asyncio.run(go())
    except ProviderError as exc:
        return ConnectionCheck(False, None, f"Connection to {name} failed: {exc.message}")
    except ValueError as exc:  # the stored key cannot be decrypted
        return ConnectionCheck(False, None, f"Connection to {name} failed: {exc}")
    if balance is None:
        return ConnectionCheck(True, None, f"Connected to {name} (the provider reports no balance)")
    return ConnectionCheck(True, balance, f"Connected to {name}: balance {format_balance(balance, account.adapter_cls.balance_unit.name)}")


def format_balance(balance, unit: str) -> str:
    """A balance with its unit name (``ProviderAdapter.balance_unit.name``): USD as money with cents ("$73.53"), credits as a count ("9,965 credits")."""
    from decimal import Decimal

    from billing.money import format_cents

    if unit == "USD":
        return format_cents(Decimal(str(balance)))
    value = Decimal(str(balance))
    text = f"{value:,f}".rstrip("0").rstrip(".") if "." in f"{value:f}" else f"{value:,f}"
    return f"{text} {unit}"
