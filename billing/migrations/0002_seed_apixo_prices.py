"""Seed APIXO's documented Hailuo 2.3 prices (seeds/001, "Billing").

Standard modes: 0.056 USD per second of output (6 s = 0.336, 10 s = 0.56).
Pro modes: 0.49 USD per task (fixed 5 s output).
hailuo-2-3-fast: the figures are NOT FOUND in the docs, so no rule is seeded: an admin
must enter one before the model can be used (the form says so).
"""

from datetime import UTC, datetime
from decimal import Decimal

from django.db import migrations

SOURCE = "APIXO Hailuo 2.3 docs, Billing table (shared/seeds/001): https://apixo.ai/docs"
VALID_FROM = datetime(2025, 1, 1, tzinfo=UTC)

RULES = [
    ("hailuo-2-3", "standard-text-to-video", "per_second", "0.056"),
    ("hailuo-2-3", "standard-image-to-video", "per_second", "0.056"),
    ("hailuo-2-3", "pro-text-to-video", "per_task", "0.49"),
    ("hailuo-2-3", "pro-image-to-video", "per_task", "0.49"),
]


def seed(apps, schema_editor):
    PriceRule = apps.get_model("billing", "PriceRule")
    for model, mode, unit, price in RULES:
        PriceRule.objects.get_or_create(
            provider_kind="apixo",
            model=model,
            mode=mode,
            resolution="",
            duration=None,
            valid_from=VALID_FROM,
            defaults={"unit": unit, "unit_price": Decimal(price), "source": SOURCE},
        )


def unseed(apps, schema_editor):
    apps.get_model("billing", "PriceRule").objects.filter(provider_kind="apixo", source=SOURCE).delete()


class Migration(migrations.Migration):
    dependencies = [("billing", "0001_initial")]
    operations = [migrations.RunPython(seed, unseed)]
