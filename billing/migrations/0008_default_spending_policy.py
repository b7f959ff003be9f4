"""A fresh install ships a hard default budget of $50 per month, alerts at 50/80/100 % (README "Money")."""

from decimal import Decimal

from django.db import migrations


def create_policy(apps, schema_editor):
    SpendingPolicy = apps.get_model("billing", "SpendingPolicy")
    SpendingPolicy.objects.get_or_create(
        pk=1,
        defaults={"default_amount": Decimal("50"), "default_period": "month", "default_hard": True, "alert_thresholds": [50, 80, 100]},
    )


class Migration(migrations.Migration):
    dependencies = [("billing", "0007_budget_layers_policy_alerts")]

    operations = [migrations.RunPython(create_policy, migrations.RunPython.noop)]
