"""A team admin sets members' budgets within the team's budget; others cannot."""

from decimal import Decimal

import pytest

from accounts.models import Membership
from billing.models import Budget

pytestmark = pytest.mark.django_db


@pytest.fixture
def team_admin(team, django_user_model):
    user = django_user_model.objects.create_user("lead@example.com", "pw-lead-123")
    Membership.objects.create(user=user, team=team, role=Membership.Role.TEAM_ADMIN)
    return user


def test_team_admin_sets_a_member_budget_within_the_team_budget(client, team, team_admin, member):
    Budget.objects.create(team=team, amount=Decimal("100"), period="month")
    client.force_login(team_admin)
    url = f"/team/{team.pk}/budgets/"
    assert member.email in client.get(url).content.decode()
    too_much = client.post(url, {"member": member.pk, "amount": "150", "period": "month", "hard": "on"})
    assert "a member&#x27;s cannot be more" in too_much.content.decode()
    assert client.post(url, {"member": member.pk, "amount": "40", "period": "month", "hard": "on"}).status_code == 302
    assert Budget.objects.get(user=member, active=True).amount == Decimal("40")
    client.post(url, {"member": member.pk, "amount": "30", "period": "month"})
    assert list(Budget.objects.filter(user=member).values_list("amount", "active").order_by("id")) == [
        (Decimal("40"), False), (Decimal("30"), True),
    ]


def test_a_member_cannot_open_the_team_budgets(client, team, member):
    client.force_login(member)
    assert client.get(f"/team/{team.pk}/budgets/").status_code == 404


def test_budgets_are_inline_on_users_and_teams_in_the_admin(admin_client, team, member):
    Budget.objects.create(user=member, amount=Decimal("12.5"), period="week")
    Budget.objects.create(team=team, amount=Decimal("99"), period="month")
    user_page = admin_client.get(f"/admin/accounts/user/{member.pk}/change/").content.decode()
    team_page = admin_client.get(f"/admin/accounts/team/{team.pk}/change/").content.decode()
    assert 'value="12.500000"' in user_page and 'value="99.000000"' in team_page
