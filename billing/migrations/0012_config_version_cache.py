"""The counter that lets each process cache provider accounts and price rules (billing.config_cache)."""

from django.db import migrations, models


def install(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    from billing.config_cache import TRIGGERS_SQL

    with schema_editor.connection.cursor() as cursor:
        cursor.execute(TRIGGERS_SQL)


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    from billing.config_cache import UNINSTALL_SQL

    with schema_editor.connection.cursor() as cursor:
        cursor.execute(UNINSTALL_SQL)


class Migration(migrations.Migration):

    dependencies = [
        ('billing', '0011_budget_project_usage'),
        ('providers', '0005_problem_notified_at'),
    ]

    operations = [
        migrations.CreateModel(
            name='ConfigVersion',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('n', models.BigIntegerField(default=0)),
            ],
        ),
        migrations.RunPython(install, uninstall),
    ]
