"""Issue 13, the REST API for scripts: each bug reproduced first, then what was built.

Video and poster with the bearer token, self-service tokens (scope, expiry, revoke, last
use written at most once a minute), cancel and retry with the studio's rules, keyset pages
with the gallery's filters, idempotency bound to the whole body, a rate limit per token,
JSON errors everywhere under /api/.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.core.management import call_command
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import ApiToken, Membership
from generations.models import Generation, State

pytestmark = pytest.mark.django_db

BODY = {
    "model": "hailuo-2-3",
    "mode": "standard-text-to-video",
    "prompt": "a white cat lazing on a sunny windowsill",
    "duration": 6,
    "resolution": "768p",
}
VIDEO_BYTES = bytes(range(256)) * 40  # 10 240 bytes


@pytest.fixture(autouse=True)
def _no_queue_and_fresh_limits(monkeypatch):
    from generations import services

    monkeypatch.setattr(services, "enqueue_submit", lambda gid: None)
    cache.clear()
    yield
    cache.clear()


def auth(token):
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def create(client, token, account, body=None, **headers):
    return client.post(
        "/api/v1/generations", {**BODY, "provider_account_id": account.pk, **(body or {})},
        content_type="application/json", **auth(token), **headers,
    )


def archived(generation_id, settings, tmp_path) -> Generation:
    settings.MEDIA_ROOT = tmp_path
    g = Generation.objects.get(pk=generation_id)
    g.video.save("v.mp4", ContentFile(VIDEO_BYTES), save=False)
    g.poster.save("p.jpg", ContentFile(b"\xff\xd8\xff\xe0JPEG"), save=False)
    g.archive_state = "done"
    g.state = State.SUCCEEDED
    g.save()
    return g


# --- video and poster with the bearer token ------------------------------------------------
def test_video_url_is_downloadable_with_the_bearer_token_with_ranges(client, api_token, apixo_account, settings, tmp_path):
    gid = create(client, api_token, apixo_account).json()["id"]
    archived(gid, settings, tmp_path)
    data = client.get(f"/api/v1/generations/{gid}", **auth(api_token)).json()
    assert data["video_url"] == f"http://testserver/api/v1/generations/{gid}/video"
    assert data["poster_url"] == f"http://testserver/api/v1/generations/{gid}/poster"
    # The bug: the studio's route answered a bearer token with a 302 to the login page.
    whole = client.get(data["video_url"], **auth(api_token))
    assert whole.status_code == 200 and whole["Content-Type"] == "video/mp4" and whole["Accept-Ranges"] == "bytes"
    assert b"".join(whole.streaming_content) == VIDEO_BYTES
    part = client.get(data["video_url"], HTTP_RANGE="bytes=100-199", **auth(api_token))
    assert part.status_code == 206 and part["Content-Range"] == f"bytes 100-199/{len(VIDEO_BYTES)}"
    assert b"".join(part.streaming_content) == VIDEO_BYTES[100:200]
    past = client.get(data["video_url"], HTTP_RANGE="bytes=999999-", **auth(api_token))
    assert past.status_code == 416 and past.json()["code"] == "range_not_satisfiable"
    assert past["Content-Range"] == f"bytes */{len(VIDEO_BYTES)}"
    poster = client.get(data["poster_url"], **auth(api_token))
    assert poster.status_code == 200 and b"".join(poster.streaming_content).startswith(b"\xff\xd8")
    download = client.get(data["video_url"] + "?download=true", **auth(api_token))
    from generations.models import Generation
    from generations.views import download_name

    assert download["Content-Disposition"] == f'attachment; filename="{download_name(Generation.objects.get(pk=gid))}"'
    assert download["Content-Disposition"].endswith(f'{Generation.objects.get(pk=gid).created_at:%Y-%m-%d}.mp4"')


def test_video_of_another_team_or_not_yet_archived_is_404(client, api_token, apixo_account, outsider, settings, tmp_path):
    gid = create(client, api_token, apixo_account).json()["id"]
    not_yet = client.get(f"/api/v1/generations/{gid}/video", **auth(api_token))
    assert not_yet.status_code == 404 and not_yet.json()["code"] == "not_found"
    archived(gid, settings, tmp_path)
    _, other = ApiToken.issue(user=outsider)
    for what in ("video", "poster"):
        response = client.get(f"/api/v1/generations/{gid}/{what}", **auth(other))
        assert response.status_code == 404 and response.json()["code"] == "not_found"


# --- tokens ------------------------------------------------------------------------------------
def test_tokens_self_service_create_list_revoke(client, api_token, member):
    created = client.post(
        "/api/v1/tokens", {"name": "nightly", "scope": "read"}, content_type="application/json", **auth(api_token)
    )
    assert created.status_code == 201, created.content
    body = created.json()
    secret = body["token"]
    assert secret.startswith("hs_") and body["scope"] == "read" and body["active"] and body["last4"] == secret[-4:]
    assert not ApiToken.objects.filter(token_hash=secret).exists()  # only the hash is stored
    listing = client.get("/api/v1/tokens", **auth(secret)).json()
    assert {t["name"] for t in listing} == {"tests", "nightly"}
    assert all("token" not in t for t in listing)  # the secret is shown once
    # A read-scoped token reads but may not write.
    refused = client.post("/api/v1/tokens", {"name": "x"}, content_type="application/json", **auth(secret))
    assert refused.status_code == 403 and refused.json()["code"] == "insufficient_scope"
    revoked = client.delete(f"/api/v1/tokens/{body['id']}", **auth(api_token))
    assert revoked.status_code == 200 and revoked.json()["active"] is False
    after = client.get("/api/v1/generations", **auth(secret))
    assert after.status_code == 401 and after.json()["code"] == "unauthorized"


def test_expired_token_is_401_and_past_expiry_is_refused(client, api_token, member):
    row, raw = ApiToken.issue(user=member, name="old", expires_at=timezone.now() + timedelta(hours=1))
    assert client.get("/api/v1/tokens", **auth(raw)).status_code == 200
    ApiToken.objects.filter(pk=row.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert client.get("/api/v1/tokens", **auth(raw)).status_code == 401
    past = client.post(
        "/api/v1/tokens", {"name": "x", "expires_at": "2001-01-01T00:00:00Z"}, content_type="application/json", **auth(api_token)
    )
    assert past.status_code == 422 and past.json()["fields"]["expires_at"]


def test_someone_elses_token_cannot_be_revoked(client, api_token, outsider):
    row, _ = ApiToken.issue(user=outsider, name="theirs")
    assert client.delete(f"/api/v1/tokens/{row.pk}", **auth(api_token)).status_code == 404
    assert ApiToken.objects.get(pk=row.pk).revoked_at is None


def test_last_used_is_written_at_most_once_a_minute(client, api_token):
    row = ApiToken.objects.get(name="tests")
    client.get("/api/v1/tokens", **auth(api_token))
    first = ApiToken.objects.get(pk=row.pk).last_used_at
    assert first is not None
    with CaptureQueriesContext(connection) as queries:
        client.get("/api/v1/tokens", **auth(api_token))
    assert not [q for q in queries.captured_queries if q["sql"].startswith("UPDATE")]
    assert ApiToken.objects.get(pk=row.pk).last_used_at == first
    ApiToken.objects.filter(pk=row.pk).update(last_used_at=first - timedelta(minutes=2))
    client.get("/api/v1/tokens", **auth(api_token))
    assert ApiToken.objects.get(pk=row.pk).last_used_at > first - timedelta(minutes=1)


def test_create_api_token_command_takes_name_scope_expiry(member, capsys, client):
    call_command("create_api_token", member.email, "--name", "ci", "--scope", "read", "--expires", "30")
    raw = capsys.readouterr().out.strip()
    row = ApiToken.objects.get(name="ci")
    assert row.scope == "read" and timedelta(days=29) < row.expires_at - timezone.now() <= timedelta(days=30)
    assert client.get("/api/v1/generations", **auth(raw)).status_code == 200


def test_studio_token_page_shows_the_secret_once_and_revokes(client, member):
    client.force_login(member)
    page = client.post("/tokens/", {"name": "cms", "scope": "read_write", "expires_in_days": "7"})
    assert page.status_code == 200
    secret = page.context["created_secret"]
    assert secret.startswith("hs_") and secret in page.content.decode()
    again = client.get("/tokens/")
    assert secret not in again.content.decode() and "cms" in again.content.decode()
    row = ApiToken.objects.get(name="cms")
    assert client.post("/tokens/", {"revoke": str(row.pk)}).status_code == 302
    assert ApiToken.objects.get(pk=row.pk).revoked_at is not None
    assert "API tokens" in client.get("/studio/").content.decode()


def test_staff_revoke_any_token_in_admin(client, member, django_user_model):
    admin_user = django_user_model.objects.create_superuser("root@example.com", "pw-root-123")
    row, _ = ApiToken.issue(user=member, name="theirs")
    client.force_login(admin_user)
    listing = client.get("/admin/accounts/apitoken/")
    assert listing.status_code == 200 and "theirs" in listing.content.decode()
    client.post("/admin/accounts/apitoken/", {"action": "revoke", "_selected_action": [row.pk]})
    assert ApiToken.objects.get(pk=row.pk).revoked_at is not None


# --- cancel and retry --------------------------------------------------------------------------
def test_cancel_and_retry_through_the_api(client, api_token, apixo_account):
    gid = create(client, api_token, apixo_account).json()["id"]
    canceled = client.post(f"/api/v1/generations/{gid}/cancel", **auth(api_token))
    assert canceled.status_code == 200 and canceled.json()["state"] == "canceled"
    twice = client.post(f"/api/v1/generations/{gid}/cancel", **auth(api_token))
    assert twice.status_code == 409 and twice.json()["code"] == "cannot_cancel"
    not_failed = client.post(f"/api/v1/generations/{gid}/retry", **auth(api_token))
    assert not_failed.status_code == 409 and not_failed.json()["code"] == "cannot_retry"
    Generation.objects.filter(pk=gid).update(state=State.FAILED)
    retried = client.post(f"/api/v1/generations/{gid}/retry", **auth(api_token))
    assert retried.status_code == 201 and retried.json()["id"] != gid and retried.json()["prompt"] == BODY["prompt"]


def test_only_owner_or_team_admin_may_cancel_in_api_and_studio(client, api_token, apixo_account, teammate, team, outsider):
    gid = create(client, api_token, apixo_account).json()["id"]
    _, mate = ApiToken.issue(user=teammate)
    assert client.get(f"/api/v1/generations/{gid}", **auth(mate)).status_code == 200  # teammates see it
    refused = client.post(f"/api/v1/generations/{gid}/cancel", **auth(mate))
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    client.force_login(teammate)
    assert client.post(f"/g/{gid}/cancel/").status_code == 403
    assert Generation.objects.get(pk=gid).state == State.QUEUED
    _, other = ApiToken.issue(user=outsider)
    assert client.post(f"/api/v1/generations/{gid}/cancel", **auth(other)).status_code == 404
    Membership.objects.filter(user=teammate, team=team).update(role=Membership.Role.TEAM_ADMIN)
    assert client.post(f"/api/v1/generations/{gid}/cancel", **auth(mate)).json()["state"] == "canceled"


# --- keyset pages and filters -------------------------------------------------------------------
def test_cursor_pages_and_filters(client, api_token, apixo_account):
    ids = [create(client, api_token, apixo_account, {"prompt": f"shot {i} of a red car"}).json()["id"] for i in range(5)]
    Generation.objects.filter(pk=ids[0]).update(state=State.FAILED)
    seen, cursor = [], None
    while True:
        page = client.get("/api/v1/generations", {"limit": 2, **({"cursor": cursor} if cursor else {})}, **auth(api_token)).json()
        seen += [g["id"] for g in page["items"]]
        cursor = page["next"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    failed = client.get("/api/v1/generations", {"state": "failed"}, **auth(api_token)).json()
    assert [g["id"] for g in failed["items"]] == [ids[0]]
    searched = client.get("/api/v1/generations", {"q": "shot 3"}, **auth(api_token)).json()
    assert [g["id"] for g in searched["items"]] == [ids[3]]
    today = timezone.now().date().isoformat()
    assert len(client.get("/api/v1/generations", {"created_from": today, "provider": "apixo"}, **auth(api_token)).json()["items"]) == 5
    assert client.get("/api/v1/generations", {"model": "nope"}, **auth(api_token)).json()["items"] == []


@pytest.mark.parametrize(
    "query, code",
    [
        ("limit=-1", "invalid_request"), ("limit=0", "invalid_request"), ("limit=abc", "invalid_request"),
        ("limit=100000", "invalid_request"), ("state=bogus", "invalid_request"), ("created_from=2025-13-45", "invalid_request"),
        ("cursor=garbage", "invalid_cursor"), ("cursor=99999999999999999999999.abc", "invalid_cursor"),
        ("created_to=9999-12-31", "invalid_request"), ("q=%00", "invalid_request"),
    ],
)
def test_bad_list_parameters_are_422_never_500(client, api_token, query, code):
    response = client.get(f"/api/v1/generations?{query}", **auth(api_token))
    assert response.status_code == 422, response.content
    assert response.json()["code"] == code


def test_offset_is_no_longer_a_parameter_and_never_500(client, api_token):
    """The issue's ``offset=-1`` (a 500 before): pages are keyset now, so ``offset`` is an unknown
    parameter: 422 with a stable code, naming it."""
    response = client.get("/api/v1/generations?offset=-1", **auth(api_token))
    assert response.status_code == 422 and response.json()["code"] == "unknown_parameter"
    assert list(response.json()["fields"]) == ["offset"]


# --- idempotency -----------------------------------------------------------------------------
def test_idempotency_key_too_long_is_400(client, api_token, apixo_account):
    response = create(client, api_token, apixo_account, HTTP_IDEMPOTENCY_KEY="k" * 256)
    assert response.status_code == 400 and response.json()["code"] == "idempotency_key_too_long"
    assert create(client, api_token, apixo_account, HTTP_IDEMPOTENCY_KEY="k" * 255).status_code == 201


def test_idempotency_key_bound_to_the_whole_body_options_included(client, api_token, apixo_account):
    first = create(client, api_token, apixo_account, {"options": {"provider": "value"}}, HTTP_IDEMPOTENCY_KEY="job-1")
    assert first.status_code == 201, first.content
    other = create(client, api_token, apixo_account, {"options": {"provider": "official"}}, HTTP_IDEMPOTENCY_KEY="job-1")
    assert other.status_code == 409 and other.json()["code"] == "idempotency_conflict"
    assert Generation.objects.count() == 1


def test_replay_returns_the_original_status_and_body_with_a_header(client, api_token, apixo_account):
    first = create(client, api_token, apixo_account, HTTP_IDEMPOTENCY_KEY="job-2")
    Generation.objects.filter(pk=first.json()["id"]).update(state=State.RUNNING, progress=40)
    again = create(client, api_token, apixo_account, HTTP_IDEMPOTENCY_KEY="job-2")
    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json() and again["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first


# --- rate limit ------------------------------------------------------------------------------
def test_rate_limit_per_token_is_429_with_retry_after(client, api_token, member, settings):
    settings.HAILUO_API_RATE_LIMIT = "3/min"
    for _ in range(3):
        assert client.get("/api/v1/tokens", **auth(api_token)).status_code == 200
    limited = client.get("/api/v1/tokens", **auth(api_token))
    assert limited.status_code == 429 and limited.json()["code"] == "rate_limited"
    assert 1 <= int(limited["Retry-After"]) <= 60
    _, other = ApiToken.issue(user=member, name="second")
    assert client.get("/api/v1/tokens", **auth(other)).status_code == 200  # per token


def test_rate_limit_allows_the_burst_then_one_request_per_interval(monkeypatch, settings):
    """``3/min``: three at once, then one every 20 s; the refusal says how long to wait, and the
    wait belongs to the thread that was refused (gthread workers share the throttle object)."""
    import threading
    from types import SimpleNamespace

    import config.api
    from config.api import TokenRateThrottle

    settings.HAILUO_API_RATE_LIMIT = "3/min"
    clock = [1_000.0]
    monkeypatch.setattr(config.api.time, "time", lambda: clock[0])
    throttle = TokenRateThrottle("HAILUO_API_RATE_LIMIT")
    request = SimpleNamespace(api_token=SimpleNamespace(pk=4242), method="GET")
    assert [throttle.allow_request(request) for _ in range(4)] == [True, True, True, False]
    assert throttle.wait() == pytest.approx(20.0)
    seen = []
    thread = threading.Thread(target=lambda: seen.append(throttle.wait()))
    thread.start()
    thread.join()
    assert seen == [None]
    clock[0] += 19.0
    assert not throttle.allow_request(request) and throttle.wait() == pytest.approx(1.0)
    clock[0] += 1.0
    assert throttle.allow_request(request) and throttle.wait() is None
    assert not throttle.allow_request(request)
    clock[0] += 60.0  # a quiet minute refills the whole burst
    assert [throttle.allow_request(request) for _ in range(4)] == [True, True, True, False]


def test_write_rate_limit_counts_writes_only(client, api_token, settings):
    settings.HAILUO_API_WRITE_RATE_LIMIT = "1/min"
    assert client.post("/api/v1/tokens", {"name": "a"}, content_type="application/json", **auth(api_token)).status_code == 201
    assert client.post("/api/v1/tokens", {"name": "b"}, content_type="application/json", **auth(api_token)).status_code == 429
    assert client.get("/api/v1/tokens", **auth(api_token)).status_code == 200


# --- JSON errors everywhere under /api/ ---------------------------------------------------------
@pytest.mark.parametrize("path", ["/api/v1/generations/", "/api/v1/nope", "/api/v2/generations", "/api/"])
def test_unknown_and_trailing_slash_paths_are_json_404(client, api_token, path):
    response = client.get(path, **auth(api_token))
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert response.json() == {"code": "not_found", "message": "Not Found.", "fields": {}}


def test_wrong_method_is_json_405_with_allow(client, api_token):
    response = client.put("/api/v1/generations", **auth(api_token))
    assert response.status_code == 405 and response.json()["code"] == "method_not_allowed"
    assert "GET" in response["Allow"]


def test_server_error_is_json_500(client, api_token, monkeypatch):
    from accounts import api as accounts_api

    def boom(**kwargs):
        raise RuntimeError("boom")

    monkeypatch.setattr(accounts_api, "api_tokens_of", boom)
    client.raise_request_exception = False
    response = client.get("/api/v1/tokens", **auth(api_token))
    assert response.status_code == 500 and response.json()["code"] == "server_error"
    assert "boom" not in response.content.decode()


def test_every_operation_documents_summary_examples_and_errors(client):
    schema = client.get("/api/v1/openapi.json").json()
    for path, methods in schema["paths"].items():
        for method, operation in methods.items():
            where = f"{method.upper()} {path}"
            assert operation.get("summary"), where
            codes = set(operation["responses"])
            assert {"401", "429"} <= codes, where
            if method != "get":
                assert "403" in codes, where
    assert schema["components"]["schemas"]["ErrorOut"]["properties"]["code"]["examples"]


def test_an_unknown_query_parameter_is_refused_with_its_name(client, api_token):
    """A typo in a query parameter answers 422 ``unknown_parameter`` naming it (schemathesis found
    ``?=true`` listed everything); the declared ones still work."""
    typo = client.get("/api/v1/generations?stat=failed", **auth(api_token))
    assert typo.status_code == 422
    assert typo.json()["code"] == "unknown_parameter" and list(typo.json()["fields"]) == ["stat"]
    empty = client.get("/api/v1/generations?=true", **auth(api_token))
    assert empty.status_code == 422 and empty.json()["code"] == "unknown_parameter"
    assert client.get("/api/v1/generations?state=failed&limit=5", **auth(api_token)).status_code == 200
