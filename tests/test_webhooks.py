"""Outbound webhooks over real loopback HTTP: Standard Webhooks signatures (checked by the
``standardwebhooks`` library), a generation through the APIXO sandbox firing one delivery,
backoff driven by a controllable clock, the SSRF guard, disabling with an email, redeliver,
the API's visibility rules and the studio page."""

from __future__ import annotations

import json
import threading
import time
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.core import mail
from django.utils import timezone
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from accounts.models import Membership
from generations import services as generation_services
from generations import tasks as generation_tasks
from webhooks import emit, services, signing
from webhooks.models import Attempt, Delivery, Endpoint

from .conftest import make_params, record_queue

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


class Receiver:
    """A loopback HTTP server taking POSTs: records ``(path, headers, body text)`` and answers ``status``."""

    def __init__(self, status: int = 200, answer: bytes = b'{"received": true}'):
        self.status = status
        self.answer = answer
        self.requests: list[tuple[str, dict, str]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's spelling)
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                receiver.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}, body.decode()))
                self.send_response(receiver.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(receiver.answer)))
                self.end_headers()
                self.wfile.write(receiver.answer)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/hooks/hailuo"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def hooks_queue(monkeypatch):
    """What webhooks would hand to django-q2, recorded: ``(delivery_id, attempt, manual)``; ``run(now=)`` performs it."""

    class Queue(list):
        def run(self, now=None) -> list[str]:
            results = []
            while self:
                delivery_id, attempt, manual = self.pop(0)
                results.append(services.delivery_attempt(delivery_id=delivery_id, attempt=attempt, manual=manual, now=now))
            return results

    queue = Queue()
    monkeypatch.setattr(services, "enqueue_delivery", lambda d, attempt=None, manual=False: queue.append((d, attempt, manual)))
    return queue


def auth(token):
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def register(user, url, events=("generation.succeeded", "generation.failed", "budget.threshold_reached"), **kwargs):
    return services.endpoint_create(actor=user, url=url, events=list(events), **kwargs)


def test_signature_is_verified_by_the_standardwebhooks_library(member, receiver, hooks_queue):
    endpoint, secret = register(member, receiver.url)
    assert secret.startswith("whsec_") and endpoint.secret == secret
    deliveries = emit("budget.threshold_reached", user=member, team=None,
                      payload={"budget_id": 7, "threshold_percent": 80, "committed_usd": "4.000000"})
    assert len(deliveries) == 1
    assert hooks_queue.run() == ["succeeded"]
    [(path, headers, body)] = receiver.requests
    assert path == "/hooks/hailuo" and headers["content-type"] == "application/json"
    assert headers["webhook-id"] == deliveries[0].pk and headers["webhook-signature"].startswith("v1,")
    message = Webhook(secret).verify(body, headers)  # the reference verifier, as a receiver would
    assert message["type"] == "budget.threshold_reached" and message["data"]["committed_usd"] == "4.000000"
    assert message["timestamp"].endswith("Z")
    assert signing.verify(secret, msg_id=headers["webhook-id"], timestamp=int(headers["webhook-timestamp"]), body=body,
                          signature_header=headers["webhook-signature"])
    with pytest.raises(WebhookVerificationError):
        Webhook(secret).verify(body.replace("4.000000", "0.000000"), headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(services.endpoint_rotate_secret(endpoint)).verify(body, headers)
    attempt = Attempt.objects.get(delivery=deliveries[0])
    assert (attempt.number, attempt.status_code, attempt.ok, attempt.response_excerpt) == (1, 200, True, '{"received": true}')


def test_a_generation_through_the_apixo_sandbox_fires_exactly_one_delivery(
    member, apixo_account, sandbox, receiver, hooks_queue, monkeypatch, media_root, settings
):
    settings.HAILUO_PUBLIC_BASE_URL = "https://studio.example.com"
    settings.HAILUO_POLL_TIME_SCALE = 0
    register(member, receiver.url)
    register(member, receiver.url + "?other", events=["generation.canceled"])  # not subscribed to success
    generations_queue = record_queue(monkeypatch)
    generation = generation_services.generation_create(user=member, params=make_params(apixo_account))
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        generation_tasks.sweep_once()
        generations_queue.run()
        generation.refresh_from_db()
        if generation.state == "succeeded" and generation.archive_state != "pending":
            break
        time.sleep(0.1)
    assert generation.has_video
    hooks_queue.run()
    assert Delivery.objects.count() == 1
    [(_, headers, body)] = receiver.requests
    message = json.loads(body)
    data = message["data"]
    assert message["type"] == "generation.succeeded"
    assert data["id"] == str(generation.pk) and data["state"] == "succeeded" and data["provider"] == "apixo"
    assert data["model"] == "hailuo-2-3" and data["price_usd"] == "0.336000" and data["charged_usd"] == "0.336000"
    assert data["url"] == f"https://studio.example.com/api/v1/generations/{generation.pk}"
    assert data["video_url"] == data["url"] + "/video" and data["archive_state"] == "done"
    assert data["completed_at"].endswith("Z") and data["fail_code"] == ""
    # Later sweeps and events send nothing more.
    generation_tasks.sweep_once()
    services.deliveries_sweep()
    hooks_queue.run()
    assert len(receiver.requests) == 1 and Delivery.objects.get().status == "succeeded"


def test_a_failure_fires_generation_failed_with_the_providers_code(member, apixo_account, sandbox, receiver, hooks_queue,
                                                                    monkeypatch, settings):
    settings.HAILUO_POLL_TIME_SCALE = 0
    register(member, receiver.url)
    generations_queue = record_queue(monkeypatch)
    generation = generation_services.generation_create(
        user=member, params=make_params(apixo_account, prompt="a cat on a sunny window sill [fail:SensitiveContentDetected]")
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and generation.state != "failed":
        generation_tasks.sweep_once()
        generations_queue.run()
        generation.refresh_from_db()
        time.sleep(0.1)
    hooks_queue.run()
    [(_, _, body)] = receiver.requests
    data = json.loads(body)["data"]
    assert json.loads(body)["type"] == "generation.failed"
    assert data["fail_code"] == "SensitiveContentDetected" and data["charged_usd"] is None and data["video_url"] is None


def test_a_failing_receiver_is_retried_with_backoff_for_over_a_day(member, receiver, hooks_queue):
    receiver.status = 503
    endpoint, _ = register(member, receiver.url)
    t0 = timezone.now()
    [delivery] = services.emit("budget.threshold_reached", user=member, payload={"n": 1}, now=t0)
    assert hooks_queue.run(now=t0) == ["pending"]
    clock = t0
    expected = [5, 300, 1800, 7200, 18000, 36000, 36000]
    for number, delay in enumerate(expected, start=2):
        delivery.refresh_from_db()
        assert delivery.next_attempt_at == clock + timedelta(seconds=delay)
        assert services.deliveries_sweep(now=clock + timedelta(seconds=delay - 1))["enqueued"] == 0  # not yet due
        clock += timedelta(seconds=delay)
        assert services.deliveries_sweep(now=clock)["enqueued"] == 1
        assert services.deliveries_sweep(now=clock)["enqueued"] == 0  # claimed: not handed out twice
        [status] = hooks_queue.run(now=clock)
        assert status == ("failed" if number == 8 else "pending")
    assert (clock - t0).total_seconds() >= 24 * 3600
    attempts = list(Attempt.objects.filter(delivery=delivery).order_by("number"))
    assert [a.number for a in attempts] == list(range(1, 9))
    assert all(a.status_code == 503 and not a.ok and a.response_excerpt == '{"received": true}' for a in attempts)
    assert len(receiver.requests) == 8 and len({h["webhook-id"] for _, h, _ in receiver.requests}) == 1
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.failing_since == t0  # 27.6 h of failures: under the 3-day window


def test_one_attempt_is_never_claimed_twice(member, receiver, hooks_queue):
    register(member, receiver.url)
    [delivery] = emit("budget.threshold_reached", user=member, payload={})
    first, second = Delivery.objects.get(pk=delivery.pk), Delivery.objects.get(pk=delivery.pk)
    assert services.claim(first) == 1
    assert services.claim(second) is None  # same counter read: the conditional UPDATE matched nothing
    assert services.claim(Delivery.objects.get(pk=delivery.pk), manual=True) is None  # leased: no concurrent redeliver
    # The enqueued unclaimed hand-over finds its attempt taken and sends nothing.
    assert hooks_queue.run() == ["pending"] and receiver.requests == []


def test_ssrf_guard_refuses_private_endpoints(member, api_token, client, receiver, hooks_queue, settings):
    response = client.post("/api/v1/webhooks", {"url": "http://10.1.2.3/hook", "events": ["generation.failed"]},
                           content_type="application/json", **auth(api_token))
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error" and "url" in body["fields"]
    for url in ("http://169.254.169.254/latest/meta-data/", "file:///etc/passwd", "http://[::1]:80/"):
        with pytest.raises(Exception) as refused:
            register(member, url)
        assert refused.value.code == "validation_error"
    # Registered while allowed, then the allow-list changes: the delivery is refused at send time.
    register(member, receiver.url)
    settings.HAILUO_ALLOWED_PRIVATE_HOSTS = []
    with pytest.raises(Exception) as refused:
        register(member, receiver.url)
    assert refused.value.fields["url"]
    emit("budget.threshold_reached", user=member, payload={})
    assert hooks_queue.run() == ["pending"]
    assert receiver.requests == []
    assert Attempt.objects.get().error.startswith("Refused by the SSRF guard")


def test_an_endpoint_failing_for_the_window_is_disabled_and_its_owner_emailed(member, receiver, hooks_queue):
    receiver.status = 500
    endpoint, _ = register(member, receiver.url)
    t0 = timezone.now()
    services.emit("budget.threshold_reached", user=member, payload={"n": 1}, now=t0)
    hooks_queue.run(now=t0)
    later = t0 + timedelta(days=2)
    services.emit("budget.threshold_reached", user=member, payload={"n": 2}, now=later)
    hooks_queue.run(now=later)
    endpoint.refresh_from_db()
    assert endpoint.enabled and not mail.outbox
    end = t0 + timedelta(days=3, seconds=1)
    services.emit("budget.threshold_reached", user=member, payload={"n": 3}, now=end)
    hooks_queue.run(now=end)
    endpoint.refresh_from_db()
    assert not endpoint.enabled and "every attempt failed since" in endpoint.disabled_reason
    [message] = mail.outbox
    assert message.to == [member.email] and endpoint.url in message.body and "disabled" in message.subject
    assert not Delivery.objects.filter(status="pending").exists()  # the retries stop
    assert services.emit("budget.threshold_reached", user=member, payload={}) == []  # nothing new is queued
    # Enabled again: the failure record is cleared.
    services.endpoint_update(endpoint, enabled=True)
    endpoint.refresh_from_db()
    assert endpoint.enabled and endpoint.failing_since is None and endpoint.disabled_reason == ""


def test_team_endpoint_disabled_emails_the_team_admins(member, teammate, team, receiver, hooks_queue):
    Membership.objects.filter(user=teammate, team=team).update(role=Membership.Role.TEAM_ADMIN)
    endpoint, _ = register(teammate, receiver.url, team_id=team.pk)
    receiver.status = 500
    t0 = timezone.now()
    for at in (t0, t0 + timedelta(days=3, seconds=1)):
        services.emit("budget.threshold_reached", team=team, payload={}, now=at)
        hooks_queue.run(now=at)
    [message] = mail.outbox
    assert message.to == [teammate.email]


def test_redeliver_and_test_ping_through_the_api(member, api_token, client, receiver, hooks_queue):
    created = client.post("/api/v1/webhooks", {"url": receiver.url, "events": ["budget.threshold_reached"]},
                          content_type="application/json", **auth(api_token))
    assert created.status_code == 201, created.content
    webhook = created.json()
    secret = webhook["secret"]
    receiver.status = 500
    emit("budget.threshold_reached", user=member, payload={"n": 1})
    hooks_queue.run()
    [delivery] = client.get(f"/api/v1/webhooks/{webhook['id']}/deliveries", **auth(api_token)).json()["items"]
    assert delivery["status"] == "pending" and delivery["attempt_log"][0]["status_code"] == 500
    receiver.status = 200
    url = f"/api/v1/webhooks/{webhook['id']}/deliveries/{delivery['id']}/redeliver"
    response = client.post(url, **auth(api_token))
    assert response.status_code == 202 and response.json()["attempts"] == 2
    again = client.post(url, **auth(api_token))  # the first redelivery is claimed and not sent yet
    assert again.status_code == 409 and again.json()["code"] == "delivery_in_progress"
    assert hooks_queue.run() == ["succeeded"]
    assert [h["webhook-id"] for _, h, _ in receiver.requests] == [delivery["id"]] * 2  # same message id
    Webhook(secret).verify(receiver.requests[-1][2], receiver.requests[-1][1])
    log = client.get(f"/api/v1/webhooks/{webhook['id']}/deliveries/{delivery['id']}", **auth(api_token)).json()
    assert log["status"] == "succeeded" and [(a["number"], a["manual"], a["ok"]) for a in log["attempt_log"]] == [
        (1, False, False), (2, True, True)]
    ping = client.post(f"/api/v1/webhooks/{webhook['id']}/test", **auth(api_token))
    assert ping.status_code == 202 and ping.json()["event_type"] == "webhook.test"
    assert hooks_queue.run() == ["succeeded"]
    assert json.loads(receiver.requests[-1][2])["type"] == "webhook.test"


def test_api_crud_and_secret_rotation(member, api_token, client, receiver):
    created = client.post("/api/v1/webhooks", {"url": receiver.url, "events": ["generation.succeeded"], "description": "CMS"},
                          content_type="application/json", **auth(api_token)).json()
    assert created["secret"].startswith("whsec_") and created["secret_last4"] == created["secret"][-4:]
    listing = client.get("/api/v1/webhooks", **auth(api_token)).json()
    assert [w["id"] for w in listing] == [created["id"]] and "secret" not in listing[0]
    patched = client.patch(f"/api/v1/webhooks/{created['id']}", {"events": ["generation.failed", "nope"]},
                           content_type="application/json", **auth(api_token))
    assert patched.status_code == 422 and patched.json()["fields"]["events"]
    patched = client.patch(f"/api/v1/webhooks/{created['id']}", {"enabled": False, "events": ["generation.failed"]},
                           content_type="application/json", **auth(api_token)).json()
    assert patched["enabled"] is False and patched["events"] == ["generation.failed"]
    rotated = client.post(f"/api/v1/webhooks/{created['id']}/rotate-secret", **auth(api_token)).json()["secret"]
    assert rotated != created["secret"] and Endpoint.objects.get().secret == rotated
    assert client.delete(f"/api/v1/webhooks/{created['id']}", **auth(api_token)).status_code == 204
    assert client.get(f"/api/v1/webhooks/{created['id']}", **auth(api_token)).status_code == 404


def test_others_endpoints_are_404(member, teammate, outsider, team, client, receiver):
    from accounts.models import ApiToken

    mine, _ = register(member, receiver.url)
    _, outsider_token = ApiToken.issue(user=outsider)
    _, mate_token = ApiToken.issue(user=teammate)
    base = f"/api/v1/webhooks/{mine.pk}"
    for token in (outsider_token, mate_token):
        for method, path in (("get", base), ("patch", base), ("delete", base), ("post", base + "/test"),
                             ("get", base + "/deliveries"), ("post", base + "/rotate-secret")):
            response = getattr(client, method)(path, {} if method != "get" else None, content_type="application/json", **auth(token))
            assert response.status_code == 404, (method, path)
            assert response.json()["code"] == "not_found"
        assert client.get("/api/v1/webhooks", **auth(token)).json() == []
    # Team endpoints: a plain member may not register one (403); another team is not visible (404).
    forbidden = client.post("/api/v1/webhooks", {"url": receiver.url, "events": ["generation.failed"], "team_id": team.pk},
                            content_type="application/json", **auth(mate_token))
    assert forbidden.status_code == 403 and forbidden.json()["code"] == "forbidden"
    other_team = outsider.memberships.get().team_id
    hidden = client.post("/api/v1/webhooks", {"url": receiver.url, "events": ["generation.failed"], "team_id": other_team},
                         content_type="application/json", **auth(mate_token))
    assert hidden.status_code == 404
    Membership.objects.filter(user=teammate, team=team).update(role=Membership.Role.TEAM_ADMIN)
    made = client.post("/api/v1/webhooks", {"url": receiver.url, "events": ["generation.failed"], "team_id": team.pk},
                       content_type="application/json", **auth(mate_token))
    assert made.status_code == 201 and made.json()["owner"] == "team"
    # The team's endpoint is the admins' to manage; the member who owns the generations does not see it.
    assert [w["id"] for w in client.get("/api/v1/webhooks", **auth(mate_token)).json()] == [made.json()["id"]]
    assert client.get(f"/api/v1/webhooks/{made.json()['id']}", **auth(outsider_token)).status_code == 404
    # Studio pages answer 404 too.
    client.force_login(outsider)
    assert client.get(f"/webhooks/{mine.pk}/").status_code == 404
    assert client.post(f"/webhooks/{mine.pk}/delete/").status_code == 404
    assert Endpoint.objects.filter(pk=mine.pk).exists()


def test_studio_page_renders_creates_and_shows_the_secret_once(member, client, receiver, hooks_queue):
    client.force_login(member)
    page = client.get("/webhooks/")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'href="/webhooks/"' in html and "Register an endpoint" in html and "js/webhooks.js" in html
    assert "<script>" not in html  # no inline script
    refused = client.post("/webhooks/", {"url": "http://10.0.0.8/x", "events": ["generation.failed"], "owner": "me", "enabled": "on"})
    assert refused.status_code == 422 and "cannot receive webhooks" in refused.content.decode()
    response = client.post("/webhooks/", {"url": receiver.url, "events": ["generation.succeeded", "generation.failed"],
                                          "description": "My CMS", "owner": "me", "enabled": "on"})
    endpoint = Endpoint.objects.get()
    assert response.status_code == 302 and response["Location"] == f"/webhooks/{endpoint.pk}/"
    detail = client.get(response["Location"]).content.decode()
    assert endpoint.secret in detail and "shown only this once" in detail
    assert endpoint.secret not in client.get(response["Location"]).content.decode()  # once
    assert endpoint.user == member and endpoint.events == ["generation.succeeded", "generation.failed"]
    assert client.post(f"/webhooks/{endpoint.pk}/test/").status_code == 302
    hooks_queue.run()
    assert json.loads(receiver.requests[0][2])["type"] == "webhook.test"
    log = client.get(f"/webhooks/{endpoint.pk}/").content.decode()
    assert "webhook.test" in log and "HTTP 200" in log
    delivery = Delivery.objects.get()
    assert client.post(f"/webhooks/{endpoint.pk}/deliveries/{delivery.pk}/redeliver/").status_code == 302
    hooks_queue.run()
    assert len(receiver.requests) == 2
    edited = client.post(f"/webhooks/{endpoint.pk}/", {"url": receiver.url, "events": ["generation.canceled"], "description": "x"})
    assert edited.status_code == 302
    endpoint.refresh_from_db()
    assert endpoint.events == ["generation.canceled"] and not endpoint.enabled
    assert client.post(f"/webhooks/{endpoint.pk}/delete/").status_code == 302 and not Endpoint.objects.exists()


def test_cancel_and_needs_reconciliation_fire_their_events_and_a_rollback_fires_none(
    member, apixo_account, sandbox, receiver, hooks_queue, no_queue
):
    from django.db import transaction

    from generations.models import GenerationEvent, State

    register(member, receiver.url, events=["generation.canceled", "generation.needs_reconciliation", "generation.failed"])
    canceled = generation_services.generation_create(user=member, params=make_params(apixo_account))
    assert generation_services.generation_cancel(generation_id=canceled.pk, user=member) == State.CANCELED
    stuck = generation_services.generation_create(user=member, params=make_params(apixo_account, prompt="another prompt"))
    from generations.models import Generation

    Generation.objects.filter(pk=stuck.pk).update(state=State.SUBMITTING, updated_at=timezone.now() - timedelta(hours=1))
    assert generation_services.generations_stuck_submitting() == 1
    # A state change whose transaction rolls back sends nothing.
    with pytest.raises(RuntimeError), transaction.atomic():
        GenerationEvent.objects.create(generation_id=stuck.pk, state="failed", message="rolled back")
        raise RuntimeError
    hooks_queue.run()
    sent = [(json.loads(body)["type"], json.loads(body)["data"]["id"]) for _, _, body in receiver.requests]
    assert sent == [("generation.canceled", str(canceled.pk)), ("generation.needs_reconciliation", str(stuck.pk))]
