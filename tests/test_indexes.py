"""The hot tables carry no index that another one already covers, and lose none they need.

Every INSERT writes every index of its table (issue 16 dropped the single-column indexes that a
composite one leading with the same column covers: generations ``0015``, ledger ``0015``). What
must stay: each foreign-key column leads a full (not partial) index, so the check a PROTECTed
delete runs, and every lookup by that column, probes an index instead of scanning the table.
"""

from __future__ import annotations

import pytest
from django.db import connection

from billing.models import LedgerEntry
from generations.models import Generation, GenerationEvent

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

HOT = [Generation, LedgerEntry, GenerationEvent]


def _indexes(table: str) -> list[tuple[str, list[str], bool, bool]]:
    """(name, key columns in order, partial?, unique?) of each index on ``table``."""
    with connection.cursor() as cursor:
        cursor.execute(
            """
            SELECT i.relname,
                   ARRAY(SELECT a.attname FROM unnest(x.indkey) WITH ORDINALITY k(attnum, n)
                         JOIN pg_attribute a ON a.attrelid = x.indrelid AND a.attnum = k.attnum ORDER BY k.n),
                   x.indpred IS NOT NULL, x.indisunique
            FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid
            WHERE t.relname = %s
            """,
            [table],
        )
        return [(name, list(cols), partial, unique) for name, cols, partial, unique in cursor.fetchall()]


@pytest.mark.parametrize("model", HOT, ids=lambda m: m.__name__)
def test_each_foreign_key_leads_a_full_index(model):
    indexes = _indexes(model._meta.db_table)
    for field in model._meta.concrete_fields:
        if field.is_relation:
            leading = [name for name, cols, partial, _ in indexes if cols and cols[0] == field.column and not partial]
            assert leading, f"{model.__name__}.{field.name}: no full index leads with {field.column}"


@pytest.mark.parametrize("model", HOT, ids=lambda m: m.__name__)
def test_no_single_column_index_is_the_prefix_of_another(model):
    """A plain one-column index on a column that a wider full index leads with is dead weight
    (unique and partial indexes enforce or serve something of their own, and are left alone)."""
    indexes = _indexes(model._meta.db_table)
    for name, cols, partial, unique in indexes:
        if len(cols) != 1 or partial or unique:
            continue
        wider = [other for other, ocols, opartial, _ in indexes if len(ocols) > 1 and ocols[0] == cols[0] and not opartial]
        assert not wider, f"{name} on {cols[0]} is covered by {wider}"
