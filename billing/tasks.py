"""django-q2 entry points of the billing app."""

from __future__ import annotations

from billing.balances import balance_snapshots_take_all


def snapshot_balances() -> dict[str, int]:
    """Snapshot the balance of every enabled provider account (schedule: hourly).

    Returns ``{"taken": n, "skipped": m}`` (skipped: no balance endpoint or the call failed).
    Scheduled as ``billing.tasks.snapshot_balances``.
    """
    return balance_snapshots_take_all()
