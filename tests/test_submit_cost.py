"""Issue 16, "submits that don't slow with the ledger": a submit reads a fixed number of rows.

``POST /api/v1/generations`` makes exactly six queries, whatever the ledger holds; an
authenticated read writes nothing (the token's last use at most once a minute) and is one
statement; provider accounts and price rules are cached per process and dropped at once when
either changes.
"""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from accounts.models import ApiToken
from billing.models import LedgerEntry, PriceRule
from billing.services import price_rule_revise

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

BODY = {"model": "hailuo-2-3", "mode": "standard-text-to-video", "prompt": "a paper boat on a rainy street",
        "duration": 6, "resolution": "768p"}


@pytest.fixture(autouse=True)
def _no_queue(monkeypatch):
    from generations import services

    monkeypatch.setattr(services, "enqueue_submit", lambda gid: None)
    cache.clear()
    yield
    cache.clear()


def post(client, token, account, body=None):
    return client.post("/api/v1/generations", {**BODY, "provider_account_id": account.pk, **(body or {})},
                       content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")


def statements(captured) -> list[str]:
    """The statements sent, without the one SAVEPOINT pair the test's own transaction turns the
    submit's ``atomic()`` into (in production: its BEGIN and COMMIT). Any other savepoint counts."""
    sql = [q["sql"] for q in captured.captured_queries]
    savepoints = [s for s in sql if s.startswith("SAVEPOINT")]
    assert len(savepoints) <= 1, savepoints  # the webhook receiver opens none for a queued event
    return [s for s in sql if not s.startswith(("SAVEPOINT", "RELEASE SAVEPOINT"))]


@pytest.mark.parametrize("layers", ["default", "own, team and project budgets"])
def test_a_submit_makes_exactly_six_queries_however_large_the_ledger(client, api_token, apixo_account, member, layers):
    from billing.models import Budget
    from teamwork.models import Project

    body = {}
    if layers != "default":
        team = member.primary_team
        project = Project.objects.create(team=team, name="Spring campaign")
        Budget.objects.create(user=member, amount=Decimal("500"), period="month")
        Budget.objects.create(team=team, amount=Decimal("900"), period="week")
        Budget.objects.create(project=project, team=team, amount=Decimal("300"), period="day")
        body = {"project_id": project.pk}
    assert post(client, api_token, apixo_account, body).status_code == 201  # the process's caches are warm now
    counts = {}
    for size in (10, 2000):
        now = timezone.now()
        LedgerEntry.objects.bulk_create(
            [LedgerEntry(kind="credit", amount=Decimal("0.000001"), user=member, team=member.primary_team, reason="bench",
                         effective_at=now, created_at=now) for _ in range(size)]
        )
        with CaptureQueriesContext(connection) as captured:
            response = post(client, api_token, apixo_account, body)
        assert response.status_code == 201, response.content
        sent = statements(captured)
        counts[size] = len(sent)
        # token + user + primary team + cache counter; generation; its event; the locks (budget rows,
        # then the user) + policy + grant; the layers' running totals; the hold (its trigger keeps the totals).
        # With a project_id the API also reads the project (one of the member's teams', known from the
        # token query) and checks its team is one of theirs: two more, before the transaction.
        expected = 6 if not body else 8
        assert len(sent) == expected, "\n".join(s[:160] for s in sent)
        if body:
            project_checks = [sent.pop(1) for _ in range(2)]
            assert 'FROM "teamwork_project"' in project_checks[0] and 'FROM "accounts_team"' in project_checks[1]
        assert "FROM accounts_apitoken t" in sent[0]
        assert sent[1].startswith('INSERT INTO "generations_generation"')
        assert sent[2].startswith('INSERT INTO "generations_generationevent"')
        assert "FOR UPDATE OF u" in sent[3] and "billing_budget b" in sent[3]
        assert "billing_budgetusage" in sent[4]
        assert sent[5].startswith('INSERT INTO "billing_ledgerentry"')
        assert not any("SUM(" in s.upper() for s in sent)  # no sum over the ledger
    assert counts[10] == counts[2000]


def test_n_authenticated_gets_in_the_same_minute_write_nothing(client, api_token, apixo_account):
    gid = post(client, api_token, apixo_account).json()["id"]
    token = ApiToken.objects.get()
    assert token.last_used_at is not None  # the first use of the minute is recorded
    for _ in range(5):
        with CaptureQueriesContext(connection) as captured:
            assert client.get(f"/api/v1/generations/{gid}", HTTP_AUTHORIZATION=f"Bearer {api_token}").status_code == 200
        writes = [s for s in statements(captured) if not s.lstrip().upper().startswith("SELECT")]
        assert writes == []
    # A minute later, one conditional write again.
    ApiToken.objects.filter(pk=token.pk).update(last_used_at=timezone.now() - timedelta(minutes=2))
    with CaptureQueriesContext(connection) as captured:
        client.get(f"/api/v1/generations/{gid}", HTTP_AUTHORIZATION=f"Bearer {api_token}")
    assert [s for s in statements(captured) if s.startswith("UPDATE")] == [s for s in statements(captured) if "accounts_apitoken" in s and s.startswith("UPDATE")]
    assert len([s for s in statements(captured) if s.startswith("UPDATE")]) == 1


def test_a_price_change_reaches_the_next_submit_although_prices_are_cached(client, api_token, apixo_account):
    from generations.models import Generation

    first = Generation.objects.get(pk=post(client, api_token, apixo_account).json()["id"])
    rule = PriceRule.objects.get(pk=first.price_rule["id"])
    price_rule_revise(rule=rule, unit_price=rule.unit_price * 2)  # in this process or any other: the counter moves
    second = Generation.objects.get(pk=post(client, api_token, apixo_account).json()["id"])
    assert second.quoted_amount == first.quoted_amount * 2 and second.price_rule["id"] != rule.pk


def test_a_disabled_account_refuses_the_next_submit_although_accounts_are_cached(client, api_token, apixo_account):
    from providers.models import ProviderAccount

    assert post(client, api_token, apixo_account).status_code == 201
    ProviderAccount.objects.filter(pk=apixo_account.pk).update(enabled=False)  # a bulk update: no signal fires
    refused = post(client, api_token, apixo_account)
    assert refused.status_code == 422 and refused.json()["code"] == "provider_unavailable"


def test_an_authenticated_read_is_one_statement_token_teams_generation_and_tags(client, api_token, apixo_account):
    """``GET /api/v1/generations/{id}``: the token lookup reads the generation and its tags in
    the same statement (``TokenAuth(joined=…)``, ``generations.selectors.generation_joined_read``)."""
    gid = post(client, api_token, apixo_account).json()["id"]
    with CaptureQueriesContext(connection) as captured:
        answer = client.get(f"/api/v1/generations/{gid}", HTTP_AUTHORIZATION=f"Bearer {api_token}")
    assert answer.status_code == 200 and answer.json()["id"] == gid
    sent = statements(captured)
    assert len(sent) == 1 and "FROM accounts_apitoken t" in sent[0], sent
    assert "FROM generations_generation g" in sent[0] and "teamwork_tag" in sent[0]  # the tags (issue 15) in the same statement


def test_a_malformed_id_or_a_bad_token_on_the_joined_read_answers_as_before(client, api_token, apixo_account):
    """The joined read never turns a 422 (a malformed id) or a 401 into anything else."""
    bad = client.get("/api/v1/generations/not-a-uuid", HTTP_AUTHORIZATION=f"Bearer {api_token}")
    assert bad.status_code == 422 and bad.json()["code"] == "invalid_request"
    gid = post(client, api_token, apixo_account).json()["id"]
    nobody = client.get(f"/api/v1/generations/{gid}", HTTP_AUTHORIZATION="Bearer hs_nobody")
    assert nobody.status_code == 401 and nobody.json()["code"] == "unauthorized"
