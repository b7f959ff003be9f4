"""The running totals behind the budget check (:class:`BudgetUsage`); the logic is in ``billing.usage``."""

from __future__ import annotations

from django.db import models

from billing.money import DECIMAL_PLACES, MAX_DIGITS


class BudgetUsage(models.Model):
    """Committed spend (USD) of one budget layer in one period: a running total of the ledger.

    ``layer_key``: ``user:<id>`` (all of a member's spend: their own budget and the default),
    ``member:<user id>:team:<team id>``, ``team:<id>`` or ``project:<id>``. ``period``: day,
    week, month or none (lifetime); ``period_start``/``period_end``: the period in the
    layer's time zone (the team's; for ``user:`` the member's primary team's) as UTC instants,
    ``[start, end)``; a lifetime row starts at 1970-01-01 UTC and has no end.

    Maintained on PostgreSQL only, by a statement-level trigger on the ledger's INSERT (so
    every writer, COPY included, updates it in the same transaction: migration
    ``billing.0011``), as ``committed = committed + delta`` upserts. The ledger stays the
    truth: ``manage.py budget_usage`` recomputes every total from it and reports (or fixes)
    drift. The app role may SELECT, INSERT and UPDATE rows, never DELETE them
    (``billing.db_roles``).
    """

    layer_key = models.CharField(max_length=80)
    period = models.CharField(max_length=10)
    period_start = models.DateTimeField()
    period_end = models.DateTimeField(null=True, blank=True)
    committed = models.DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES, default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["layer_key", "period", "period_start"], name="budget_usage_one_row_per_period"),
        ]

    def __str__(self) -> str:
        return f"{self.layer_key} {self.period} from {self.period_start:%Y-%m-%d %H:%M}: {self.committed} USD"


class ConfigVersion(models.Model):
    """One row (``pk=1``): a counter bumped by PostgreSQL statement triggers on every write to
    provider accounts and price rules (migration ``billing.0011``), so each process may cache
    them (``billing.config_cache``) and drop its copy as soon as it sees a new number."""

    n = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"config version {self.n}"
