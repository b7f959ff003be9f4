from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("generations", "0007_idempotency_fingerprint"),
    ]

    operations = [
        migrations.AddField(
            model_name="generation",
            name="hidden_at",
            field=models.DateTimeField(
                blank=True, null=True,
                help_text="Hidden from the gallery (by its owner or a team admin); the ledger is untouched.",
            ),
        ),
    ]
