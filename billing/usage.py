"""Running totals of committed spend per budget layer and period (:class:`BudgetUsage`).

Why: a budget check used to sum the period's ledger under the budget row lock, so every
submit got slower as the period filled (issue 16: ~3 ms at 7,000 holds, growing with each
one). Now the check reads one row per budget layer.

How it stays equal to the ledger (the truth):

- A statement-level ``AFTER INSERT`` trigger on the ledger (:data:`TRIGGER_SQL`, migration
  ``billing.0011``) adds every new entry's committed delta (:data:`DELTA_SQL`: hold +amount,
  release −amount, capture amount − hold_amount, adjustment ±amount, credit −amount) to the
  rows of each layer it belongs to (``user:U``; with a team ``member:U:team:T`` and
  ``team:T``; with a generation of a project ``project:P``) for each period kind (day, week,
  month, none) containing its ``effective_at``, in the same transaction, as ``committed =
  committed + delta`` upserts locked in key order. The ledger is append-only, so nothing
  else ever changes a total.
- Periods are computed in SQL (``billing_period_start``/``billing_period_end``: PostgreSQL's
  ``date_trunc`` in the layer's zone, Monday weeks, the same bounds as
  ``billing.reports.periods.period_bounds``), both when writing and when reading.
- A layer's zone is its team's (``project:`` its project's team's); ``user:`` rows use the
  member's primary team's (first membership), UTC without one. When a zone changes (a team's
  ``time_zone``, a member's first membership), the affected totals are recomputed from the
  ledger (:func:`usage_rebuild`, wired in ``billing.signals``).
- :func:`usage_drift` recomputes every total from the ledger and compares (``manage.py
  budget_usage``, ``--fix`` to correct); the Hypothesis money machine checks equality to the
  cent after every step.

PostgreSQL only: on SQLite there is no trigger and :func:`committed_for` sums the ledger.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

from django.db import connection, transaction
from django.utils import timezone

from billing.money import money

#: Budget periods with a running total; "none" is the lifetime row (start 1970-01-01 UTC).
PERIODS = ("day", "week", "month", "none")
TABLE = "billing_budgetusage"

#: One ledger row's effect on committed spend (``billing.selectors.COMMITTED_DELTA`` in SQL).
DELTA_SQL = (
    "CASE e.kind WHEN 'hold' THEN e.amount WHEN 'release' THEN -e.amount "
    "WHEN 'capture' THEN e.amount - COALESCE(e.hold_amount, 0) WHEN 'adjustment' THEN e.amount "
    "WHEN 'credit' THEN -e.amount ELSE 0 END"
)

FUNCTIONS_SQL = """
CREATE OR REPLACE FUNCTION billing_period_start(period text, tz text, at timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
  SELECT CASE WHEN period = 'none' THEN timestamptz '1970-01-01 00:00:00+00'
              ELSE date_trunc(period, at AT TIME ZONE tz) AT TIME ZONE tz END
$$;
CREATE OR REPLACE FUNCTION billing_period_end(period text, tz text, at timestamptz) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
  SELECT CASE WHEN period = 'none' THEN NULL
              ELSE (date_trunc(period, at AT TIME ZONE tz) + ('1 ' || period)::interval) AT TIME ZONE tz END
$$;
"""


def rows_sql(source: str, where: str = "") -> str:
    """SELECT of the totals ``(layer_key, period, period_start, period_end, committed)`` of the
    ledger rows in ``source`` (the ledger table, or the trigger's transition table), non-zero
    totals only, in key order. Entries are first summed per 15-minute UTC bucket (every zone's
    midnight falls on one), so a million entries cost a few thousand period computations.
    Each entry's generation (its project) is a ``LATERAL … LIMIT 1`` lookup by primary key: a
    probe per entry that no plan can turn into a scan of the generations
    (:data:`TRIGGER_FUNCTION_SETTINGS`).
    ``where`` filters the result (e.g. on ``layer_key``)."""
    return f"""
SELECT k.layer_key, p.period, billing_period_start(p.period, k.tz, n.bucket) AS period_start,
       billing_period_end(p.period, k.tz, n.bucket) AS period_end, SUM(n.delta) AS committed
FROM (
  SELECT e.user_id, e.team_id, g.project_id,
         to_timestamp(floor(extract(epoch FROM e.effective_at) / 900) * 900) AS bucket, SUM({DELTA_SQL}) AS delta
  FROM {source} e
  LEFT JOIN LATERAL (SELECT g.project_id FROM generations_generation g WHERE g.id = e.generation_id LIMIT 1) g ON true
  GROUP BY 1, 2, 3, 4
) n
LEFT JOIN accounts_team t ON t.id = n.team_id
LEFT JOIN teamwork_project pr ON pr.id = n.project_id
LEFT JOIN accounts_team pt ON pt.id = pr.team_id
LEFT JOIN LATERAL (
  SELECT t2.time_zone FROM accounts_membership m JOIN accounts_team t2 ON t2.id = m.team_id
  WHERE m.user_id = n.user_id ORDER BY m.id LIMIT 1
) ut ON true
CROSS JOIN LATERAL (VALUES
  ('user:' || n.user_id, COALESCE(NULLIF(ut.time_zone, ''), 'UTC')),
  (CASE WHEN n.team_id IS NOT NULL THEN 'member:' || n.user_id || ':team:' || n.team_id END,
   COALESCE(NULLIF(t.time_zone, ''), 'UTC')),
  (CASE WHEN n.team_id IS NOT NULL THEN 'team:' || n.team_id END, COALESCE(NULLIF(t.time_zone, ''), 'UTC')),
  (CASE WHEN n.project_id IS NOT NULL THEN 'project:' || n.project_id END, COALESCE(NULLIF(pt.time_zone, ''), 'UTC'))
) k(layer_key, tz)
CROSS JOIN (VALUES ('day'), ('week'), ('month'), ('none')) p(period)
WHERE k.layer_key IS NOT NULL {where}
GROUP BY 1, 2, 3, 4
HAVING SUM(n.delta) <> 0
ORDER BY 1, 2, 3"""


UPSERT_SUFFIX = f"""
ON CONFLICT (layer_key, period, period_start) DO UPDATE SET committed = {TABLE}.committed + EXCLUDED.committed"""

#: The trigger function plans its statement with sequential scans off (``SET enable_seqscan``
#: on the function, so only its own statement is affected). PL/pgSQL keeps one plan per
#: connection, made at the connection's first ledger write from the statistics of that moment:
#: on a young database (``generations_generation`` analyzed while nearly empty) the plan
#: joined the new entries to a sequential scan of every generation (or, with sequential scans
#: merely off, to a full scan of its primary key), and kept doing so while the table grew until
#: the next ``ANALYZE``: ~0.85 ms a hold at 850 generations, linear in the table (issue 16,
#: seen with ``auto_explain``). With the lookup a ``LATERAL … LIMIT 1`` subquery
#: (:func:`rows_sql`) and sequential scans off, it is an index probe by primary key whatever the
#: statistics say; the transition table is read as it always is (a tuplestore scan, which the
#: setting does not touch). JIT is off too: a plan with a discouraged scan costs over
#: ``jit_above_cost``, and compiling would cost tens of milliseconds on a one-entry statement.
TRIGGER_FUNCTION_SETTINGS = "SET enable_seqscan = off SET jit = off"

TRIGGER_SQL = f"""
CREATE OR REPLACE FUNCTION billing_usage_from_ledger() RETURNS trigger LANGUAGE plpgsql
{TRIGGER_FUNCTION_SETTINGS} AS $fn$
BEGIN
  INSERT INTO {TABLE} (layer_key, period, period_start, period_end, committed)
  {rows_sql("new_rows")}
  {UPSERT_SUFFIX};
  RETURN NULL;
END
$fn$;
DROP TRIGGER IF EXISTS billing_ledger_usage ON billing_ledgerentry;
CREATE TRIGGER billing_ledger_usage AFTER INSERT ON billing_ledgerentry
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION billing_usage_from_ledger();
"""

UNINSTALL_SQL = """
DROP TRIGGER IF EXISTS billing_ledger_usage ON billing_ledgerentry;
DROP FUNCTION IF EXISTS billing_usage_from_ledger();
DROP FUNCTION IF EXISTS billing_period_end(text, text, timestamptz);
DROP FUNCTION IF EXISTS billing_period_start(text, text, timestamptz);
"""


def layer_key(budget) -> str:
    """The :class:`BudgetUsage` layer of ``budget``: ``project:P``, ``member:U:team:T``, ``team:T``
    or ``user:U`` (a member's own budget and the site-wide default)."""
    if budget.project_id:
        return f"project:{budget.project_id}"
    if budget.user_id and budget.team_id:
        return f"member:{budget.user_id}:team:{budget.team_id}"
    if budget.team_id:
        return f"team:{budget.team_id}"
    return f"user:{budget.user_id}"


def _on_postgres() -> bool:
    return connection.vendor == "postgresql"


def committed_for(budgets, *, now: datetime | None = None, time_zones: dict | None = None) -> list[Decimal]:
    """Committed spend this period (USD) of each of ``budgets``, in order, in one query.

    ``time_zones`` maps a budget's index to its zone when the caller knows it (else
    ``billing.selectors.budget_time_zone``). On PostgreSQL one read of at most one
    :class:`BudgetUsage` row per budget (a missing row is 0: no entry yet); elsewhere the
    ledger is summed (``billing.selectors.committed_in``).
    """
    from billing.selectors import budget_time_zone, committed_in

    budgets = list(budgets)
    if not budgets:
        return []
    if not _on_postgres():
        return [committed_in(budget=b, now=now) for b in budgets]
    now = now or timezone.now()
    zones = [(time_zones or {}).get(i) or budget_time_zone(b) or "UTC" for i, b in enumerate(budgets)]
    values = ", ".join(["(%s::int, %s::text, %s::text, %s::text)"] * len(budgets))
    params: list = []
    for i, (budget, zone) in enumerate(zip(budgets, zones, strict=True)):
        params += [i, layer_key(budget), budget.period, zone]
    sql = (
        f"SELECT k.i, u.committed FROM (VALUES {values}) k(i, layer_key, period, tz) "
        f"JOIN {TABLE} u ON u.layer_key = k.layer_key AND u.period = k.period "
        "AND u.period_start = billing_period_start(k.period, k.tz, %s)"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [*params, now])
        found = dict(cursor.fetchall())
    return [money(found.get(i, Decimal(0))) for i in range(len(budgets))]


def _expected(layer_keys: list[str] | None) -> dict[tuple, Decimal]:
    where, params = "", []
    if layer_keys is not None:
        where, params = "AND k.layer_key = ANY(%s)", [layer_keys]
    with connection.cursor() as cursor:
        cursor.execute(rows_sql("billing_ledgerentry", where), params)
        return {(k, p, s): (e, Decimal(c)) for k, p, s, e, c in cursor.fetchall()}


def usage_drift(*, fix: bool = False, layer_keys: list[str] | None = None) -> list[dict]:
    """Recompute the totals from the ledger and compare with :class:`BudgetUsage` (PostgreSQL).

    Returns one dict per differing total: ``layer_key``, ``period``, ``period_start``,
    ``stored`` and ``ledger`` (USD), ``drift`` (stored − ledger). With ``fix``, the table is
    locked against writers (``SHARE ROW EXCLUSIVE``: the ledger trigger's upserts wait, so no
    entry is missed) and each differing total is set to the ledger's sum (rows are never
    deleted: a total with no entries left is set to 0). ``layer_keys`` limits it to those layers.
    """
    from billing.models import BudgetUsage

    if not _on_postgres():
        return []
    with transaction.atomic():
        if fix:
            with connection.cursor() as cursor:
                cursor.execute(f"LOCK TABLE {TABLE} IN SHARE ROW EXCLUSIVE MODE")
        expected = _expected(layer_keys)
        stored_rows = BudgetUsage.objects.all()
        if layer_keys is not None:
            stored_rows = stored_rows.filter(layer_key__in=layer_keys)
        stored = {(r.layer_key, r.period, r.period_start): r for r in stored_rows}
        drift = []
        for key in sorted(set(expected) | set(stored), key=lambda k: (k[0], k[1], k[2])):
            want = expected.get(key, (None, Decimal(0)))[1]
            row = stored.get(key)
            have = row.committed if row is not None else Decimal(0)
            if money(have) == money(want):
                continue
            drift.append({"layer_key": key[0], "period": key[1], "period_start": key[2],
                          "stored": money(have), "ledger": money(want), "drift": money(have - want)})
            if fix:
                if row is not None:
                    BudgetUsage.objects.filter(pk=row.pk).update(committed=want)
                else:
                    BudgetUsage.objects.create(layer_key=key[0], period=key[1], period_start=key[2],
                                               period_end=expected[key][0], committed=want)
    return drift


def usage_rebuild(*, layer_keys: list[str] | None = None) -> int:
    """Set the totals of ``layer_keys`` (default: all) to the ledger's sums; returns how many changed.

    Called after a zone change moves period boundaries (``billing.signals``)."""
    return len(usage_drift(fix=True, layer_keys=layer_keys))
