"""A Hypothesis state machine over budget changes by staff and team admins and submits by
members in several teams, into projects or not: after every hold, each hard layer that applied
(own, member-in-team, team, project, default) has committed spend within its amount in its
period, refused submits write nothing, and every running total equals the ledger's sum."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from accounts.models import Membership, Team, User
from billing.models import Budget, LedgerEntry, SpendingPolicy
from billing.selectors import budget_layers_for, committed_in
from billing.services import BudgetPermissionDenied, budget_set_for_member, budget_set_for_project
from billing.usage import committed_for
from generations import services
from generations.models import Generation, State
from providers.base import TaskState, TaskUpdate
from teamwork.models import Project

from .conftest import make_params
from .usage_check import assert_totals_equal_the_ledger

_serial = count()
PERIODS = st.sampled_from(["day", "week", "month", "none"])
CENTS = st.integers(min_value=0, max_value=250)


class LayersMachine(RuleBasedStateMachine):
    account = None
    clock = None
    seen = {"held": 0, "refused": 0, "set_refused": 0, "in_project": 0}

    def __init__(self):
        super().__init__()
        self.clock.now = datetime(2026, 3, 30, 12, 0, tzinfo=UTC)
        n = next(_serial)
        self.staff = User.objects.create_superuser(f"staff{n}@example.com", "x")
        self.teams = [Team.objects.create(name=f"layers A{n}"), Team.objects.create(name=f"layers B{n}", time_zone="Asia/Tokyo")]
        self.admins = []
        for i, team in enumerate(self.teams):
            admin = User.objects.create_user(f"admin{n}-{i}@example.com", "x")
            Membership.objects.create(user=admin, team=team, role=Membership.Role.TEAM_ADMIN)
            self.admins.append(admin)
        self.members = [User.objects.create_user(f"m{n}-{i}@example.com", "x") for i in range(2)]
        Membership.objects.create(user=self.members[0], team=self.teams[0])
        Membership.objects.create(user=self.members[0], team=self.teams[1])
        Membership.objects.create(user=self.members[1], team=self.teams[1])
        Membership.objects.create(user=self.admins[0], team=self.teams[1])  # A's admin is a member of B
        self.projects = [Project.objects.create(team=team, name=f"campaign {n}") for team in self.teams]
        self.generations: list = []

    @rule(who=st.integers(0, 1), cents=CENTS, period=PERIODS)
    def staff_sets_own_budget(self, who, cents, period):
        member = self.members[who]
        Budget.objects.filter(user=member, team__isnull=True, active=True).update(active=False)
        Budget.objects.create(user=member, amount=Decimal(cents) / 100, period=period, created_by=self.staff)

    @rule(which=st.integers(0, 1), cents=CENTS, period=PERIODS, hard=st.booleans())
    def staff_sets_team_budget(self, which, cents, period, hard):
        team = self.teams[which]
        Budget.objects.filter(team=team, user__isnull=True, active=True).update(active=False)
        Budget.objects.create(team=team, amount=Decimal(cents) / 100, period=period, hard=hard, created_by=self.staff)

    @rule(admin=st.integers(0, 1), which=st.integers(0, 1), whom=st.integers(0, 2), cents=CENTS, period=PERIODS,
          hard=st.booleans())
    def team_admin_sets_member_budget(self, admin, which, whom, cents, period, hard):
        """Any admin, any team, any target (themselves included): what is refused writes nothing."""
        people = [*self.members, self.admins[0]]
        before = set(Budget.objects.filter(active=True).values_list("pk", flat=True))
        try:
            budget_set_for_member(actor=self.admins[admin], team=self.teams[which], member=people[whom],
                                  amount=Decimal(cents) / 100, period=period, hard=hard)
        except (BudgetPermissionDenied, ValueError):
            self.seen["set_refused"] += 1
            assert set(Budget.objects.filter(active=True).values_list("pk", flat=True)) == before
            return
        new = Budget.objects.filter(active=True).exclude(pk__in=before).get()
        assert new.hard and new.user_id and new.team_id == self.teams[which].pk and new.created_by_id == self.admins[admin].pk
        gone = Budget.objects.filter(pk__in=before - set(Budget.objects.filter(active=True).values_list("pk", flat=True)))
        assert all(b.team_id == new.team_id and b.user_id == new.user_id and b.created_by_id in {a.pk for a in self.admins}
                   for b in gone)

    @rule(actor=st.integers(0, 2), which=st.integers(0, 1), cents=CENTS, period=PERIODS)
    def someone_sets_a_project_budget(self, actor, which, cents, period):
        """Staff or either team's admin: only staff and the project's team admins may."""
        who = [self.staff, *self.admins][actor]
        project = self.projects[which]
        try:
            budget = budget_set_for_project(actor=who, project=project, amount=Decimal(cents) / 100, period=period)
        except BudgetPermissionDenied:
            assert who != self.staff and who != self.admins[which]
            self.seen["set_refused"] += 1
            return
        assert who in (self.staff, self.admins[which])
        assert budget.project_id == project.pk and budget.team_id == project.team_id and budget.user_id is None
        others = Budget.objects.filter(project=project, active=True).exclude(pk=budget.pk)
        assert all(b.created_by_id == self.staff.pk for b in others) and (who != self.staff or not others)

    @rule(cents=st.sampled_from([None, 30, 100]))
    def staff_changes_the_default(self, cents):
        policy = SpendingPolicy.current()
        policy.default_amount = None if cents is None else Decimal(cents) / 100
        policy.default_period = "week"
        policy.save()

    @rule(who=st.integers(0, 2), which=st.integers(0, 1), pro=st.booleans(), in_project=st.booleans())
    def submit(self, who, which, pro, in_project):
        user = [*self.members, self.admins[0]][who]
        team = self.teams[which] if Membership.objects.filter(user=user, team=self.teams[which]).exists() else None
        overrides = dict(mode="pro-text-to-video", duration=5, resolution="1080p") if pro else {}
        if in_project and team is not None:
            overrides["project_id"] = self.projects[which].pk
        held_before = LedgerEntry.objects.filter(kind="hold").count()
        try:
            generation = services.generation_create(user=user, params=make_params(self.account, **overrides), team=team)
        except services.GenerationRefused as exc:
            assert exc.code == "budget_exceeded"
            assert LedgerEntry.objects.filter(kind="hold").count() == held_before
            self.seen["refused"] += 1
            return
        self.seen["held"] += 1
        Generation.objects.filter(pk=generation.pk).update(state=State.SUBMITTED, provider_task_id=f"t-{generation.pk}")
        self.generations.append(generation.pk)
        layers = budget_layers_for(user=user, team=generation.team_id, project=generation.project_id)
        if generation.project_id:
            self.seen["in_project"] += 1
            assert any(b.project_id == generation.project_id for b in layers) == Budget.objects.filter(
                project_id=generation.project_id, active=True).exists()
        truth = [committed_in(budget=layer, now=self.clock.now) for layer in layers]
        assert committed_for(layers, now=self.clock.now) == truth  # the check's running totals are the ledger's sums
        for layer, committed in zip(layers, truth, strict=True):
            if layer.hard:
                assert committed <= layer.amount, layer

    @rule(data=st.data(), ok=st.booleans())
    def provider_answers(self, data, ok):
        if not self.generations:
            return
        pk = data.draw(st.sampled_from(self.generations))
        update = (TaskUpdate(task_id="t", state=TaskState.SUCCEEDED, provider_state="success", result_urls=("http://x/v.mp4",))
                  if ok else TaskUpdate(task_id="t", state=TaskState.FAILED, provider_state="failed", fail_code="X"))
        services.generation_apply_update(generation_id=pk, update=update)

    @rule(days=st.sampled_from([1, 7, 31]))
    def time_passes(self, days):
        self.clock.now += timedelta(days=days)

    @invariant()
    def every_running_total_equals_the_ledgers_sum(self):
        assert_totals_equal_the_ledger(users=[*self.members, *self.admins, self.staff], teams=self.teams, projects=self.projects)

    @invariant()
    def every_hold_is_booked_to_one_of_the_members_teams(self):
        for entry in LedgerEntry.objects.filter(user__in=[*self.members, self.admins[0]], kind="hold"):
            assert entry.team_id is None or Membership.objects.filter(user_id=entry.user_id, team_id=entry.team_id).exists()


@pytest.mark.postgres
@pytest.mark.django_db
def test_budget_layers_state_machine(apixo_account, monkeypatch):
    clock = type("Clock", (), {"now": None, "__call__": lambda self: self.now})()
    monkeypatch.setattr(timezone, "now", clock)
    monkeypatch.setattr(services, "enqueue_submit", lambda gid: None)
    monkeypatch.setattr(services, "enqueue_archive", lambda gid, attempt=None: None)
    LayersMachine.account = apixo_account
    LayersMachine.clock = clock
    LayersMachine.seen = {"held": 0, "refused": 0, "set_refused": 0, "in_project": 0}
    run_state_machine_as_test(
        LayersMachine,
        settings=settings(max_examples=15, stateful_step_count=25, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]),
    )
    assert all(LayersMachine.seen[k] > 0 for k in ("held", "refused", "set_refused", "in_project")), LayersMachine.seen
