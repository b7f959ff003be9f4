"""Project budgets, and running totals per budget layer and period (issue 16: a submit's cost
independent of the ledger's size). On PostgreSQL: the period functions, the ledger trigger
that keeps the totals (``billing.usage``), and the totals backfilled from the existing ledger."""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def install(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    from billing.usage import FUNCTIONS_SQL, TABLE, TRIGGER_SQL, UPSERT_SUFFIX, rows_sql

    with schema_editor.connection.cursor() as cursor:
        cursor.execute(FUNCTIONS_SQL)
        cursor.execute(TRIGGER_SQL)
        cursor.execute("LOCK TABLE billing_ledgerentry IN SHARE MODE")  # no entry slips between backfill and trigger
        cursor.execute(
            f"INSERT INTO {TABLE} (layer_key, period, period_start, period_end, committed) "
            + rows_sql("billing_ledgerentry") + UPSERT_SUFFIX
        )


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    from billing.usage import UNINSTALL_SQL

    with schema_editor.connection.cursor() as cursor:
        cursor.execute(UNINSTALL_SQL)


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0002_apitoken_scope_expiry'),
        ('billing', '0010_merge_20261201_2308'),
        ('generations', '0011_merge_20261201_2325'),
        ('teamwork', '0001_initial'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='BudgetUsage',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('layer_key', models.CharField(max_length=80)),
                ('period', models.CharField(max_length=10)),
                ('period_start', models.DateTimeField()),
                ('period_end', models.DateTimeField(blank=True, null=True)),
                ('committed', models.DecimalField(decimal_places=6, default=0, max_digits=18)),
            ],
        ),
        migrations.AddField(
            model_name='budget',
            name='project',
            field=models.ForeignKey(blank=True, help_text="A project budget: all spend booked to this project, any member (team = the project's team).", null=True, on_delete=django.db.models.deletion.CASCADE, related_name='budgets', to='teamwork.project'),
        ),
        migrations.AddConstraint(
            model_name='budget',
            constraint=models.CheckConstraint(condition=models.Q(('project__isnull', True), models.Q(('team__isnull', False), ('user__isnull', True)), _connector='OR'), name='budget_project_is_teams_not_users'),
        ),
        migrations.AddConstraint(
            model_name='budgetusage',
            constraint=models.UniqueConstraint(fields=('layer_key', 'period', 'period_start'), name='budget_usage_one_row_per_period'),
        ),
        migrations.RunPython(install, uninstall),
    ]
