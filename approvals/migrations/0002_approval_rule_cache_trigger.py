"""A change to any approval rule bumps the config counter, so each process drops its cached
rules (``billing.config_cache.approval_rule``; the counter and its function: billing 0012)."""

from django.db import migrations

INSTALL = """
DROP TRIGGER IF EXISTS billing_config_version ON approvals_approvalrule;
CREATE TRIGGER billing_config_version AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON approvals_approvalrule
  FOR EACH STATEMENT EXECUTE FUNCTION billing_bump_config_version();
"""
UNINSTALL = "DROP TRIGGER IF EXISTS billing_config_version ON approvals_approvalrule;"


def install(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(INSTALL)


def uninstall(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        with schema_editor.connection.cursor() as cursor:
            cursor.execute(UNINSTALL)


class Migration(migrations.Migration):
    dependencies = [
        ("approvals", "0001_approval_rule_and_request"),
        ("billing", "0012_config_version_cache"),
    ]

    operations = [migrations.RunPython(install, uninstall)]
