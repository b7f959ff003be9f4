"""The running totals' invariant, computed independently of the SQL that keeps them.

Every ledger entry is placed in its layers and periods here, in Python (the zones and the
period calculator the budget pages use, ``billing.reports.periods.period_bounds``); the sums
must equal the :class:`billing.models.BudgetUsage` rows to the cent: no total missing, none
extra (a zero total may have a row or not), none off by anything.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from accounts.models import Membership, Team
from billing.models import BudgetUsage, LedgerEntry
from billing.money import money
from billing.reports.periods import period_bounds
from billing.usage import PERIODS

LIFETIME_START = "1970-01-01T00:00:00+00:00"


def _delta(e) -> Decimal:
    return {"hold": e.amount, "release": -e.amount, "capture": e.amount - (e.hold_amount or 0),
            "adjustment": e.amount, "credit": -e.amount}[e.kind]


def ledger_totals(users=None) -> dict[tuple[str, str, str], Decimal]:
    """``{(layer_key, period, period_start ISO UTC): committed}`` from the ledger, non-zero only
    (the entries of ``users`` only, when given)."""
    team_zone = dict(Team.objects.values_list("id", "time_zone"))
    first_team: dict[int, int] = {}
    for user_id, team_id in Membership.objects.order_by("id").values_list("user_id", "team_id"):
        first_team.setdefault(user_id, team_id)
    totals: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    entries = LedgerEntry.objects.select_related("generation__project")
    if users is not None:
        entries = entries.filter(user__in=users)
    for e in entries:
        layers = [(f"user:{e.user_id}", team_zone.get(first_team.get(e.user_id), "UTC"))]
        if e.team_id:
            layers += [(f"member:{e.user_id}:team:{e.team_id}", team_zone[e.team_id]), (f"team:{e.team_id}", team_zone[e.team_id])]
        if e.generation_id and e.generation.project_id:
            layers.append((f"project:{e.generation.project_id}", team_zone[e.generation.project.team_id]))
        for key, zone in layers:
            for period in PERIODS:
                start, _ = period_bounds(period, tz_name=zone or "UTC", now=e.effective_at)
                totals[(key, period, start.isoformat() if start else LIFETIME_START)] += _delta(e)
    return {k: money(v) for k, v in totals.items() if money(v) != 0}


def stored_totals(layer_keys=None) -> dict[tuple[str, str, str], Decimal]:
    """The :class:`BudgetUsage` rows (of ``layer_keys`` when given), non-zero only, keyed like :func:`ledger_totals`."""
    out = {}
    rows = BudgetUsage.objects.all() if layer_keys is None else BudgetUsage.objects.filter(layer_key__in=layer_keys)
    for row in rows:
        if money(row.committed) != 0:
            out[(row.layer_key, row.period, row.period_start.isoformat())] = money(row.committed)
    return out


def assert_totals_equal_the_ledger(*, users=None, teams=(), projects=()) -> int:
    """Fails unless every running total equals the ledger's sum for its layer and period; returns how many there are
    (0 off PostgreSQL, where there are no running totals). With ``users`` (and the ``teams`` and
    ``projects`` they book to), only those layers are compared: the entries of those users
    must be all the entries of those teams and projects."""
    from django.db import connection

    if connection.vendor != "postgresql":
        return 0
    keys = None
    if users is not None:
        user_ids = [getattr(u, "pk", u) for u in users]
        keys = [f"user:{u}" for u in user_ids] + [f"team:{getattr(t, 'pk', t)}" for t in teams]
        keys += [f"member:{u}:team:{getattr(t, 'pk', t)}" for u in user_ids for t in teams]
        keys += [f"project:{getattr(p, 'pk', p)}" for p in projects]
    expected, stored = ledger_totals(users), {}
    for (key, period, start), value in stored_totals(keys).items():
        # Compare instants, not spellings: psycopg returns UTC, period_bounds the zone's offset.
        stored[(key, period, start)] = value
    from datetime import datetime

    norm = lambda d: {(k, p, datetime.fromisoformat(s).timestamp()): v for (k, p, s), v in d.items()}  # noqa: E731
    expected_n, stored_n = norm(expected), norm(stored)
    missing = {k: v for k, v in expected_n.items() if stored_n.get(k) != v}
    extra = {k: v for k, v in stored_n.items() if k not in expected_n}
    assert not missing and not extra, {"ledger_says": missing, "stored_only": extra}
    return len(expected)
