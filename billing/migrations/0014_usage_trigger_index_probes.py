"""The running-totals trigger function looks each entry's generation up by a LATERAL primary-key probe and
plans with sequential scans (and JIT) off, so a plan cached while
``generations_generation`` looked empty never scans every generation for each ledger entry
(billing.usage.TRIGGER_FUNCTION_SETTINGS). ``CREATE OR REPLACE`` of the same function; the
trigger itself is unchanged."""

from django.db import migrations


def install(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    from billing.usage import TRIGGER_SQL

    with schema_editor.connection.cursor() as cursor:
        cursor.execute(TRIGGER_SQL)


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("ALTER FUNCTION billing_usage_from_ledger() RESET ALL")


class Migration(migrations.Migration):

    dependencies = [
        ("billing", "0013_config_version_sequence"),
    ]

    operations = [
        migrations.RunPython(install, uninstall),
    ]
