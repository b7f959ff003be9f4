"""On PostgreSQL the database itself refuses UPDATE and DELETE on the ledger (django-hordak's idea).

TRUNCATE fires no row trigger: migration 0007 refuses it with a statement trigger. On SQLite the model and queryset guards apply.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION billing_ledger_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'billing_ledgerentry is append-only: % refused (write an adjustment entry)', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS billing_ledger_append_only ON billing_ledgerentry;
CREATE TRIGGER billing_ledger_append_only BEFORE UPDATE OR DELETE ON billing_ledgerentry
    FOR EACH ROW EXECUTE FUNCTION billing_ledger_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS billing_ledger_append_only ON billing_ledgerentry;
DROP FUNCTION IF EXISTS billing_ledger_append_only();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("billing", "0002_seed_apixo_prices")]
    operations = [migrations.RunPython(forwards, backwards)]
