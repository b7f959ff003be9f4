"""``manage.py budget_usage [--fix]``: check the budgets' running totals against the ledger.

Recomputes every total (committed spend per budget layer and period, ``billing.usage``) from
the append-only ledger, the truth, and prints each one that differs (stored, ledger, drift in
USD). Exit status 1 when there is drift. ``--fix`` sets each differing total to the ledger's
sum, with writers paused for the moment it takes. PostgreSQL only (elsewhere the budget check
sums the ledger and there is nothing to check).
"""

from django.core.management.base import BaseCommand, CommandError
from django.db import connection

from billing.usage import usage_drift


class Command(BaseCommand):
    help = "Compare the budgets' running totals with the ledger's sums; --fix to correct drift."

    def add_arguments(self, parser):
        parser.add_argument("--fix", action="store_true", help="set every drifting total to the ledger's sum")

    def handle(self, *args, fix: bool = False, **options):
        if connection.vendor != "postgresql":
            self.stdout.write("Running totals are kept on PostgreSQL only; nothing to check here.")
            return
        drift = usage_drift(fix=fix)
        for d in drift:
            self.stdout.write(
                f"{d['layer_key']} {d['period']} from {d['period_start']:%Y-%m-%d %H:%M}Z: stored {d['stored']} USD, "
                f"ledger {d['ledger']} USD, drift {d['drift']} USD" + (" (fixed)" if fix else "")
            )
        if not drift:
            self.stdout.write("Every running total equals the ledger's sum.")
        elif not fix:
            raise CommandError(f"{len(drift)} running total(s) differ from the ledger: run with --fix to correct them.")
        else:
            self.stdout.write(f"Fixed {len(drift)} running total(s).")
