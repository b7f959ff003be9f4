"""Issue 11, holes 1 and 2: budgets as layers nobody can slip past, the site-wide default,
unlimited grants by staff only, threshold alerts, and the choice of the team a generation is
booked to. Through the real views and API on PostgreSQL; the provider is the loopback sandbox."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from django.core import mail
from django.utils import timezone

from accounts.models import ApiToken, Membership, Team
from billing.models import Budget, BudgetAlert, LedgerEntry, SpendingPolicy, UnlimitedGrant
from billing.selectors import budget_layers_for, committed_in
from billing.services import BudgetPermissionDenied, budget_set_for_member
from generations.models import Generation

pytestmark = [pytest.mark.postgres, pytest.mark.django_db, pytest.mark.usefixtures("no_queue")]

PRICE = Decimal("0.336")  # APIXO standard 768p 6 s


@pytest.fixture
def staff(django_user_model):
    return django_user_model.objects.create_superuser("staff@example.com", "pw-staff-123")


@pytest.fixture
def lead(team, django_user_model):
    """The team admin of ``team`` (Studio A)."""
    user = django_user_model.objects.create_user("lead@example.com", "pw-lead-123")
    Membership.objects.create(user=user, team=team, role=Membership.Role.TEAM_ADMIN)
    return user


@pytest.fixture
def team_b(member, django_user_model):
    """A second team the member belongs to, with its own admin."""
    other = Team.objects.create(name="Studio B")
    Membership.objects.create(user=member, team=other)
    admin_b = django_user_model.objects.create_user("lead-b@example.com", "pw-leadb-123")
    Membership.objects.create(user=admin_b, team=other, role=Membership.Role.TEAM_ADMIN)
    other.admin = admin_b
    return other


def policy(amount: str | None = "50", period: str = "month", thresholds=(50, 80, 100)) -> SpendingPolicy:
    p = SpendingPolicy.current()
    p.default_amount = Decimal(amount) if amount is not None else None
    p.default_period, p.default_hard, p.alert_thresholds = period, True, list(thresholds)
    p.save()
    return p


def api_create(client, token, account, **body):
    payload = {
        "provider_account_id": account.pk, "model": "hailuo-2-3", "mode": "standard-text-to-video",
        "prompt": "a cat on a windowsill", "duration": 6, "resolution": "768p", **body,
    }
    return client.post("/api/v1/generations", payload, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")


def studio_data(account, **overrides):
    return {
        "provider_account": account.pk, "model": "hailuo-2-3", "mode": "standard-text-to-video",
        "duration": 6, "resolution": "768p", "prompt": "a tiktok dancer on a drone", "image_url": "", **overrides,
    }


def test_the_fresh_install_ships_a_hard_monthly_default_of_fifty_dollars(db):
    p = SpendingPolicy.objects.get(pk=1)
    assert (p.default_amount, p.default_period, p.default_hard, p.alert_thresholds) == (Decimal("50"), "month", True, [50, 80, 100])


# --- hole 1: a team admin cannot lift caps they do not own ------------------------------------
def test_a_team_admin_cannot_lift_a_cap(client, team, lead, member, staff):
    Budget.objects.create(team=team, amount=Decimal("50"), period="month", created_by=staff)
    staffs = Budget.objects.create(user=member, amount=Decimal("1.00"), period="month", created_by=staff)
    client.force_login(lead)
    url = f"/team/{team.pk}/budgets/"
    for amount, period in [("1000000", "month"), ("50", "none"), ("50", "day"), ("10", "week"), ("60", "month")]:
        refused = client.post(url, {"member": member.pk, "amount": amount, "period": period})
        assert refused.status_code == 422, (amount, period)
        assert "a member&#x27;s cannot be more" in refused.content.decode()
    own = client.post(url, {"member": lead.pk, "amount": "5", "period": "month"})
    assert own.status_code == 422 and "Select a valid choice" in own.content.decode()
    with pytest.raises(BudgetPermissionDenied):
        budget_set_for_member(actor=lead, team=team, member=lead, amount=Decimal("5"), period="month")
    with pytest.raises(ValueError, match="always hard"):
        budget_set_for_member(actor=lead, team=team, member=member, amount=Decimal("5"), period="month", hard=False)
    # A valid one ("soft" is not offered: the posted flag is ignored, the budget is hard).
    assert client.post(url, {"member": member.pk, "amount": "40", "period": "month", "hard": ""}).status_code == 302
    assert client.post(url, {"member": member.pk, "amount": "1", "period": "day"}).status_code == 302
    in_team = Budget.objects.filter(user=member, team=team)
    assert list(in_team.values_list("amount", "period", "hard", "active", "created_by").order_by("id")) == [
        (Decimal("40"), "month", True, False, lead.pk), (Decimal("1"), "day", True, True, lead.pk),
    ]
    staffs.refresh_from_db()
    assert staffs.active and staffs.amount == Decimal("1.00")  # staff's budget survives every change
    assert Budget.objects.filter(active=True, team=team, user__isnull=True).count() == 1


def test_a_team_admin_never_replaces_a_budget_staff_set_in_their_team(team, lead, member, staff):
    staff_in_team = Budget.objects.create(user=member, team=team, amount=Decimal("2"), period="month", created_by=staff)
    budget_set_for_member(actor=lead, team=team, member=member, amount=Decimal("20"), period="month")
    staff_in_team.refresh_from_db()
    assert staff_in_team.active
    layers = budget_layers_for(user=member, team=team)
    assert {b.amount for b in layers if b.team_id and b.user_id} == {Decimal("2"), Decimal("20")}


def test_staff_one_dollar_and_another_teams_fifty_hold_no_more_than_one_dollar(
    client, team, team_b, member, staff, apixo_account, api_token
):
    """The reproduction: staff $1/month on the member; the admin of another team sets $50/month."""
    Budget.objects.create(user=member, amount=Decimal("1.00"), period="month", created_by=staff)
    client.force_login(team_b.admin)
    assert client.post(f"/team/{team_b.pk}/budgets/", {"member": member.pk, "amount": "50", "period": "month"}).status_code == 302
    client.logout()
    codes = [api_create(client, api_token, apixo_account, prompt=f"shot {i}").status_code for i in range(3)]
    codes += [api_create(client, api_token, apixo_account, prompt=f"b {i}", team_id=team_b.pk).status_code for i in range(2)]
    assert codes == [201, 201, 402, 402, 402]
    held = sum(LedgerEntry.objects.filter(user=member, kind="hold").values_list("amount", flat=True))
    assert held == 2 * PRICE <= Decimal("1.00")


# --- hole 2: no budget is capped by the default; unlimited only by a staff grant ---------------
def test_a_member_without_a_budget_is_capped_by_the_default(client, member, lead, staff, apixo_account, api_token):
    policy("0.50")
    assert not Budget.objects.filter(user=member).exists()
    assert [api_create(client, api_token, apixo_account, prompt=f"s{i}").status_code for i in range(2)] == [201, 402]
    refused = api_create(client, api_token, apixo_account, prompt="again").json()
    assert refused["code"] == "budget_exceeded" and "site-wide default" in refused["message"]
    # A team admin cannot grant unlimited: the admin is staff-only.
    client.force_login(lead)
    assert client.get("/admin/billing/unlimitedgrant/add/").status_code == 302
    client.force_login(staff)
    added = client.post("/admin/billing/unlimitedgrant/add/", {"user": member.pk, "reason": "pilot project"})
    assert added.status_code == 302
    grant = UnlimitedGrant.objects.get(user=member)
    assert grant.granted_by == staff
    users = client.get("/admin/accounts/user/").content.decode()
    assert "site-wide default: 0.5 USD per month" in users  # lead's line: still capped by the default
    assert 'alt="True"' in users  # the member's unlimited grant
    client.logout()
    assert [api_create(client, api_token, apixo_account, prompt=f"u{i}").status_code for i in range(2)] == [201, 201]


def test_a_team_grant_lifts_the_default_for_spend_booked_to_that_team(member, team, staff, apixo_account, client, api_token):
    policy("0.40")
    UnlimitedGrant.objects.create(team=team, reason="R&D", granted_by=staff)
    assert [api_create(client, api_token, apixo_account, prompt=f"t{i}").status_code for i in range(3)] == [201, 201, 201]
    Budget.objects.create(team=team, amount=Decimal("1.10"), period="month", created_by=staff)
    assert api_create(client, api_token, apixo_account, prompt="t4").status_code == 402  # the team's own budget still holds


# --- threshold alerts -----------------------------------------------------------------------
def test_alerts_once_per_period_to_the_member_and_the_owner_with_a_banner(
    client, team, lead, member, staff, apixo_account, django_capture_on_commit_callbacks, monkeypatch, settings, api_token
):
    from webhooks import services as webhook_services
    from webhooks.models import Delivery

    settings.HAILUO_ALLOWED_PRIVATE_HOSTS = ["127.0.0.1:*"]
    handed = []
    monkeypatch.setattr(webhook_services, "enqueue_delivery", handed.append)
    webhook_services.endpoint_create(actor=member, url="http://127.0.0.1:9/budget", events=["budget.threshold_reached"])
    Budget.objects.create(user=member, amount=Decimal("100"), period="month", created_by=staff)
    budget_set_for_member(actor=lead, team=team, member=member, amount=Decimal("0.70"), period="month")
    client.force_login(member)
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post("/studio/", studio_data(apixo_account), HTTP_HX_REQUEST="true").status_code == 200
    assert mail.outbox == [] and not BudgetAlert.objects.exists()  # 48 %: below 50
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post("/studio/", studio_data(apixo_account, prompt="second"), HTTP_HX_REQUEST="true").status_code == 200
    assert sorted(BudgetAlert.objects.values_list("threshold", flat=True)) == [50, 80]  # 96 %
    assert len(mail.outbox) == 1
    message = mail.outbox[0]
    assert sorted(message.to) == [lead.email, member.email] and "80%" in message.subject
    assert staff.email not in message.to  # a member-in-team budget is owned by the team's admins
    delivery = Delivery.objects.get(event_type="budget.threshold_reached")
    assert '"threshold_percent":80' in delivery.body.replace(" ", "") and handed == [delivery.pk]
    page = client.get("/studio/").content.decode()
    assert 'data-testid="budget-alert"' in page and "96% of your budget in team Studio A" in page
    # Refused beyond it; a failure frees room; crossing again in the same period sends nothing new.
    assert client.post("/studio/", studio_data(apixo_account, prompt="third")).status_code == 200
    assert Generation.objects.count() == 2
    from generations import services
    from providers.base import TaskState, TaskUpdate

    first = Generation.objects.order_by("created_at").first()
    Generation.objects.filter(pk=first.pk).update(state="submitted", provider_task_id="t1")
    services.generation_apply_update(
        generation_id=first.pk, update=TaskUpdate(task_id="t1", state=TaskState.FAILED, provider_state="failed", fail_code="X")
    )
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/studio/", studio_data(apixo_account, prompt="fourth"), HTTP_HX_REQUEST="true")
    assert Generation.objects.count() == 3 and BudgetAlert.objects.count() == 2 and len(mail.outbox) == 1
    # Next month (through the API: the login session would have expired): a new period, new alerts.
    later = timezone.now() + timedelta(days=32)
    monkeypatch.setattr(timezone, "now", lambda: later)
    with django_capture_on_commit_callbacks(execute=True):
        assert api_create(client, api_token, apixo_account, prompt="fifth").status_code == 201
        assert api_create(client, api_token, apixo_account, prompt="sixth").status_code == 201
    assert BudgetAlert.objects.count() == 4 and len(mail.outbox) == 2


def test_the_default_alert_goes_to_staff(member, staff, apixo_account, client, api_token, django_capture_on_commit_callbacks):
    policy("0.60", thresholds=[50])
    with django_capture_on_commit_callbacks(execute=True):
        assert api_create(client, api_token, apixo_account).status_code == 201
    assert len(mail.outbox) == 1 and sorted(mail.outbox[0].to) == [member.email, staff.email]
    assert BudgetAlert.objects.get().scope_key == f"default:user:{member.pk}"


# --- choosing the team ----------------------------------------------------------------------
def test_a_member_in_two_teams_chooses_the_team_in_the_studio_and_the_api(
    client, member, team, team_b, outsider, apixo_account, api_token
):
    client.force_login(member)
    page = client.get("/studio/").content.decode()
    assert "Book to team" in page and "Studio B" in page
    assert client.post("/studio/", studio_data(apixo_account, team=str(team_b.pk))).status_code == 302
    assert client.post("/studio/", studio_data(apixo_account, prompt="default")).status_code == 302
    assert list(Generation.objects.order_by("created_at").values_list("team__name", flat=True)) == ["Studio B", "Studio A"]
    assert LedgerEntry.objects.filter(kind="hold", team=team_b).count() == 1
    forbidden = client.post("/studio/", studio_data(apixo_account, team=str(outsider.primary_team.pk)))
    assert forbidden.status_code == 200 and Generation.objects.count() == 2  # not a valid choice
    client.logout()
    made = api_create(client, api_token, apixo_account, team_id=team_b.pk)
    assert made.status_code == 201 and Generation.objects.get(pk=made.json()["id"]).team == team_b
    other = api_create(client, api_token, apixo_account, team_id=outsider.primary_team.pk)
    assert other.status_code == 403 and other.json()["code"] == "team_forbidden"
    assert api_create(client, api_token, apixo_account, team_id=987654).status_code == 403
    assert api_create(client, api_token, apixo_account, team_id=0).status_code == 422


def test_member_in_team_budget_only_counts_spend_booked_to_that_team(member, team, team_b, staff, apixo_account, client, api_token):
    budget_set_for_member(actor=team_b.admin, team=team_b, member=member, amount=Decimal("0.40"), period="month")
    assert api_create(client, api_token, apixo_account, team_id=team_b.pk).status_code == 201
    assert api_create(client, api_token, apixo_account, team_id=team_b.pk).status_code == 402
    assert api_create(client, api_token, apixo_account).status_code == 201  # booked to Studio A
    in_b = Budget.objects.get(user=member, team=team_b)
    assert committed_in(budget=in_b) == PRICE
    assert ApiToken.objects.filter(user=member).exists()
