"""Balance snapshots: what each provider account's balance endpoint said, and when.

Writes live here (not in ``billing.services``) to keep the reports feature in its own
module; :func:`balance_snapshot_take` is the one service.
"""

from __future__ import annotations

import logging
from decimal import Decimal

from django.utils import timezone

from billing.models import BalanceSnapshot
from billing.money import money
from providers.base import BalanceUnit
from providers.models import ProviderAccount

log = logging.getLogger(__name__)


def balance_unit(account: ProviderAccount) -> BalanceUnit:
    """The unit ``account``'s balance endpoint answers in and its USD value, as its adapter
    reports it (``ProviderAdapter.balance_unit``: APIXO and PiAPI USD, PoYo credits at the
    documented 0.005 USD each, qingbo and MiniMax "units" with no conversion, having no
    balance endpoint). An account of an unregistered kind gets "units", never converted.
    """
    try:
        return account.adapter_cls.balance_unit
    except KeyError:
        return BalanceUnit("units")


def balance_snapshot_take(*, account: ProviderAccount) -> BalanceSnapshot | None:
    """Read ``account``'s balance from the provider and store it as a :class:`BalanceSnapshot`.

    Calls :func:`providers.services.provider_account_check` (one HTTP request to the
    provider's balance or account endpoint, 15 s read timeout). Returns the new snapshot
    (``balance`` in the provider's unit, ``taken_at`` now), or None, writing nothing, when
    the provider has no balance endpoint or the call failed (logged as a warning). Never raises
    for provider errors.
    """
    from providers.services import provider_account_check

    check = provider_account_check(account=account)
    if not check.ok or check.balance is None:
        if not check.ok:
            log.warning("balance snapshot skipped: %s", check.message)
        return None
    try:
        balance = money(Decimal(str(check.balance)))
    except (ArithmeticError, ValueError, TypeError):
        log.warning("balance snapshot skipped: %s answered a non-numeric balance %r", account, check.balance)
        return None
    unit = balance_unit(account).name
    return BalanceSnapshot.objects.create(provider_account=account, balance=balance, unit=unit, taken_at=timezone.now())


def balance_snapshots_take_all() -> dict[str, int]:
    """Snapshot every enabled provider account; returns ``{"taken": n, "skipped": m}``."""
    taken = skipped = 0
    for account in ProviderAccount.objects.filter(enabled=True).order_by("id"):
        if balance_snapshot_take(account=account) is None:
            skipped += 1
        else:
            taken += 1
    return {"taken": taken, "skipped": skipped}
