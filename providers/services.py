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

    try:
        balance = asyncio.run(go())
    except ProviderError as exc:
        return ConnectionCheck(False, None, f"{account}: {exc.message}")
    except ValueError as exc:  # the stored key cannot be decrypted
        return ConnectionCheck(False, None, f"{account}: {exc}")
    if balance is None:
        return ConnectionCheck(True, None, f"{account}: connected (the provider reports no balance)")
    return ConnectionCheck(True, balance, f"{account}: connected, balance {balance}")
