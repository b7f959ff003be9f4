"""Seed every price providers.md documents (PoYo, qingbo, PiAPI, MiniMax).

Models whose price is NOT FOUND get no rule: they are usable once an admin adds one.
"""

from datetime import UTC, datetime
from decimal import Decimal

from django.db import migrations

VALID_FROM = datetime(2025, 1, 1, tzinfo=UTC)

POYO = "PoYo capability catalogue (providers.md, PoYo): credits at 0.005 USD"
QINGBO = "qingbo price list (providers.md, qingbo): USD per second of output by resolution"
PIAPI = "PiAPI Hailuo 'Generate Video' page, Pricing (shared/seeds/004); charged on success only"
MINIMAX = "MiniMax pricing (providers.md, MiniMax): USD per video"

#: (provider, model, resolution, duration or None, unit, price, source)
RULES = [
    # PoYo hailuo-2.3: 768p 6 s = 35 credits, 768p 10 s = 70, 1080p 6 s = 60 (1 credit = 0.005 USD).
    ("poyo", "hailuo-2.3", "768p", 6, "per_task", "0.175", POYO),
    ("poyo", "hailuo-2.3", "768p", 10, "per_task", "0.35", POYO),
    ("poyo", "hailuo-2.3", "1080p", 6, "per_task", "0.30", POYO),
    # qingbo: minimax-hailuo-2.3 768p 0.05185/s, 1080p 0.0765/s; -fast 768p 0.02635/s, 1080p 0.04505/s.
    ("qingbo", "hailuo-2.3", "768p", None, "per_second", "0.05185", QINGBO),
    ("qingbo", "hailuo-2.3", "1080p", None, "per_second", "0.0765", QINGBO),
    ("qingbo", "hailuo-2.3-fast", "768p", None, "per_second", "0.02635", QINGBO),
    ("qingbo", "hailuo-2.3-fast", "1080p", None, "per_second", "0.04505", QINGBO),
    # PiAPI per task: v2.3 768 6 s 0.23, 768 10 s 0.45, 1080 6 s 0.46; v2.3-fast 0.16, 0.26, 0.26.
    ("piapi", "v2.3", "768p", 6, "per_task", "0.23", PIAPI),
    ("piapi", "v2.3", "768p", 10, "per_task", "0.45", PIAPI),
    ("piapi", "v2.3", "1080p", 6, "per_task", "0.46", PIAPI),
    ("piapi", "v2.3-fast", "768p", 6, "per_task", "0.16", PIAPI),
    ("piapi", "v2.3-fast", "768p", 10, "per_task", "0.26", PIAPI),
    ("piapi", "v2.3-fast", "1080p", 6, "per_task", "0.26", PIAPI),
    # MiniMax per video: 2.3 768P 6 s 0.28, 10 s 0.56, 1080P 6 s 0.49; 2.3-Fast 0.19, 0.32, 0.33.
    ("minimax", "MiniMax-Hailuo-2.3", "768p", 6, "per_task", "0.28", MINIMAX),
    ("minimax", "MiniMax-Hailuo-2.3", "768p", 10, "per_task", "0.56", MINIMAX),
    ("minimax", "MiniMax-Hailuo-2.3", "1080p", 6, "per_task", "0.49", MINIMAX),
    ("minimax", "MiniMax-Hailuo-2.3-Fast", "768p", 6, "per_task", "0.19", MINIMAX),
    ("minimax", "MiniMax-Hailuo-2.3-Fast", "768p", 10, "per_task", "0.32", MINIMAX),
    ("minimax", "MiniMax-Hailuo-2.3-Fast", "1080p", 6, "per_task", "0.33", MINIMAX),
]


def seed(apps, schema_editor):
    PriceRule = apps.get_model("billing", "PriceRule")
    for provider, model, resolution, duration, unit, price, source in RULES:
        PriceRule.objects.get_or_create(
            provider_kind=provider,
            model=model,
            mode="",
            resolution=resolution,
            duration=duration,
            valid_from=VALID_FROM,
            defaults={"unit": unit, "unit_price": Decimal(price), "source": source},
        )


def unseed(apps, schema_editor):
    PriceRule = apps.get_model("billing", "PriceRule")
    PriceRule.objects.filter(source__in=[POYO, QINGBO, PIAPI, MINIMAX]).delete()


class Migration(migrations.Migration):
    dependencies = [("billing", "0003_ledger_append_only_trigger")]
    operations = [migrations.RunPython(seed, unseed)]
