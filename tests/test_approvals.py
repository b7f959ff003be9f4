"""Issue 15, approvals: a team rule holds matching submits in ``pending_approval`` with their
hold; a team admin approves (sent to the provider once) or rejects with a reason (hold released
once, never charged); requests nobody decides expire. Real PostgreSQL, real loopback HTTP to
the APIXO sandbox, Django's locmem mail outbox.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from accounts.models import ApiToken, Membership, Team, User
from approvals import services as approvals
from approvals.models import ApprovalRequest, ApprovalRule
from billing.models import Budget, LedgerEntry
from billing.reports import report_query_from_params
from billing.reports.cost import cost_report
from billing.selectors import committed_in
from generations import services, tasks
from generations.models import Generation, State
from teamwork.models import NotificationPreference

from .conftest import make_params, record_queue

pytestmark = [pytest.mark.django_db, pytest.mark.postgres]

#: APIXO Hailuo 2.3 pro text-to-video: 1080p 5 s, $0.49 (README's provider matrix).
PRO_1080 = dict(mode="pro-text-to-video", duration=5, resolution="1080p", prompt="a lighthouse in a storm, cinematic")


@pytest.fixture
def queue(monkeypatch):
    return record_queue(monkeypatch)


@pytest.fixture
def lead(db, team):
    """An admin of the member's team."""
    user = User.objects.create_user("lead@example.com", "pw-lead-123")
    Membership.objects.create(user=user, team=team, role=Membership.Role.TEAM_ADMIN)
    return user


@pytest.fixture
def other_lead(db):
    """An admin of another team."""
    other = Team.objects.create(name="Elsewhere")
    user = User.objects.create_user("other-lead@example.com", "pw-other-123")
    Membership.objects.create(user=user, team=other, role=Membership.Role.TEAM_ADMIN)
    return user


@pytest.fixture
def opted_in(member):
    """The member asked for approval emails (Settings → Notifications); off by default."""
    return NotificationPreference.objects.create(user=member, email_approval=True)


@pytest.fixture
def rule(team):
    return ApprovalRule.objects.create(team=team, resolutions=["1080P"])


def token(user) -> dict:
    _, raw = ApiToken.issue(user=user, name="tests")
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def kinds(generation):
    return list(LedgerEntry.objects.filter(generation=generation).order_by("id").values_list("kind", flat=True))


def submit_posts(sandbox):
    return [r for r in sandbox.requests("api") if r["method"] == "POST" and "generateTask" in r["path"]]


def pending(member, account, capture) -> Generation:
    with capture(execute=True):
        generation = services.generation_create(user=member, params=make_params(account, **PRO_1080))
    assert generation.state == State.PENDING_APPROVAL
    return generation


# --- the rule -----------------------------------------------------------------------------
def test_a_new_rule_applies_to_the_very_next_api_submit_though_rules_are_cached(client, member, team, apixo_account, queue):
    """Rules are cached per process (billing.config_cache.approval_rule); a trigger bumps the
    counter on any change, so the next request sees the new rule."""
    body = {"provider_account_id": apixo_account.pk, "model": "hailuo-2-3", **PRO_1080}
    first = client.post("/api/v1/generations", body, content_type="application/json", **token(member))
    assert first.status_code == 201 and first.json()["state"] == "queued"
    rule = ApprovalRule.objects.create(team=team, resolutions=["1080P"])
    second = client.post("/api/v1/generations", body, content_type="application/json", **token(member))
    assert second.status_code == 201 and second.json()["state"] == "pending_approval"
    ApprovalRule.objects.filter(pk=rule.pk).update(resolutions=[])
    third = client.post("/api/v1/generations", body, content_type="application/json", **token(member))
    assert third.status_code == 201 and third.json()["state"] == "queued"


def test_each_condition_of_the_rule_matches_on_its_own(team):
    rule = ApprovalRule(team=team)
    assert rule.is_empty and rule.describe() == "never"
    assert rule.reasons_for(amount=Decimal("99"), resolution="1080p", model="hailuo-2-3") == []

    rule.price_above = Decimal("0.40")
    assert rule.reasons_for(amount=Decimal("0.49"), resolution="768p", model="x") == ["price $0.49 is above $0.40"]
    assert rule.reasons_for(amount=Decimal("0.40"), resolution="768p", model="x") == []  # equal passes
    assert rule.reasons_for(amount=Decimal("0.336"), resolution="768p", model="x") == []

    rule = ApprovalRule(team=team, resolutions=["1080P"])
    assert rule.reasons_for(amount=Decimal("0.01"), resolution="1080p", model="x") == ["resolution 1080p"]
    assert rule.reasons_for(amount=Decimal("0.01"), resolution="768p", model="x") == []

    rule = ApprovalRule(team=team, model_ids=["MiniMax-Hailuo-2.3"])
    assert rule.reasons_for(amount=Decimal("0.01"), resolution="768p", model="MiniMax-Hailuo-2.3") == ["model MiniMax-Hailuo-2.3"]
    assert rule.reasons_for(amount=Decimal("0.01"), resolution="768p", model="minimax-hailuo-2.3") == []  # ids are exact

    rule = ApprovalRule(team=team, price_above=Decimal("0.40"), resolutions=["1080p"], model_ids=["hailuo-2-3"])
    assert rule.describe() == "above $0.40, or 1080p, or model hailuo-2-3"
    assert len(rule.reasons_for(amount=Decimal("0.49"), resolution="1080p", model="hailuo-2-3")) == 3


def test_only_matching_submits_wait_and_admins_own_submits_do_not(
    member, lead, team, apixo_account, sandbox, queue, django_capture_on_commit_callbacks
):
    ApprovalRule.objects.create(team=team, price_above=Decimal("0.40"))
    with django_capture_on_commit_callbacks(execute=True):
        cheap = services.generation_create(user=member, params=make_params(apixo_account))  # $0.336
        dear = services.generation_create(user=member, params=make_params(apixo_account, **PRO_1080))  # $0.49
        own = services.generation_create(user=lead, params=make_params(apixo_account, **PRO_1080))
    assert cheap.state == State.QUEUED and own.state == State.QUEUED
    assert dear.state == State.PENDING_APPROVAL
    assert [item for item in queue if item[0] == "submit"] == [("submit", cheap.pk), ("submit", own.pk)]
    assert kinds(dear) == ["hold"]  # the money is reserved while it waits
    request = ApprovalRequest.objects.get(generation=dear)
    assert request.reasons == ["price $0.49 is above $0.40"] and request.decision == ""
    assert request.expires_at - request.requested_at == timedelta(days=7)
    states = list(dear.events.exclude(state="").values_list("state", flat=True))
    assert states == ["queued", "pending_approval"]


def test_a_pending_hold_counts_against_the_budget(member, team, rule, apixo_account, sandbox, queue, django_capture_on_commit_callbacks):
    budget = Budget.objects.create(user=member, amount=Decimal("0.60"), period=Budget.Period.MONTH)
    pending(member, apixo_account, django_capture_on_commit_callbacks)
    assert committed_in(budget=budget) == Decimal("0.49")
    with pytest.raises(services.GenerationRefused) as refused:
        services.generation_create(user=member, params=make_params(apixo_account, **PRO_1080))
    assert refused.value.code == "budget_exceeded"


# --- approve ------------------------------------------------------------------------------
def test_admins_are_emailed_and_an_approval_is_submitted_at_the_sandbox(
    client, member, lead, teammate, rule, apixo_account, sandbox, queue, mailoutbox, opted_in, django_capture_on_commit_callbacks
):
    generation = pending(member, apixo_account, django_capture_on_commit_callbacks)
    assert [m.to for m in mailoutbox] == [["lead@example.com"]]
    assert "Approval needed" in mailoutbox[0].subject and PRO_1080["prompt"] in mailoutbox[0].body
    assert "resolution 1080p" in mailoutbox[0].body and "$0.49" in mailoutbox[0].body
    assert queue == [] and submit_posts(sandbox) == []

    listed = client.get("/api/v1/approvals", **token(lead)).json()["items"]
    assert [(i["generation_id"], i["member_email"], i["resolution"], i["price_usd"]) for i in listed] == [
        (str(generation.pk), "member@example.com", "1080p", "0.490000")
    ]
    assert client.get("/api/v1/approvals", **token(teammate)).json()["items"] == []  # not an admin

    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(f"/api/v1/approvals/{generation.pk}/approve", **token(lead))
    assert answer.status_code == 200 and answer.json()["state"] == "queued"
    assert queue == [("submit", generation.pk)]
    queue.run()
    generation.refresh_from_db()
    assert generation.state == State.SUBMITTED and generation.provider_task_id
    assert len(submit_posts(sandbox)) == 1
    assert kinds(generation) == ["hold"]
    request = ApprovalRequest.objects.get(generation=generation)
    assert request.decision == "approved" and request.decided_by == lead
    messages = list(generation.events.values_list("state", "message"))
    assert ("queued", "Approved by lead@example.com; sent to the provider next") in messages
    assert mailoutbox[-1].to == ["member@example.com"] and mailoutbox[-1].subject.startswith("[Hailuo Studio] Approved")
    # Until the sandbox's task is done: its render time is wall-clock time, which a hundred
    # quick sweeps on an idle machine could run out before (a flaky count, not a deadline).
    deadline = time.monotonic() + 30
    with override_settings(HAILUO_POLL_TIME_SCALE=0):
        while time.monotonic() < deadline:
            tasks.sweep_once()
            queue.run()
            generation.refresh_from_db()
            if generation.state == State.SUCCEEDED:
                break
            time.sleep(0.02)
    assert generation.state == State.SUCCEEDED and kinds(generation) == ["hold", "capture"]


def test_a_double_approve_sends_one_provider_request(
    client, member, lead, rule, apixo_account, sandbox, queue, django_capture_on_commit_callbacks
):
    generation = pending(member, apixo_account, django_capture_on_commit_callbacks)
    headers = token(lead)
    with django_capture_on_commit_callbacks(execute=True):
        first = client.post(f"/api/v1/approvals/{generation.pk}/approve", **headers)
        second = client.post(f"/api/v1/approvals/{generation.pk}/approve", **headers)
    assert first.status_code == 200
    assert second.status_code == 409 and second.json()["code"] == "not_pending"
    assert queue == [("submit", generation.pk)]
    queue.run()
    services.enqueue_submit(generation.pk)  # even a stray second hand-over finds nothing to send
    queue.run()
    assert len(submit_posts(sandbox)) == 1
    reject = client.post(f"/api/v1/approvals/{generation.pk}/reject", {"reason": "too late"}, content_type="application/json", **headers)
    assert reject.status_code == 409 and reject.json()["code"] == "not_pending"


@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_two_admins_approving_at_once_move_it_once(member, lead, team, apixo_account, sandbox, monkeypatch):
    ApprovalRule.objects.create(team=team, resolutions=["1080p"])
    second = User.objects.create_user("second-lead@example.com", "pw")
    Membership.objects.create(user=second, team=team, role=Membership.Role.TEAM_ADMIN)
    queue = record_queue(monkeypatch)
    generation = services.generation_create(user=member, params=make_params(apixo_account, **PRO_1080))
    assert generation.state == State.PENDING_APPROVAL
    barrier, outcomes = threading.Barrier(4), []

    def decide(actor):
        try:
            barrier.wait()
            approvals.approve(actor=actor, generation=Generation.objects.get(pk=generation.pk))
            outcomes.append("approved")
        except approvals.DomainError as exc:
            outcomes.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=decide, args=(actor,)) for actor in (lead, second, lead, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == ["approved", "not_pending", "not_pending", "not_pending"]
    assert queue == [("submit", generation.pk)]
    queue.run()
    assert len(submit_posts(sandbox)) == 1


# --- the member's decision email is optional ----------------------------------------------
def test_a_member_who_did_not_opt_in_gets_no_decision_email_and_one_who_did_gets_one(
    client, member, lead, rule, apixo_account, sandbox, queue, mailoutbox, django_capture_on_commit_callbacks
):
    first = pending(member, apixo_account, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/api/v1/approvals/{first.pk}/reject", {"reason": "not now"}, content_type="application/json", **token(lead))
    assert [m.to for m in mailoutbox] == [["lead@example.com"]]  # the admins' request email only

    NotificationPreference.objects.create(user=member, email_approval=True)
    second = pending(member, apixo_account, django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/api/v1/approvals/{second.pk}/reject", {"reason": "still not"}, content_type="application/json", **token(lead))
        approvals.notify_member_of_decision(second.pk)  # a second call for the same decision sends nothing
    to_member = [m for m in mailoutbox if m.to == ["member@example.com"]]
    assert len(to_member) == 1 and "still not" in to_member[0].body and f"/g/{second.pk}/" in to_member[0].body


# --- reject -------------------------------------------------------------------------------
def test_a_rejection_releases_the_hold_once_with_the_reason(
    client, member, lead, rule, apixo_account, sandbox, queue, mailoutbox, opted_in, django_capture_on_commit_callbacks
):
    budget = Budget.objects.create(user=member, amount=Decimal("5.00"), period=Budget.Period.MONTH)
    generation = pending(member, apixo_account, django_capture_on_commit_callbacks)
    headers = token(lead)
    missing = client.post(f"/api/v1/approvals/{generation.pk}/reject", {"reason": "   "}, content_type="application/json", **headers)
    assert missing.status_code == 422 and missing.json()["code"] == "validation_error"
    with django_capture_on_commit_callbacks(execute=True):
        answer = client.post(
            f"/api/v1/approvals/{generation.pk}/reject", {"reason": "Use 768p for drafts"}, content_type="application/json", **headers
        )
        again = client.post(f"/api/v1/approvals/{generation.pk}/reject", {"reason": "twice"}, content_type="application/json", **headers)
    body = answer.json()
    assert answer.status_code == 200 and body["state"] == "rejected" and body["rejection_reason"] == "Use 768p for drafts"
    assert body["charged_usd"] is None
    assert again.status_code == 409 and again.json()["code"] == "not_pending"
    assert approvals.expire_pending(now=timezone.now() + timedelta(days=30)) == 0  # final: nothing left to expire

    entries = list(LedgerEntry.objects.filter(generation=generation).order_by("id"))
    assert [e.kind for e in entries] == ["hold", "release"]
    assert entries[0].amount == entries[1].amount == Decimal("0.490000")
    assert entries[1].reason == "rejected by lead@example.com: Use 768p for drafts"
    assert committed_in(budget=budget) == Decimal("0")  # to the cent: nothing is committed any more
    assert queue == [] and submit_posts(sandbox) == []
    assert mailoutbox[-1].to == ["member@example.com"] and "Use 768p for drafts" in mailoutbox[-1].body

    read = client.get(f"/api/v1/generations/{generation.pk}", **token(member)).json()
    assert read["state"] == "rejected" and read["rejection_reason"] == "Use 768p for drafts"
    timeline = list(generation.events.exclude(state="").values_list("state", flat=True))
    assert timeline == ["queued", "pending_approval", "rejected"]
    # Reports: a rejected request is a release, never spend, counted with the canceled ones.
    report = cost_report(report_query_from_params({"group_by": "member"}))
    assert report.totals.spend == Decimal("0") and report.totals.canceled == 1 and report.totals.failed == 0


def test_a_member_sees_the_reason_on_the_card_and_the_detail_page(
    client, member, lead, rule, apixo_account, sandbox, queue, django_capture_on_commit_callbacks
):
    generation = pending(member, apixo_account, django_capture_on_commit_callbacks)
    client.force_login(member)
    page = client.get(f"/g/{generation.pk}/").content.decode()
    assert 'data-testid="awaiting-approval"' in page and "resolution 1080p" in page
    approvals.reject(actor=lead, generation=generation, reason="Not for this client")
    card = client.get(f"/g/{generation.pk}/card/").content.decode()
    assert 'data-testid="rejection-reason">Not for this client<' in card and "not charged" in card
    page = client.get(f"/g/{generation.pk}/").content.decode()
    assert 'data-testid="detail-rejection-reason">Not for this client<' in page and "lead@example.com" in page
    assert "Provider failure" not in page


# --- who may decide ---------------------------------------------------------------------------
def test_other_teams_admins_get_404_and_members_403(
    client, member, teammate, outsider, other_lead, lead, rule, apixo_account, sandbox, queue, django_capture_on_commit_callbacks
):
    generation = pending(member, apixo_account, django_capture_on_commit_callbacks)
    url = f"/api/v1/approvals/{generation.pk}/approve"
    for user in (other_lead, outsider):
        answer = client.post(url, **token(user))
        assert answer.status_code == 404 and answer.json()["code"] == "not_found"
        assert client.get("/api/v1/approvals", **token(user)).json()["items"] == []
    for user in (member, teammate):  # they see it, but may not decide it
        answer = client.post(url, **token(user))
        assert answer.status_code == 403 and answer.json()["code"] == "forbidden"
    generation.refresh_from_db()
    assert generation.state == State.PENDING_APPROVAL and queue == []

    client.force_login(other_lead)
    assert client.post(f"/approvals/{generation.pk}/approve/").status_code == 404
    assert client.get(f"/approvals/rules/{member.primary_team.pk}/").status_code == 404
    client.force_login(teammate)
    assert client.get("/approvals/").status_code == 404
    client.post(f"/approvals/{generation.pk}/approve/")
    generation.refresh_from_db()
    assert generation.state == State.PENDING_APPROVAL


def test_the_queue_page_approves_and_rejects_and_the_rule_page_saves(
    client, member, lead, team, rule, apixo_account, sandbox, queue, django_capture_on_commit_callbacks
):
    first = pending(member, apixo_account, django_capture_on_commit_callbacks)
    second = pending(member, apixo_account, django_capture_on_commit_callbacks)
    client.force_login(lead)
    page = client.get("/approvals/").content.decode()
    assert page.count('data-testid="approval-row"') == 2 and "$0.49" in page and "member@example.com" in page
    assert 'data-testid="approvals-count"' in page  # the menu's badge
    with django_capture_on_commit_callbacks(execute=True):
        client.post(f"/approvals/{first.pk}/approve/")
        client.post(f"/approvals/{first.pk}/approve/")  # a double click
        client.post(f"/approvals/{second.pk}/reject/", {"reason": ""})  # refused: no reason
    assert queue == [("submit", first.pk)]
    second.refresh_from_db()
    assert second.state == State.PENDING_APPROVAL
    client.post(f"/approvals/{second.pk}/reject/", {"reason": "Over the brief"})
    second.refresh_from_db()
    assert second.state == State.REJECTED and second.fail_message == "Over the brief"
    assert "Nothing waits for your approval" in client.get("/approvals/").content.decode()

    answer = client.post(f"/approvals/rules/{team.pk}/", {"price_above": "0.30", "resolutions": ["768p"], "model_ids": ["hailuo-2-3"]})
    assert answer.status_code == 302
    rule.refresh_from_db()
    assert rule.price_above == Decimal("0.30") and rule.resolutions == ["768p"] and rule.model_ids == ["hailuo-2-3"]
    assert rule.updated_by == lead
    assert client.post(f"/approvals/rules/{team.pk}/", {"price_above": "-1"}).status_code == 422


# --- cancel and expiry ------------------------------------------------------------------------
def test_the_member_may_withdraw_a_pending_request(client, member, rule, apixo_account, sandbox, queue, django_capture_on_commit_callbacks):
    generation = pending(member, apixo_account, django_capture_on_commit_callbacks)
    answer = client.post(f"/api/v1/generations/{generation.pk}/cancel", **token(member))
    assert answer.status_code == 200 and answer.json()["state"] == "canceled"
    assert kinds(generation) == ["hold", "release"] and queue == []
    assert ApprovalRequest.objects.get(generation=generation).decision == ""


def test_undecided_requests_expire_and_release_their_hold(
    member, lead, rule, apixo_account, sandbox, queue, mailoutbox, opted_in, settings, django_capture_on_commit_callbacks
):
    settings.HAILUO_APPROVAL_TTL = 3600
    generation = pending(member, apixo_account, django_capture_on_commit_callbacks)
    assert approvals.expire_pending(now=timezone.now() + timedelta(minutes=59)) == 0
    with django_capture_on_commit_callbacks(execute=True):
        assert approvals.expire_pending(now=timezone.now() + timedelta(hours=2)) == 1
        assert approvals.expire_pending(now=timezone.now() + timedelta(hours=2)) == 0
    generation.refresh_from_db()
    assert generation.state == State.REJECTED and generation.fail_code == "approval_expired"
    assert kinds(generation) == ["hold", "release"] and queue == []
    assert ApprovalRequest.objects.get(generation=generation).decision == "expired"
    assert mailoutbox[-1].to == ["member@example.com"] and mailoutbox[-1].subject.startswith("[Hailuo Studio] Expired")


def test_a_request_approved_hours_later_is_not_expired_at_once(
    member, lead, rule, apixo_account, sandbox, queue, django_capture_on_commit_callbacks
):
    """``HAILUO_MAX_TASK_LIFETIME`` counts from the submit, not from the request: a request that
    waited 8 hours for approval is polled, not given up on."""
    generation = pending(member, apixo_account, django_capture_on_commit_callbacks)
    Generation.objects.filter(pk=generation.pk).update(created_at=timezone.now() - timedelta(hours=8))
    with django_capture_on_commit_callbacks(execute=True):
        approvals.approve(actor=lead, generation=generation)
    queue.run()
    generation.refresh_from_db()
    assert generation.state == State.SUBMITTED
    assert services.generations_expire() == 0
    assert services.generations_expire(now=timezone.now() + timedelta(hours=7)) == 1
    generation.refresh_from_db()
    assert generation.state == State.EXPIRED and kinds(generation) == ["hold", "release"]


def test_a_rejection_fires_the_canceled_webhook_with_its_state(
    member, lead, rule, apixo_account, sandbox, queue, monkeypatch, django_capture_on_commit_callbacks
):
    from webhooks import services as webhooks
    from webhooks.models import Delivery

    monkeypatch.setattr(webhooks, "enqueue_delivery", lambda *args, **kwargs: None)
    webhooks.endpoint_create(actor=member, url="http://127.0.0.1:9/hook", events=["generation.canceled"])
    generation = pending(member, apixo_account, django_capture_on_commit_callbacks)
    assert not Delivery.objects.exists()  # waiting is no event
    approvals.reject(actor=lead, generation=generation, reason="Not this week")
    delivery = Delivery.objects.get()
    assert delivery.event_type == "generation.canceled" and '"state":"rejected"' in delivery.body.replace(" ", "")


def test_the_studio_says_before_submitting_that_a_request_will_wait(client, member, lead, rule, apixo_account, sandbox):
    form = {"provider_account": apixo_account.pk, "model": "hailuo-2-3", "mode": "pro-text-to-video", "duration": 5, "resolution": "1080p"}
    client.force_login(member)
    page = client.post("/studio/form/", form).content.decode()
    assert 'data-testid="approval-hint"' in page and "resolution 1080p" in page
    page = client.post("/studio/form/", {**form, "mode": "standard-text-to-video", "duration": 6, "resolution": "768p"}).content.decode()
    assert 'data-testid="approval-hint"' not in page
    client.force_login(lead)  # a team admin's own submits never wait
    assert 'data-testid="approval-hint"' not in client.post("/studio/form/", form).content.decode()


def test_django_admin_edits_rules_and_lists_requests(
    client, member, team, rule, apixo_account, sandbox, queue, django_capture_on_commit_callbacks
):
    staff = User.objects.create_superuser("staff@example.com", "pw-staff-123")
    generation = pending(member, apixo_account, django_capture_on_commit_callbacks)
    client.force_login(staff)
    assert client.get("/admin/approvals/approvalrule/add/").status_code == 200
    answer = client.post(f"/admin/approvals/approvalrule/{rule.pk}/change/", {
        "team": team.pk, "price_above": "1.00", "resolutions": ["1080p"], "model_ids": ["MiniMax-Hailuo-2.3"],
    })
    assert answer.status_code == 302
    rule.refresh_from_db()
    assert rule.price_above == Decimal("1.00") and rule.model_ids == ["MiniMax-Hailuo-2.3"] and rule.updated_by == staff
    listing = client.get("/admin/approvals/approvalrequest/").content.decode()
    assert str(generation) == "hailuo-2-3 pro-text-to-video 5s (pending_approval)" and str(generation) in listing
    # Staff may decide any team's request (here through the queue page, which lists every team's).
    assert 'data-testid="approval-row"' in client.get("/approvals/").content.decode()
