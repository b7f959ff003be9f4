"""Concurrency on PostgreSQL with real threads, each with its own database connection."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

import pytest
from django.db import connection

from billing.models import Budget, LedgerEntry
from generations import services
from generations.models import Generation, State
from providers.base import TaskState, TaskUpdate

from .conftest import make_params

pytestmark = [
    pytest.mark.postgres, pytest.mark.django_db(transaction=True, serialized_rollback=True), pytest.mark.usefixtures("no_queue"),
]


def in_threads(n, fn):
    """Run ``fn(i)`` in ``n`` threads released together; each thread closes its own connection."""
    barrier = threading.Barrier(n)

    def run(i):
        barrier.wait()
        try:
            return fn(i)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=n) as pool:
        return list(pool.map(run, range(n)))


def test_fifty_parallel_submits_with_room_for_ten(member, apixo_account):
    Budget.objects.create(user=member, amount=Decimal("3.36"), period=Budget.Period.MONTH)  # 10 × $0.336

    def submit(i):
        try:
            services.generation_create(user=member, params=make_params(apixo_account, prompt=f"shot {i}"))
            return "ok"
        except services.GenerationRefused as exc:
            return exc.code

    outcomes = in_threads(50, submit)
    assert outcomes.count("ok") == 10 and outcomes.count("budget_exceeded") == 40
    assert LedgerEntry.objects.filter(kind="hold").count() == 10
    assert Generation.objects.count() == 10


def test_team_and_user_budgets_together_never_overspend(member, teammate, team, apixo_account):
    Budget.objects.create(team=team, amount=Decimal("1.68"), period=Budget.Period.MONTH)  # 5 × $0.336

    def submit(i):
        user = member if i % 2 else teammate
        try:
            services.generation_create(user=user, params=make_params(apixo_account, prompt=f"shot {i}"))
            return "ok"
        except services.GenerationRefused:
            return "refused"

    assert in_threads(20, submit).count("ok") == 5


def _submitted(member, apixo_account):
    generation = services.generation_create(user=member, params=make_params(apixo_account))
    Generation.objects.filter(pk=generation.pk).update(state=State.SUBMITTED, provider_task_id="task_race")
    return generation


def test_duplicate_callbacks_and_polls_racing_capture_exactly_once(member, apixo_account):
    generation = _submitted(member, apixo_account)
    success = TaskUpdate(task_id="task_race", state=TaskState.SUCCEEDED, provider_state="success", result_urls=("http://x/v.mp4",))
    outcomes = in_threads(16, lambda i: services.generation_apply_update(generation_id=generation.pk, update=success))
    assert outcomes.count("succeeded") == 1 and outcomes.count("ignored") == 15
    assert list(LedgerEntry.objects.filter(generation=generation).values_list("kind", flat=True)) == ["hold", "capture"]


def test_capture_racing_release_settles_once_and_matches_the_state(member, apixo_account):
    for _round in range(5):
        generation = _submitted(member, apixo_account)
        Generation.objects.filter(pk=generation.pk).update(provider_task_id=f"task_race_{_round}")
        success = TaskUpdate(task_id="t", state=TaskState.SUCCEEDED, provider_state="success", result_urls=("http://x/v.mp4",))
        failure = TaskUpdate(task_id="t", state=TaskState.FAILED, provider_state="failed", fail_code="X")
        def answer(i, pk=generation.pk, ok=success, ko=failure):
            return services.generation_apply_update(generation_id=pk, update=ok if i % 2 else ko)

        in_threads(10, answer)
        generation.refresh_from_db()
        kinds = list(LedgerEntry.objects.filter(generation=generation).values_list("kind", flat=True))
        assert kinds == ["hold", "capture"] if generation.state == State.SUCCEEDED else kinds == ["hold", "release"]
        assert generation.state in (State.SUCCEEDED, State.FAILED)


def test_parallel_sweeps_never_poll_a_task_twice(member, apixo_account, sandbox, settings):
    settings.HAILUO_POLL_TIME_SCALE = 1.0  # next poll far away: each generation is due exactly once
    ids = []
    for i in range(30):
        generation = services.generation_create(user=member, params=make_params(apixo_account, prompt=f"clip {i} [seconds:60]"))
        services.generation_submit(generation_id=generation.pk)
        ids.append(generation.pk)
    Generation.objects.filter(pk__in=ids).update(next_poll_at=Generation.objects.values("created_at")[:1])
    sandbox.configure(latency_ms=100)
    sandbox.reset()
    results = in_threads(4, lambda i: services.generations_poll(limit=30))
    assert sum(r.get("polled", 0) for r in results) == 30
    status_gets = [r for r in sandbox.requests("api") if "statusTask" in r["path"]]
    assert len(status_gets) == 30
    assert set(Generation.objects.filter(pk__in=ids).values_list("poll_count", flat=True)) == {1}
