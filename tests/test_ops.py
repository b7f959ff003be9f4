"""Operating it: /healthz (readiness and liveness) and /metrics (Prometheus) after real generations."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families

from generations import services, tasks
from generations.models import Generation, State, SweepLease

from .conftest import make_params, qcluster_process, record_queue

TOKEN = "metrics-token-for-tests-0123456789"


def scrape(client, **headers) -> dict[tuple[str, tuple], float]:
    """GET /metrics with the token; returns {(sample name, sorted labels): value}."""
    response = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **headers)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(samples, name, **labels) -> float:
    """Sum of the samples called ``name`` whose labels include ``labels``."""
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


# --- /metrics -------------------------------------------------------------------------------------------------
@pytest.mark.django_db
@override_settings(HAILUO_METRICS_TOKEN=TOKEN, HAILUO_METRICS_ALLOWED_IPS=["10.0.0.0/8"])
def test_metrics_after_a_success_and_a_failure_through_the_sandbox(client, member, apixo_account, sandbox, monkeypatch):
    queue = record_queue(monkeypatch)
    before = scrape(client)
    ok = services.generation_create(user=member, params=make_params(apixo_account))
    bad = services.generation_create(user=member, params=make_params(apixo_account, prompt="a cat [fail]"))
    waiting = services.generation_create(user=member, params=make_params(apixo_account, prompt="a dog"))
    held = scrape(client)
    assert total(held, "hailuo_generations", state="queued", provider="apixo") == 3
    assert total(held, "hailuo_money_held_usd", provider="apixo") == pytest.approx(3 * 0.336)

    for generation in (ok, bad):
        services.generation_submit(generation_id=generation.pk)
    with override_settings(HAILUO_POLL_TIME_SCALE=0):
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            tasks.sweep_once()
            queue.run()
            ok.refresh_from_db(), bad.refresh_from_db()
            if ok.is_final and ok.archive_state != "pending" and bad.is_final:
                break
            time.sleep(0.1)
    assert (ok.state, ok.archive_state, bad.state) == (State.SUCCEEDED, "done", State.FAILED)
    Generation.objects.filter(pk=waiting.pk).update(
        state=State.SUBMITTED, provider_task_id="t-late", next_poll_at=timezone.now() - timezone.timedelta(seconds=90)
    )

    after = scrape(client)
    assert total(after, "hailuo_generations", state="succeeded", provider="apixo") == 1
    assert total(after, "hailuo_generations", state="failed", provider="apixo") == 1
    assert total(after, "hailuo_money_captured_usd_total", provider="apixo") == pytest.approx(float(Decimal("0.336")))
    assert total(after, "hailuo_money_held_usd", provider="apixo") == pytest.approx(0.336)  # only `waiting`'s hold
    assert total(after, "hailuo_polls_due") == 1
    assert 89 <= total(after, "hailuo_poll_lag_seconds") < 200
    assert total(after, "hailuo_archives", state="done") == 1 and total(after, "hailuo_archive_failures") == 0
    assert total(after, "hailuo_queue_depth") == 0 and total(after, "hailuo_queue_oldest_age_seconds") == 0

    def grew(name, **labels):
        return total(after, name, **labels) - total(before, name, **labels)

    assert grew("hailuo_provider_request_seconds_count", provider="apixo", operation="submit", outcome="answered") == 2
    assert grew("hailuo_provider_request_seconds_count", provider="apixo", operation="poll", outcome="answered") >= 2
    assert grew("hailuo_provider_request_seconds_sum", provider="apixo", operation="poll") > 0


@pytest.mark.django_db
@override_settings(HAILUO_METRICS_TOKEN=TOKEN)
def test_provider_errors_are_counted_by_class(client, member, apixo_account, sandbox, monkeypatch):
    record_queue(monkeypatch)
    before = scrape(client)
    refused = services.generation_create(user=member, params=make_params(apixo_account, prompt="y [http:402]"))
    services.generation_submit(generation_id=refused.pk)
    limited = services.generation_create(user=member, params=make_params(apixo_account, prompt="x [http:429]"))
    services.generation_submit(generation_id=limited.pk)  # (then the account pauses: submitted last)
    after = scrape(client)

    def grew(error_class):
        return (total(after, "hailuo_provider_errors_total", provider="apixo", operation="submit", error_class=error_class)
                - total(before, "hailuo_provider_errors_total", provider="apixo", operation="submit", error_class=error_class))

    assert grew("rate_limited") == 1 and grew("permanent") == 1 and grew("transient") == 0


@pytest.mark.django_db
def test_metrics_need_the_token_or_an_allowed_address(client, settings):
    settings.HAILUO_METRICS_TOKEN = settings.HAILUO_METRICS_ALLOWED_IPS = ""
    settings.HAILUO_METRICS_ALLOWED_IPS = []
    assert client.get("/metrics").status_code == 404  # off when neither is configured
    settings.HAILUO_METRICS_TOKEN = TOKEN
    refused = client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong")
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert client.get("/metrics").status_code == 403
    settings.HAILUO_METRICS_ALLOWED_IPS = ["127.0.0.0/8"]
    assert client.get("/metrics").status_code == 200  # the test client's REMOTE_ADDR is 127.0.0.1
    settings.HAILUO_METRICS_ALLOWED_IPS = ["10.1.2.3"]
    assert client.get("/metrics").status_code == 403


@pytest.mark.django_db
def test_callbacks_are_counted_per_provider(client, settings):
    settings.HAILUO_METRICS_TOKEN = TOKEN
    before = scrape(client)
    client.post("/hooks/apixo/00000000-0000-0000-0000-000000000000/nope/", data=b"{}", content_type="application/json")
    after = scrape(client)
    assert (total(after, "hailuo_callbacks_received_total", provider="apixo", outcome="rejected")
            - total(before, "hailuo_callbacks_received_total", provider="apixo", outcome="rejected")) == 1


# --- /healthz -------------------------------------------------------------------------------------------------
@pytest.mark.django_db
def test_healthz_reports_each_check_and_503_without_workers(client, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    assert client.get("/healthz/live").json() == {"status": "ok"}
    response = client.get("/healthz")
    body = response.json()
    assert response.status_code == 503 and body["status"] == "fail"
    assert body["checks"]["database"]["ok"] and body["checks"]["storage"]["ok"]
    assert not body["checks"]["workers"]["ok"] and "no worker cluster" in body["checks"]["workers"]["detail"]
    assert not body["checks"]["poll_sweep"]["ok"]
    assert not list(tmp_path.rglob("*.txt"))  # the storage probe cleans up

    SweepLease.objects.create(slot=0, holder="", expires_at=timezone.now() - timezone.timedelta(seconds=30))
    assert client.get("/healthz").json()["checks"]["poll_sweep"]["ok"]
    SweepLease.objects.filter(slot=0).update(expires_at=timezone.now() - timezone.timedelta(seconds=600))
    detail = client.get("/healthz").json()["checks"]["poll_sweep"]
    assert not detail["ok"] and "ended 600 s ago" in detail["detail"]


@pytest.mark.django_db
def test_healthz_storage_failure_is_reported(client, settings, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    settings.MEDIA_ROOT = blocker  # writing under a file fails
    checks = client.get("/healthz").json()["checks"]
    assert not checks["storage"]["ok"] and checks["database"]["ok"]


@pytest.mark.postgres
@pytest.mark.e2e
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_healthz_green_with_a_running_cluster(client, live_server, tmp_path, settings):
    from django.core.cache import caches

    settings.MEDIA_ROOT = tmp_path
    call_command("setup_schedules")
    # A cluster that an earlier test stopped leaves its heartbeat for 3 s (django-q2's stat
    # expiry) in the cache table, which no flush empties: it would count as a second cluster.
    caches["django_q"].clear()
    with qcluster_process(public_base_url=live_server.url, media_root=tmp_path, log_path=tmp_path / "q.log"):
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline:
            response = client.get("/healthz")
            if response.status_code == 200:
                break
            time.sleep(0.5)
        body = response.json()
        assert response.status_code == 200, body
        assert body["status"] == "ok" and all(check["ok"] for check in body["checks"].values())
        assert "1 cluster(s)" in body["checks"]["workers"]["detail"]
