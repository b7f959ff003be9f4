"""The config counter's numbers come from a sequence: never given twice, a rollback included
(billing.config_cache.SEQUENCE_SQL)."""

from django.db import migrations


def install(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    from billing.config_cache import SEQUENCE_SQL

    with schema_editor.connection.cursor() as cursor:
        cursor.execute(SEQUENCE_SQL)


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    from billing.config_cache import SEQUENCE_UNINSTALL_SQL

    with schema_editor.connection.cursor() as cursor:
        cursor.execute(SEQUENCE_UNINSTALL_SQL)


class Migration(migrations.Migration):

    dependencies = [
        ("billing", "0012_config_version_cache"),
    ]

    operations = [
        migrations.RunPython(install, uninstall),
    ]
