"""Issue 15, "a project can carry a budget that joins the budget layers", and issue 16's running
totals: project budgets refuse by name, who may set them, where they show, their alerts; the
totals' drift check and their rebuild after a zone change."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.core import mail
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from accounts.models import Membership, Team
from billing.models import Budget, BudgetAlert, BudgetUsage, LedgerEntry
from billing.services import BudgetPermissionDenied, budget_set_for_project, ledger_adjust
from billing.usage import usage_drift
from generations import services
from teamwork.models import Project

from .conftest import make_params
from .usage_check import assert_totals_equal_the_ledger

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _no_queue(monkeypatch):
    monkeypatch.setattr(services, "enqueue_submit", lambda gid: None)


@pytest.fixture
def team_admin(team, django_user_model):
    user = django_user_model.objects.create_user("lead@example.com", "pw-lead-123")
    Membership.objects.create(user=user, team=team, role=Membership.Role.TEAM_ADMIN)
    return user


@pytest.fixture
def project(team):
    return Project.objects.create(team=team, name="Spring campaign")


def submit(user, account, project=None, **overrides):
    return services.generation_create(
        user=user, params=make_params(account, project_id=project.pk if project else None, **overrides),
        team=project.team if project else None,
    )


def test_a_project_budget_caps_every_member_in_the_project_and_its_refusal_names_it(
    member, teammate, team_admin, project, apixo_account
):
    budget_set_for_project(actor=team_admin, project=project, amount=Decimal("0.70"), period="month")  # 2 × $0.336
    submit(member, apixo_account, project)
    submit(teammate, apixo_account, project)  # any member: the project's spend, not one person's
    with pytest.raises(services.GenerationRefused) as refused:
        submit(member, apixo_account, project)
    assert refused.value.code == "budget_exceeded"
    assert "Refused by project Spring campaign's budget of $0.70 per month" in str(refused.value)
    assert LedgerEntry.objects.filter(kind="hold").count() == 2
    submit(member, apixo_account)  # outside the project the project budget does not apply
    assert LedgerEntry.objects.filter(kind="hold").count() == 3


def test_the_most_restrictive_layer_wins_over_a_roomier_project_budget(member, team, team_admin, project, apixo_account):
    budget_set_for_project(actor=team_admin, project=project, amount=Decimal("100"), period="month")
    Budget.objects.create(team=team, amount=Decimal("0.40"), period="week")
    submit(member, apixo_account, project)
    with pytest.raises(services.GenerationRefused) as refused:
        submit(member, apixo_account, project)
    assert "team Studio A's budget" in str(refused.value)


def test_staff_and_that_teams_admins_set_project_budgets_nobody_else(member, team_admin, admin_user, project, django_user_model):
    other_team = Team.objects.create(name="Studio B")
    other_admin = django_user_model.objects.create_user("other@example.com", "x")
    Membership.objects.create(user=other_admin, team=other_team, role=Membership.Role.TEAM_ADMIN)
    for outsider in (member, other_admin):
        with pytest.raises(BudgetPermissionDenied):
            budget_set_for_project(actor=outsider, project=project, amount=Decimal("5"), period="day")
    with pytest.raises(ValueError, match="always hard"):
        budget_set_for_project(actor=team_admin, project=project, amount=Decimal("5"), period="day", hard=False)
    by_staff = budget_set_for_project(actor=admin_user, project=project, amount=Decimal("50"), period="month", hard=False)
    by_admin = budget_set_for_project(actor=team_admin, project=project, amount=Decimal("20"), period="week")
    again = budget_set_for_project(actor=team_admin, project=project, amount=Decimal("10"), period="week")
    active = set(Budget.objects.filter(project=project, active=True).values_list("pk", flat=True))
    assert active == {by_staff.pk, again.pk} and by_admin.pk not in active  # a team admin never replaces staff's
    assert again.layer == Budget.Layer.PROJECT and again.team_id == project.team_id and again.user_id is None


def test_the_team_page_shows_and_sets_project_budgets_and_the_badge_shows_them(client, member, team, team_admin, project):
    client.force_login(team_admin)
    url = f"/team/{team.pk}/budgets/"
    answer = client.post(url, {"project-project": project.pk, "project-amount": "25", "project-period": "week"})
    assert answer.status_code == 302
    budget = Budget.objects.get(project=project, active=True)
    assert budget.amount == Decimal("25") and budget.created_by == team_admin and budget.hard
    page = client.get(url).content.decode()
    assert "Project Spring campaign: $25.00 per week" in page
    client.force_login(member)
    assert client.get(f"/team/{team.pk}/budgets/").status_code == 404
    from django.urls import reverse

    badge = client.get(reverse("budget_badge"))
    assert badge.status_code == 200 and "Project Spring campaign:" in badge.content.decode()


def test_a_project_budget_alerts_at_its_thresholds_once(
    member, team_admin, project, apixo_account, django_capture_on_commit_callbacks
):
    budget = budget_set_for_project(actor=team_admin, project=project, amount=Decimal("0.60"), period="month")
    with django_capture_on_commit_callbacks(execute=True):
        submit(member, apixo_account, project)  # $0.336 of $0.60: 56 %
    alert = BudgetAlert.objects.get(scope_key=f"budget:{budget.pk}")
    assert alert.threshold == 50 and alert.committed == Decimal("0.336")
    submit(member, apixo_account)  # not in the project: no new project alert
    assert BudgetAlert.objects.filter(scope_key=f"budget:{budget.pk}").count() == 1
    sent = [m for m in mail.outbox if "project Spring campaign" in m.subject]
    assert len(sent) == 1 and set(sent[0].to) == {member.email, team_admin.email} and "50%" in sent[0].subject


@pytest.mark.postgres
def test_budget_usage_reports_drift_and_fixes_it(member, team, project, apixo_account, capsys):
    submit(member, apixo_account, project)
    ledger_adjust(user=member, team=team, amount=Decimal("1.25"), reason="fix", created_by=member)
    call_command("budget_usage")
    assert "Every running total equals the ledger's sum." in capsys.readouterr().out
    row = BudgetUsage.objects.get(layer_key=f"team:{team.pk}", period="month")
    BudgetUsage.objects.filter(pk=row.pk).update(committed=row.committed + Decimal("0.01"))  # a drifted total
    with pytest.raises(CommandError, match="1 running total"):
        call_command("budget_usage")
    assert "drift 0.010000 USD" in capsys.readouterr().out
    call_command("budget_usage", "--fix")
    assert usage_drift() == []
    assert assert_totals_equal_the_ledger() > 0


@pytest.mark.postgres
def test_a_team_zone_change_realigns_its_totals(member, team, project, apixo_account, django_capture_on_commit_callbacks):
    submit(member, apixo_account, project)
    ledger_adjust(user=member, team=team, amount=Decimal("0.50"), reason="fix", created_by=member)
    with django_capture_on_commit_callbacks(execute=True):
        team.time_zone = "Pacific/Kiritimati"  # UTC+14: every period boundary moves
        team.save()
    assert connection.vendor == "postgresql"
    assert usage_drift() == []
    assert_totals_equal_the_ledger()
