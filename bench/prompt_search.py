#!/usr/bin/env python
"""Gallery prompt search: p50/p95 of a rare-word search over ``--rows`` generations (PostgreSQL).

Prints figures; it is not a test. See bench/README.md ("prompt_search.py").

    scripts/with-postgres.sh .venv/bin/python bench/prompt_search.py [--rows 1000000] [--reps 40]

1. Migrates the throwaway database (``generations.0008`` creates pg_trgm and the GIN index on
   ``UPPER(prompt)``) and fills ``--rows`` generations of one team through ``COPY ... FROM STDIN``:
   prompts of 8-14 words from a 2,000-word vocabulary; one row in 10,000 also holds the rare
   word "zanzibar". ``ANALYZE``.
2. Times ``generations.selectors.gallery_page`` (exactly what the gallery view calls: one page
   of 24, newest first) for the rare word, for a common word and with no search, ``--reps``
   times each, and counts its queries.
3. Drops the trigram index and times the rare-word search again (the fallback without pg_trgm),
   in the same run.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

RARE = "zanzibar"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rows", type=int, default=1_000_000, help="generations (default 1,000,000)")
    p.add_argument("--reps", type=int, default=40, help="searches timed per case (default 40)")
    return p.parse_args(argv)


def fill(rows: int):
    from django.core.management import call_command
    from django.db import connection, transaction

    from accounts.models import Membership, Team, User
    from bench.export_ledger import _Rows
    from generations.models import Generation, State
    from providers.models import ProviderAccount

    call_command("migrate", verbosity=0)
    if Generation.objects.exists():
        raise SystemExit("the database already has generations: use a throwaway database (scripts/with-postgres.sh)")
    user = User.objects.create_user("bench@example.com", "x")
    team = Team.objects.create(name="Bench", time_zone="UTC")
    Membership.objects.create(user=user, team=team)
    account = ProviderAccount(kind="apixo", label="bench")
    account.set_api_key("sk-bench-0001")
    account.save()
    rng = random.Random(16)
    letters = "abcdefghijklmnopqrstuvwxyz"
    vocab = ["".join(rng.choice(letters) for _ in range(rng.randrange(3, 10))) for _ in range(2000)]
    vocab = [w for w in vocab if RARE not in w] + ["cat"] * 50  # "cat": a common word
    keys = ("id", "user_id", "team_id", "provider_account_id", "provider_kind", "model", "mode", "prompt", "duration",
            "resolution", "state", "quoted_amount", "price_rule", "created_at", "updated_at")
    prepared = _Rows(Generation, keys, connection)
    start = datetime(2026, 1, 1, tzinfo=UTC)
    started = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        with cursor.cursor.copy(f'COPY {Generation._meta.db_table} ({", ".join(prepared.columns)}) FROM STDIN') as copy:
            for i in range(rows):
                words = rng.choices(vocab, k=rng.randrange(8, 15))
                if i % 10_000 == 5_000:
                    words.insert(rng.randrange(len(words)), RARE.capitalize())
                at = start + timedelta(seconds=i * 20)
                copy.write_row(prepared.row(dict(
                    id=uuid.UUID(int=(0xA5 << 120) + i), user_id=user.pk, team_id=team.pk, provider_account_id=account.pk,
                    provider_kind="apixo", model="hailuo-2-3", mode="standard-text-to-video", prompt=" ".join(words),
                    duration=6, resolution="768p", state=State.SUCCEEDED, quoted_amount=Decimal("0.056000"),
                    price_rule={"unit_price": "0.056"}, created_at=at, updated_at=at,
                )))
        cursor.execute("ANALYZE generations_generation")
    return user, time.perf_counter() - started


def timed(user, q: str, reps: int) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from accounts.models import Membership
    from generations.selectors import GalleryFilters, gallery_page

    team_ids = list(Membership.objects.filter(user=user).values_list("team_id", flat=True))
    filters = GalleryFilters(q=q)
    gallery_page(user=user, filters=filters, size=24, team_ids=team_ids)  # warm the cache
    samples = []
    for _ in range(reps):
        started = time.perf_counter()
        with CaptureQueriesContext(connection) as queries:
            page = gallery_page(user=user, filters=filters, size=24, team_ids=team_ids)
        samples.append((time.perf_counter() - started) * 1000)
    samples.sort()
    return {"q": q or "(none)", "hits": len(page.items), "queries": len(queries), "p50": statistics.median(samples),
            "p95": samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))], "plan": plan(user, team_ids, q)}


def plan(user, team_ids, q: str) -> str:
    from generations.selectors import GalleryFilters, filter_generations, generations_visible_to

    qs = filter_generations(generations_visible_to(user=user, team_ids=team_ids), GalleryFilters(q=q))
    text = qs.order_by("-created_at", "-id")[:25].explain()
    return "; ".join(line.strip() for line in text.splitlines() if "Scan" in line)


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")
    if not os.environ.get("DATABASE_URL"):
        raise SystemExit("PostgreSQL only: run it under scripts/with-postgres.sh")
    import django

    django.setup()
    from django.db import connection

    print(f"filling {args.rows:,} generations ...", flush=True)
    user, seconds = fill(args.rows)
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_indexes WHERE indexname = 'generations_prompt_trgm'")
        indexed = cursor.fetchone()[0] == 1
        cursor.execute("SELECT version()")
        version = cursor.fetchone()[0].split(" on ")[0]
    print(f"  {args.rows:,} generations in {seconds:.0f} s; {version}; trigram index: {indexed}", flush=True)
    results = [dict(timed(user, RARE, args.reps), index="pg_trgm GIN"), dict(timed(user, "cat", args.reps), index="pg_trgm GIN"),
               dict(timed(user, "", args.reps), index="pg_trgm GIN")]
    with connection.cursor() as cursor:
        cursor.execute("DROP INDEX IF EXISTS generations_prompt_trgm")
    results.append(dict(timed(user, RARE, max(5, args.reps // 8)), index="none (fallback)"))
    print()
    print(f"| search ({args.rows:,} generations) | index | hits on the page | queries | p50 | p95 | plan |")
    print("|---|---|---:|---:|---:|---:|---|")
    for r in results:
        print(f"| {r['q']} | {r['index']} | {r['hits']} | {r['queries']} | {r['p50']:.1f} ms | {r['p95']:.1f} ms | {r['plan']} |")
    rare, fallback = results[0], results[-1]
    print(f"\nrare word p95 {rare['p95']:.1f} ms with the index (goal < 100 ms: {rare['p95'] < 100}); "
          f"without it {fallback['p95']:.1f} ms ({fallback['p95'] / rare['p95']:.0f}x slower)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
