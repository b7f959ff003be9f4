"""On PostgreSQL the database refuses TRUNCATE of the ledger, for every role, the owner included.

0003's row trigger refuses UPDATE and DELETE, but TRUNCATE fires no row triggers: this adds a
statement-level ``BEFORE TRUNCATE`` trigger. Only the table's owner (or a superuser) could
disable or drop it; the app connects as a role that owns nothing (``manage.py
create_app_role``, README "PostgreSQL"). On SQLite (no TRUNCATE) this is a no-op, like 0003.
"""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION billing_ledger_refuse_truncate() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'billing_ledgerentry is append-only: TRUNCATE refused (write an adjustment entry)'
        USING ERRCODE = 'insufficient_privilege';
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS billing_ledger_no_truncate ON billing_ledgerentry;
CREATE TRIGGER billing_ledger_no_truncate BEFORE TRUNCATE ON billing_ledgerentry
    FOR EACH STATEMENT EXECUTE FUNCTION billing_ledger_refuse_truncate();
"""

DROP = """
DROP TRIGGER IF EXISTS billing_ledger_no_truncate ON billing_ledgerentry;
DROP FUNCTION IF EXISTS billing_ledger_refuse_truncate();
"""


def forwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def backwards(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("billing", "0006_balancesnapshot")]
    operations = [migrations.RunPython(forwards, backwards)]
