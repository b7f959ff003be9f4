"""Studio pages through Django's test client: login, price before submit, form errors, budget refusal, visibility."""

from __future__ import annotations

from decimal import Decimal

import pytest

from billing.models import Budget
from generations import services
from generations.models import Generation

from .conftest import make_params

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_queue(monkeypatch):
    monkeypatch.setattr(services, "enqueue_submit", lambda gid: None)


@pytest.fixture
def logged_in(client, member):
    client.force_login(member)
    return client


def form_data(account, **overrides):
    data = {
        "provider_account": account.pk, "model": "hailuo-2-3", "mode": "standard-text-to-video",
        "duration": 6, "resolution": "768p", "prompt": "a tiktok dancer is dancing on a small drone", "image_url": "",
    }
    data.update(overrides)
    return data


def test_login_is_required_and_signup_is_closed(client):
    assert client.get("/studio/").status_code == 302
    page = client.get("/accounts/signup/")
    assert b"Sign Up Closed" in page.content or page.status_code in (302, 403, 404)


def test_login_with_email_and_password(client, member):
    response = client.post("/accounts/login/", {"login": member.email, "password": "pw-member-123"})
    assert response.status_code == 302 and response["Location"] == "/studio/"


def test_price_is_shown_before_submit_and_follows_the_mode(logged_in, apixo_account, budget):
    page = logged_in.get("/studio/").content.decode()
    assert "$0.336" in page and "Budget left $5.00" in page
    pro = logged_in.get("/studio/form/", form_data(apixo_account, mode="pro-text-to-video")).content.decode()
    assert "$0.49" in pro and 'value="5" selected' in pro and "1080p" in pro and "768p" not in pro


def test_submit_creates_a_queued_card_and_a_hold(logged_in, apixo_account, member):
    response = logged_in.post("/studio/", form_data(apixo_account), HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    generation = Generation.objects.get()
    assert f'id="gen-{generation.pk}"' in response.content.decode() and "Queued" in response.content.decode()
    assert response["HX-Trigger"] == "budget-changed"
    assert generation.ledger_entries.get().kind == "hold"


def test_empty_prompt_is_an_error_beside_the_field(logged_in, apixo_account):
    response = logged_in.post("/studio/", form_data(apixo_account, prompt=""), HTTP_HX_REQUEST="true")
    assert response.status_code == 422
    html = response.content.decode()
    assert 'id="id_prompt_error"' in html and "APIXO: a prompt is required" in html
    assert Generation.objects.count() == 0


def test_image_mode_requires_an_image(logged_in, apixo_account):
    response = logged_in.post("/studio/", form_data(apixo_account, mode="standard-image-to-video"), HTTP_HX_REQUEST="true")
    assert 'id="id_image_url_error"' in response.content.decode()


def test_budget_refusal_is_shown_and_nothing_is_held(logged_in, apixo_account, member):
    Budget.objects.create(user=member, amount=Decimal("0.10"), period="month")
    response = logged_in.post("/studio/", form_data(apixo_account), HTTP_HX_REQUEST="true")
    html = response.content.decode()
    assert "Refused by your budget of $0.10 per month" in html and "over by $0.236" in html
    assert Generation.objects.count() == 0


def test_card_shows_failure_code_and_stops_polling_when_final(logged_in, apixo_account, member):
    generation = services.generation_create(user=member, params=make_params(apixo_account))
    live = logged_in.get(f"/g/{generation.pk}/card/").content.decode()
    assert 'hx-trigger="every 2s"' in live
    Generation.objects.filter(pk=generation.pk).update(state="failed", fail_code="PromptInvalid", fail_message="Prompt is invalid or rejected by provider")
    final = logged_in.get(f"/g/{generation.pk}/card/").content.decode()
    assert "PromptInvalid" in final and "Prompt is invalid or rejected by provider" in final
    assert "hx-trigger" not in final


def test_teammates_see_each_other_outsiders_get_404(client, apixo_account, member, teammate, outsider):
    generation = services.generation_create(user=member, params=make_params(apixo_account))
    client.force_login(teammate)
    assert client.get(f"/g/{generation.pk}/").status_code == 200
    client.force_login(outsider)
    for url in (f"/g/{generation.pk}/", f"/g/{generation.pk}/card/", f"/g/{generation.pk}/video.mp4"):
        assert client.get(url).status_code == 404
    assert str(generation.pk) not in client.get("/studio/").content.decode()
