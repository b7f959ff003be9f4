"""The budget layers of one submit, locked, each with its use this period: two queries.

``ledger_hold`` needs, under locks: the user row locked (it stands for the member's own and
default layers), the site-wide policy, whether an unlimited grant applies, every active budget
row that applies (locked ``FOR UPDATE``), and each layer's committed spend this period. On
PostgreSQL that is one query for the user lock, the policy, the grant and the default's
running total, and one for the budget rows with their running totals (``billing.usage``);
elsewhere :func:`billing.selectors.budget_layers_for` and ``billing.usage.committed_for``.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal
from functools import lru_cache

from billing.models import Budget, SpendingPolicy
from billing.money import money
from config import hotsql

#: The :class:`BudgetUsage` layer key of a ``billing_budget`` row, in SQL (``billing.usage.layer_key``).
_LAYER_KEY = (
    "CASE WHEN billing_budget.project_id IS NOT NULL THEN 'project:' || billing_budget.project_id "
    "WHEN billing_budget.user_id IS NOT NULL AND billing_budget.team_id IS NOT NULL "
    "THEN 'member:' || billing_budget.user_id || ':team:' || billing_budget.team_id "
    "WHEN billing_budget.team_id IS NOT NULL THEN 'team:' || billing_budget.team_id "
    "ELSE 'user:' || billing_budget.user_id END"
)
_ROW_USED = (
    "SELECT u.committed FROM billing_budgetusage u WHERE u.layer_key = (" + _LAYER_KEY + ") "
    "AND u.period = billing_budget.period AND u.period_start = billing_period_start(billing_budget.period, "
    "COALESCE((SELECT NULLIF(t.time_zone, '') FROM accounts_team t WHERE t.id = billing_budget.team_id), %s), %s)"
)
_DEFAULT_USED = (
    "SELECT x.committed FROM billing_budgetusage x WHERE x.layer_key = %s AND x.period = %s "
    "AND x.period_start = billing_period_start(%s, %s, %s)"
)


def _lock_sql(scope_sql: str) -> str:
    """Lock every applicable budget row (by id) and then the user row, and read the policy and the
    grant, in one statement. The sub-SELECT's locks are taken while the row is projected, before
    the user row's: every submit locks budgets (ascending id) and then its user, so two submits
    never wait on each other in opposite orders."""
    return f"""
SELECT u.id, p.id, p.default_amount, p.default_period, p.default_hard, p.alert_thresholds,
       EXISTS (SELECT 1 FROM billing_unlimitedgrant g WHERE g.user_id = u.id OR g.team_id = %s),
       ARRAY(SELECT b.id FROM billing_budget b WHERE b.active AND ({scope_sql}) ORDER BY b.id FOR UPDATE)
FROM accounts_user u LEFT JOIN billing_spendingpolicy p ON p.id = 1
WHERE u.id = %s
FOR UPDATE OF u
"""


@lru_cache(maxsize=1)
def _rows_sql() -> tuple[str, tuple[str, ...], tuple[str, ...], tuple[str, ...]]:
    """The budget rows by id with their team and project (what the messages name) and their
    running totals, hand-written once per process from the models' columns."""
    from accounts.models import Team
    from teamwork.models import Project

    budget_cols, budget_names = hotsql.columns(Budget, "billing_budget")
    team_cols, team_names = hotsql.columns(Team, "bt")
    project_cols, project_names = hotsql.columns(Project, "bp")
    sql = (
        f"SELECT {budget_cols}, {team_cols}, {project_cols}, ({_ROW_USED}), ({_DEFAULT_USED}) "
        f"FROM {Budget._meta.db_table} LEFT JOIN {Team._meta.db_table} bt ON bt.id = billing_budget.team_id "
        f"LEFT JOIN {Project._meta.db_table} bp ON bp.id = billing_budget.project_id "
        "WHERE billing_budget.id = ANY(%s) ORDER BY billing_budget.id"
    )
    return sql, budget_names, team_names, project_names


def _budget_rows(ids, *, user, primary_zone: str, now: datetime, default_params: list):
    """``(budgets, used by id(budget), the default layer's running total)`` for the locked ``ids``:
    one prepared statement. A budget's ``user`` is the submitting ``user`` (the scope admits no
    other), its ``team`` and ``project`` come from the same row; ``created_by`` stays lazy."""
    from accounts.models import Team
    from teamwork.models import Project

    sql, budget_names, team_names, project_names = _rows_sql()
    with hotsql.hot_cursor() as cursor:
        cursor.execute(sql, [*[primary_zone, now], *default_params, list(ids)])
        rows = cursor.fetchall()
    nb, nt, np_ = len(budget_names), len(team_names), len(project_names)
    budgets, used, default_used = [], {}, None
    for row in rows:
        budget = hotsql.load(Budget, budget_names, row[:nb])
        if budget.user_id is not None:
            budget.user = user
        if budget.team_id is not None:
            budget.team = hotsql.load(Team, team_names, row[nb:nb + nt])
        if budget.project_id is not None:
            budget.project = hotsql.load(Project, project_names, row[nb + nt:nb + nt + np_])
        used[id(budget)] = money(row[-2] or 0)
        default_used = row[-1]
        budgets.append(budget)
    return budgets, used, default_used


def locked_layers(*, user, team_id, project_id, now: datetime) -> tuple[list[Budget], dict[int, Decimal], SpendingPolicy]:
    """``(budgets, used, policy)`` for a submit by ``user`` (a User, its ``primary_team`` read
    once) booked to ``team_id`` and ``project_id``, inside the caller's transaction.

    ``budgets``: the rows (own, member-in-team, team, project; by id; locked), then the default
    when it applies (``billing.selectors.default_budget_for``'s rule); ``used``: committed spend
    this period (USD) by ``id(budget)``; ``policy``: the spending policy (its thresholds feed the
    alerts). Two statements: the locks (with the policy and the grant), then the rows and their
    running totals, read after the locks are held (a statement that waits for a row lock still
    reads the rest from its start, so the totals must come from a later one). PostgreSQL only.
    """
    primary = user.primary_team
    primary_zone = (primary.time_zone if primary else "") or "UTC"
    scope = ["(b.user_id = %s AND b.team_id IS NULL)"]
    params: list = [user.pk]
    if team_id:
        scope += ["(b.user_id = %s AND b.team_id = %s)", "(b.user_id IS NULL AND b.team_id = %s AND b.project_id IS NULL)"]
        params += [user.pk, team_id, team_id]
    if project_id:
        scope.append("(b.project_id = %s)")
        params.append(project_id)
    with hotsql.hot_cursor() as cursor:  # prepared after a few uses (one statement per scope shape)
        cursor.execute(_lock_sql(" OR ".join(scope)), [team_id, *params, user.pk])
        _, policy_id, default_amount, default_period, default_hard, thresholds, granted, ids = cursor.fetchone()
    if isinstance(thresholds, str):  # Django's psycopg setup hands jsonb over as text
        thresholds = json.loads(thresholds)
    if policy_id is None:
        policy = SpendingPolicy(pk=1, default_amount=None)
    else:
        policy = SpendingPolicy(pk=1, default_amount=default_amount, default_period=default_period,
                                default_hard=default_hard, alert_thresholds=thresholds)
    period = policy.default_period
    default_params = [f"user:{user.pk}", period, period, primary_zone, now]
    budgets: list[Budget] = []
    default_used = None
    used: dict[int, Decimal] = {}
    if ids:
        budgets, used, default_used = _budget_rows(ids, user=user, primary_zone=primary_zone, now=now, default_params=default_params)
    elif policy.default_amount is not None and not granted:
        with hotsql.hot_cursor() as cursor:
            cursor.execute(_DEFAULT_USED, default_params)
            row = cursor.fetchone()
        default_used = row[0] if row else None
    for b in budgets:
        if b.user_id and not b.team_id:
            b.user.note_primary_team(primary)
    has_own = any(b.user_id and not b.team_id for b in budgets)
    if policy.default_amount is not None and not has_own and not granted:
        default = Budget(user=user, amount=policy.default_amount, period=policy.default_period, hard=policy.default_hard)
        default.is_default = True
        budgets.append(default)
        used[id(default)] = money(default_used or 0)
    return budgets, used, policy
