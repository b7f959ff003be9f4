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

from django.db import connection
from django.db.models.expressions import RawSQL

from billing.models import Budget, SpendingPolicy
from billing.money import money

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
    with connection.cursor() as cursor:
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
    if ids:
        rows = (
            Budget.objects.filter(pk__in=ids)
            .select_related("team", "user", "created_by", "project")
            .annotate(used=RawSQL(_ROW_USED, [primary_zone, now]), default_used=RawSQL(_DEFAULT_USED, default_params))
            .order_by("id")
        )
        budgets = list(rows)
        default_used = budgets[0].default_used if budgets else None
    elif policy.default_amount is not None and not granted:
        with connection.cursor() as cursor:
            cursor.execute(_DEFAULT_USED, default_params)
            row = cursor.fetchone()
        default_used = row[0] if row else None
    used = {id(b): money(b.used or 0) for b in budgets}
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
