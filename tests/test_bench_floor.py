"""Issue 16: ``bench/submit_throughput.py``'s submit floor (``bench.urls.submit_floor``) is a
submit's own database work, so the bound the bench prints from it holds.

The floor replays the statements recorded from a real submit for a new generation id in one
round trip. If it wrote less than a submit does (a row, an index entry, the running totals),
the floor would be cheaper than any real submit could be and the bound would mean nothing:
each row it writes is compared with the row the real submit wrote.
"""

from __future__ import annotations

import json

import pytest

from bench import urls as bench_urls
from bench.submit_throughput import BODY
from billing.models import LedgerEntry
from billing.usage import committed_for
from config.middleware import API_STACK_PATHS
from generations.models import Generation, GenerationEvent

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

_COMPARED = ("user_id", "team_id", "provider_account_id", "provider_kind", "model", "mode", "prompt", "duration",
             "resolution", "options", "state", "quoted_amount", "price_rule", "project_id", "batch_id")


@pytest.fixture
def floor_urls(settings):
    settings.ROOT_URLCONF = "bench.urls"
    settings.HAILUO_API_STACK_PATHS = (*API_STACK_PATHS, "/bench/submit-floor")
    bench_urls._PLAN.clear()  # plans are per process and user: none from another test's rolled-back rows
    yield
    bench_urls._PLAN.clear()


def _post(client, token, account):
    return client.post("/bench/submit-floor", json.dumps(dict(BODY, provider_account_id=account.pk)),
                       content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")


def test_the_floor_writes_the_rows_a_submit_writes(floor_urls, client, api_token, member, apixo_account, budget):
    answer = _post(client, api_token, apixo_account)
    assert answer.status_code == 201, answer.content
    floor = Generation.objects.get(pk=answer.json()["id"])
    # The floor recorded the second of two real submits (the first warms the caches).
    real = Generation.objects.exclude(pk=floor.pk).order_by("-created_at").first()
    assert Generation.objects.count() == 3
    assert real.pk == bench_urls._PLAN[member.pk][2]
    assert {f: getattr(floor, f) for f in _COMPARED} == {f: getattr(real, f) for f in _COMPARED}
    assert floor.created_at > real.created_at  # its own time, not the recorded one

    assert [(e.state, e.message) for e in GenerationEvent.objects.filter(generation=floor)] == [
        (e.state, e.message) for e in GenerationEvent.objects.filter(generation=real)
    ]
    holds = {h.generation_id: h for h in LedgerEntry.objects.filter(kind=LedgerEntry.Kind.HOLD)}
    assert set(holds) == set(Generation.objects.values_list("pk", flat=True))
    assert holds[floor.pk].amount == holds[real.pk].amount == real.quoted_amount
    assert holds[floor.pk].price_rule == holds[real.pk].price_rule
    # The ledger's trigger kept the running totals for the floor's hold too: three holds committed.
    assert committed_for([budget]) == [3 * real.quoted_amount]

    again = _post(client, api_token, apixo_account)
    assert again.status_code == 201 and again.json()["id"] not in {str(floor.pk), str(real.pk)}
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.HOLD).count() == 4


def test_the_floor_needs_the_token(floor_urls, client, apixo_account):
    answer = _post(client, "not-a-token", apixo_account)
    assert answer.status_code == 401
    assert not Generation.objects.exists()
