"""The running-totals trigger's plan (``billing.usage``, issue 16): each ledger entry's
generation is found by a primary-key probe, never by scanning the generations.

PL/pgSQL plans the trigger's statement once per connection, from the statistics of that
moment. On a young database the generations table looks empty, and a join to it became a
sequential scan (or, with sequential scans merely discouraged, a full scan of its primary
key) for every hold, capture and release, kept while the table grew: ~0.85 ms a hold at 850
generations, linear in the table. This test database's generations table is such a table.
"""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from billing.usage import TRIGGER_FUNCTION_SETTINGS, rows_sql

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]


def test_the_trigger_function_plans_with_sequential_scans_off():
    with connection.cursor() as cursor:
        cursor.execute("SELECT proconfig FROM pg_proc WHERE proname = 'billing_usage_from_ledger'")
        (config,) = cursor.fetchone()
    assert config == ["enable_seqscan=off", "jit=off"]


def test_the_generation_of_each_new_entry_is_an_index_probe_whatever_the_statistics(member, apixo_account):
    from generations import services
    from tests.conftest import make_params

    generation = services.generation_create(user=member, params=make_params(apixo_account))  # a hold: one ledger entry
    with transaction.atomic(), connection.cursor() as cursor:
        for setting in TRIGGER_FUNCTION_SETTINGS.split("SET ")[1:]:
            cursor.execute(f"SET LOCAL {setting}")
        cursor.execute("CREATE TEMP TABLE new_rows ON COMMIT DROP AS SELECT * FROM billing_ledgerentry WHERE generation_id = %s",
                       [generation.pk])
        cursor.execute("EXPLAIN " + rows_sql("new_rows"))
        plan = "\n".join(row[0] for row in cursor.fetchall())
    assert "Seq Scan on generations_generation" not in plan, plan
    assert "Index Scan using generations_generation_pkey on generations_generation g" in plan, plan
    assert "Index Cond: (id = e.generation_id)" in plan, plan  # a probe, not a full scan of the index
