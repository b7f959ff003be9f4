"""REST API /api/v1: bearer tokens, create with idempotency keys, read, list, stable error codes."""

from __future__ import annotations

import pytest
from django.core.management import call_command

from accounts.models import ApiToken
from generations.models import Generation

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("no_queue")]

BODY = {
    "model": "hailuo-2-3",
    "mode": "standard-text-to-video",
    "prompt": "一只白猫慵懒地躺在阳光下的窗台上",
    "duration": 6,
    "resolution": "768p",
}


def auth(token):
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


def create(client, token, account, **extra_headers):
    return client.post(
        "/api/v1/generations", {**BODY, "provider_account_id": account.pk}, content_type="application/json",
        **auth(token), **extra_headers,
    )


def test_without_or_with_a_bad_token_is_401_with_a_stable_code(client, apixo_account):
    for headers in ({}, auth("hs_nope")):
        response = client.get("/api/v1/generations", **headers)
        assert response.status_code == 401
        assert response.json()["code"] == "unauthorized"


def test_create_read_list(client, api_token, apixo_account, member):
    response = create(client, api_token, apixo_account)
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["state"] == "queued" and data["price_usd"] == "0.336000" and data["video_url"] is None
    one = client.get(f"/api/v1/generations/{data['id']}", **auth(api_token)).json()
    assert one["id"] == data["id"] and one["prompt"] == BODY["prompt"]
    listing = client.get("/api/v1/generations", **auth(api_token)).json()
    assert [g["id"] for g in listing["items"]] == [data["id"]] and listing["next"] is None


def test_idempotency_key_replays_and_conflicts(client, api_token, apixo_account):
    first = create(client, api_token, apixo_account, HTTP_IDEMPOTENCY_KEY="job-42")
    again = create(client, api_token, apixo_account, HTTP_IDEMPOTENCY_KEY="job-42")
    assert (first.status_code, again.status_code) == (201, 201)  # a replay answers the original status
    assert first.json()["id"] == again.json()["id"] and again["Idempotent-Replayed"] == "true"
    assert Generation.objects.count() == 1
    conflict = client.post(
        "/api/v1/generations", {**BODY, "duration": 10, "provider_account_id": apixo_account.pk},
        content_type="application/json", HTTP_IDEMPOTENCY_KEY="job-42", **auth(api_token),
    )
    assert conflict.status_code == 409 and conflict.json()["code"] == "idempotency_conflict"


def test_validation_error_names_the_field(client, api_token, apixo_account):
    response = client.post(
        "/api/v1/generations", {**BODY, "duration": 8, "provider_account_id": apixo_account.pk},
        content_type="application/json", **auth(api_token),
    )
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "validation_error"
    assert body["fields"]["duration"] == ["APIXO: Standard text-to-video takes 6 or 10 seconds"]


def test_malformed_body_is_invalid_request(client, api_token):
    response = client.post("/api/v1/generations", {"prompt": 3}, content_type="application/json", **auth(api_token))
    assert response.status_code == 422 and response.json()["code"] == "invalid_request"


def test_budget_refusal_is_402(client, api_token, apixo_account, member):
    from decimal import Decimal

    from billing.models import Budget

    Budget.objects.create(user=member, amount=Decimal("0.30"), period="month")
    response = create(client, api_token, apixo_account)
    assert response.status_code == 402 and response.json()["code"] == "budget_exceeded"
    assert "over by $0.036" in response.json()["message"]


def test_another_teams_generation_is_404(client, api_token, apixo_account, outsider):
    data = create(client, api_token, apixo_account).json()
    _, other_token = ApiToken.issue(user=outsider)
    assert client.get(f"/api/v1/generations/{data['id']}", **auth(other_token)).status_code == 404


def test_create_api_token_command_prints_a_token_whose_hash_only_is_stored(member, capsys, client):
    call_command("create_api_token", member.email)
    raw = capsys.readouterr().out.strip()
    assert raw.startswith("hs_")
    assert not ApiToken.objects.filter(token_hash=raw).exists()
    assert client.get("/api/v1/generations", **auth(raw)).status_code == 200


def test_openapi_docs_are_served(client):
    assert client.get("/api/v1/openapi.json").json()["info"]["title"] == "Hailuo Studio API"
    assert client.get("/api/v1/docs").status_code == 200


def test_providers_endpoint_lists_capabilities(client, api_token, apixo_account):
    data = client.get("/api/v1/providers", **auth(api_token)).json()
    account = next(a for a in data if a["id"] == apixo_account.pk)
    model = next(m for m in account["models"] if m["id"] == "hailuo-2-3")
    mode = next(m for m in model["modes"] if m["id"] == "pro-text-to-video")
    assert mode["combos"] == [[5, "1080p"]] and mode["image"] == "none"
    assert any(o["name"] == "provider" and o["choices"] == ["auto", "value", "official"] for o in mode["options"])
