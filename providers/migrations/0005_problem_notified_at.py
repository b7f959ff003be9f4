from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("providers", "0004_failover"),
    ]

    operations = [
        migrations.AddField(
            model_name="provideraccount",
            name="problem_notified_at",
            field=models.DateTimeField(
                blank=True, editable=False, null=True,
                help_text="When staff were last emailed about an account-level problem (402 no credit, 401 bad key).",
            ),
        ),
        migrations.AddField(
            model_name="provideraccount",
            name="problem_note",
            field=models.CharField(
                blank=True, default="", editable=False, max_length=300,
                help_text="The last account-level problem staff were told about.",
            ),
        ),
    ]
