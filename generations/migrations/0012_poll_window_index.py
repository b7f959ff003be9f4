"""The poll sweep's claim index (issue 16): one account's due polls by next_poll_at."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("generations", "0011_merge_20261201_2325"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="generation",
            index=models.Index(
                condition=models.Q(("state__in", ["submitted", "running", "expired"]), models.Q(("provider_task_id", ""), _negated=True)),
                fields=["provider_account", "next_poll_at"],
                name="generation_account_due_poll",
            ),
        ),
    ]
