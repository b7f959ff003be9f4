"""``GET /api/v1/budgets`` and ``PUT /api/v1/projects/{id}/budget`` (billing/budgets_api.py).

The listed use equals the ledger's holds to the cent; another team is refused; a project
budget set through the API is a real layer: the next submit over it is refused naming it.
"""

from __future__ import annotations

from decimal import Decimal

import pytest

from accounts.models import ApiToken, Membership, User
from billing.models import Budget, LedgerEntry, SpendingPolicy
from teamwork.models import Project

pytestmark = [pytest.mark.django_db, pytest.mark.postgres, pytest.mark.usefixtures("no_queue")]

BODY = {"model": "hailuo-2-3", "mode": "standard-text-to-video", "prompt": "a paper boat on a rainy street",
        "duration": 6, "resolution": "768p"}


def auth(token: str) -> dict:
    return {"HTTP_AUTHORIZATION": f"Bearer {token}"}


@pytest.fixture
def admin_token(team):
    admin = User.objects.create_user("admin@example.com", "pw-admin-123")
    Membership.objects.create(user=admin, team=team, role=Membership.Role.TEAM_ADMIN)
    return ApiToken.issue(user=admin, name="admin")[1]


def test_the_listed_layers_and_their_use_match_the_ledger(client, api_token, member, team, budget, apixo_account):
    Budget.objects.create(team=team, amount=Decimal("100"), period="week")
    project = Project.objects.create(team=team, name="Spring campaign")
    Budget.objects.create(project=project, team=team, amount=Decimal("30"), period="day")
    for _ in range(2):
        answer = client.post("/api/v1/generations", {**BODY, "provider_account_id": apixo_account.pk},
                             content_type="application/json", **auth(api_token))
        assert answer.status_code == 201, answer.content
    held = sum(e.amount for e in LedgerEntry.objects.filter(kind="hold"))
    listed = client.get("/api/v1/budgets", **auth(api_token))
    assert listed.status_code == 200, listed.content
    body = listed.json()
    assert body["team_id"] == team.pk
    by_layer = {b["layer"]: b for b in body["budgets"]}
    assert set(by_layer) == {"member", "team", "project"}
    for layer in ("member", "team"):  # both apply to these submits; the project's does not (no project_id)
        assert Decimal(by_layer[layer]["committed_usd"]) == held
        assert Decimal(by_layer[layer]["remaining_usd"]) == Decimal(by_layer[layer]["amount_usd"]) - held
    assert by_layer["member"]["label"] == "your" and by_layer["member"]["amount_usd"] == "5.000000"
    assert by_layer["member"]["percent"] == int(held * 100 / 5)
    assert by_layer["team"]["period"] == "week" and by_layer["team"]["label"] == "team Studio A's"
    assert by_layer["project"]["project_id"] == project.pk and by_layer["project"]["committed_usd"] == "0.000000"
    assert by_layer["member"]["period_start"] is not None


def test_the_site_wide_default_is_listed_without_an_id(client, api_token):
    SpendingPolicy.objects.update_or_create(pk=1, defaults={"default_amount": Decimal("10"), "default_period": "month"})
    budgets = client.get("/api/v1/budgets", **auth(api_token)).json()["budgets"]
    assert [(b["layer"], b["id"], b["amount_usd"]) for b in budgets] == [("default", None, "10.000000")]


def test_another_teams_budgets_are_refused(client, api_token, outsider):
    answer = client.get(f"/api/v1/budgets?team_id={outsider.primary_team.pk}", **auth(api_token))
    assert answer.status_code == 403 and answer.json()["code"] == "team_forbidden"


def test_a_team_admin_sets_a_project_budget_that_then_refuses_a_submit(client, api_token, admin_token, team, apixo_account):
    project = Project.objects.create(team=team, name="Client X")
    answer = client.put(f"/api/v1/projects/{project.pk}/budget", {"amount_usd": "0.50", "period": "month"},
                        content_type="application/json", **auth(admin_token))
    assert answer.status_code == 200, answer.content
    assert answer.json()["layer"] == "project" and answer.json()["amount_usd"] == "0.500000" and answer.json()["hard"] is True
    again = client.put(f"/api/v1/projects/{project.pk}/budget", {"amount_usd": "0.60", "period": "month"},
                       content_type="application/json", **auth(admin_token))
    assert Budget.objects.filter(project=project, active=True).get().pk == again.json()["id"]  # replaced, not added
    first = client.post("/api/v1/generations", {**BODY, "provider_account_id": apixo_account.pk, "project_id": project.pk},
                        content_type="application/json", **auth(api_token))
    assert first.status_code == 201, first.content  # $0.336 of $0.60
    refused = client.post("/api/v1/generations", {**BODY, "provider_account_id": apixo_account.pk, "project_id": project.pk},
                          content_type="application/json", **auth(api_token))
    assert refused.status_code == 402 and refused.json()["code"] == "budget_exceeded"
    assert "project Client X" in refused.json()["message"]


@pytest.mark.parametrize(("body", "code"), [
    ({"amount_usd": "-1", "period": "month"}, "invalid_budget"),
    ({"amount_usd": "lots", "period": "month"}, "invalid_budget"),
    ({"amount_usd": "NaN", "period": "month"}, "invalid_budget"),
    ({"amount_usd": "10", "period": "fortnight"}, "invalid_budget"),
    ({"amount_usd": "10", "period": "month", "hard": False}, "invalid_budget"),  # a team admin's budgets are hard
])
def test_a_bad_project_budget_is_refused_by_field(client, admin_token, team, body, code):
    project = Project.objects.create(team=team, name="Client Y")
    answer = client.put(f"/api/v1/projects/{project.pk}/budget", body, content_type="application/json", **auth(admin_token))
    assert answer.status_code == 422 and answer.json()["code"] == code, answer.content
    assert not Budget.objects.filter(project=project).exists()


def test_only_a_team_admin_or_staff_sets_a_project_budget(client, api_token, team, outsider):
    mine = Project.objects.create(team=team, name="Ours")
    theirs = Project.objects.create(team=outsider.primary_team, name="Theirs")
    denied = client.put(f"/api/v1/projects/{mine.pk}/budget", {"amount_usd": "5", "period": "month"},
                        content_type="application/json", **auth(api_token))
    assert denied.status_code == 403 and denied.json()["code"] == "budget_permission_denied"
    hidden = client.put(f"/api/v1/projects/{theirs.pk}/budget", {"amount_usd": "5", "period": "month"},
                        content_type="application/json", **auth(api_token))
    assert hidden.status_code == 404
    assert not Budget.objects.filter(project__in=[mine, theirs]).exists()
