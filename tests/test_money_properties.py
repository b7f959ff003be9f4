"""A Hypothesis state machine over submit, succeed, fail, duplicate callback, adjust and
period rollover: the balance shown always equals the sum of entries, no hard budget is
exceeded, every generation ends with a capture or a release, never both, and every running
total the budget check reads (``billing.usage``) equals the ledger's sum for its layer and
period to the cent."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count

import pytest
from django.db import connection
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from accounts.models import Membership, Team, User
from billing.models import Budget, LedgerEntry
from billing.selectors import committed_in, period_bounds
from billing.services import ledger_adjust, ledger_credit
from billing.usage import committed_for
from generations import services
from generations.models import FINAL_STATES, Generation, State
from providers.base import TaskState, TaskUpdate

from .conftest import make_params
from .usage_check import assert_totals_equal_the_ledger

_serial = count()


class Clock:
    """A controllable ``timezone.now`` (period rollover)."""

    START = datetime(2026, 3, 30, 12, 0, tzinfo=UTC)

    def __init__(self):
        self.now = self.START

    def __call__(self):
        return self.now


class LedgerMachine(RuleBasedStateMachine):
    account = None
    clock = None
    seen = {"refused": 0, "nonzero_balance": 0, "totals": 0}

    def __init__(self):
        super().__init__()
        # Every example starts at the same instant: which budget period a submit falls in (and
        # so whether it is refused) must not depend on the examples run before it.
        self.clock.now = Clock.START
        n = next(_serial)
        self.team = Team.objects.create(name=f"prop team {n}", time_zone="Europe/Paris")
        self.user = User.objects.create_user(f"prop{n}@example.com", "x")
        Membership.objects.create(user=self.user, team=self.team)
        self.user_budget = Budget.objects.create(user=self.user, amount=Decimal("2.00"), period="month", hard=True)
        self.team_budget = Budget.objects.create(team=self.team, amount=Decimal("3.00"), period="week", hard=True)
        self.generations: list = []
        self.positive_adjustments: list[tuple[datetime, Decimal]] = []

    @rule(duration=st.sampled_from([6, 10]), pro=st.booleans())
    def submit(self, duration, pro):
        overrides = dict(mode="pro-text-to-video", duration=5, resolution="1080p") if pro else dict(duration=duration)
        try:
            generation = services.generation_create(user=self.user, params=make_params(self.account, **overrides))
        except services.GenerationRefused as exc:
            assert exc.code == "budget_exceeded"
            self.seen["refused"] += 1
            return
        Generation.objects.filter(pk=generation.pk).update(state=State.SUBMITTED, provider_task_id=f"t-{generation.pk}")
        self.generations.append(generation.pk)

    @rule()
    def submit_until_refused(self):
        """A burst of submits: the hard budgets must refuse one before they are exceeded."""
        for _ in range(60):
            before = self.seen["refused"]
            self.submit(duration=10, pro=False)
            if self.seen["refused"] > before:
                return
        raise AssertionError("60 submits in a row were never refused by a $2 budget")

    def _open(self):
        return list(Generation.objects.filter(pk__in=self.generations).exclude(state__in=FINAL_STATES).values_list("pk", flat=True))

    @precondition(lambda self: self.generations)
    @rule(data=st.data(), outcome=st.sampled_from(["success", "failed", "canceled"]))
    def provider_answers(self, data, outcome):
        pk = data.draw(st.sampled_from(self.generations))  # final ones too: a late or duplicate callback
        state = {"success": TaskState.SUCCEEDED, "failed": TaskState.FAILED, "canceled": TaskState.CANCELED}[outcome]
        update = TaskUpdate(task_id="t", state=state, provider_state=outcome, result_urls=("http://x/v.mp4",))
        services.generation_apply_update(generation_id=pk, update=update)

    @precondition(lambda self: self.generations)
    @rule(data=st.data())
    def duplicate_callback_success(self, data):
        pk = data.draw(st.sampled_from(self.generations))
        update = TaskUpdate(task_id="t", state=TaskState.SUCCEEDED, provider_state="success", result_urls=("http://x/v.mp4",))
        services.generation_apply_update(generation_id=pk, update=update)
        services.generation_apply_update(generation_id=pk, update=update)

    @rule(cents=st.integers(min_value=-150, max_value=50))
    def adjust(self, cents):
        if cents == 0:
            return
        amount = Decimal(cents) / 100
        ledger_adjust(user=self.user, team=self.team, amount=amount, reason="property test", created_by=self.user)
        if amount > 0:
            self.positive_adjustments.append((timezone.now(), amount))

    @rule(cents=st.integers(min_value=1, max_value=80))
    def credit(self, cents):
        ledger_credit(user=self.user, team=self.team, amount=Decimal(cents) / 100, reason="goodwill", created_by=self.user)

    @rule(days=st.sampled_from([1, 3, 7, 31]))
    def time_passes(self, days):
        self.clock.now += timedelta(days=days)

    # -- invariants ----------------------------------------------------------------------------
    def _expected(self, budget):
        start, end = period_bounds(budget.period, tz_name=self.team.time_zone, now=self.clock.now)
        entries = LedgerEntry.objects.filter(user=self.user) if budget.user_id else LedgerEntry.objects.filter(team=self.team)
        total = Decimal(0)
        for e in entries:
            if start is not None and not (start <= e.effective_at < end):
                continue
            total += {
                "hold": e.amount, "release": -e.amount, "capture": e.amount - (e.hold_amount or 0),
                "adjustment": e.amount, "credit": -e.amount,
            }[e.kind]
        adjustments = sum((a for when, a in self.positive_adjustments if start is None or start <= when < end), Decimal(0))
        return total, adjustments

    @invariant()
    def balance_equals_sum_of_entries_and_hard_budgets_hold(self):
        for budget in (self.user_budget, self.team_budget):
            expected, adjustments = self._expected(budget)
            shown = committed_in(budget=budget, now=self.clock.now)
            assert shown == expected
            assert committed_for([budget], now=self.clock.now) == [expected]  # what the budget check reads
            self.seen["nonzero_balance"] += shown != 0
            assert shown <= budget.amount + adjustments

    @invariant()
    def every_running_total_equals_the_ledgers_sum_for_its_layer_and_period(self):
        self.seen["totals"] += assert_totals_equal_the_ledger(users=[self.user], teams=[self.team])

    @invariant()
    def settled_once_and_matching_the_state(self):
        for generation in Generation.objects.filter(pk__in=self.generations):
            kinds = sorted(LedgerEntry.objects.filter(generation=generation).values_list("kind", flat=True))
            if generation.state == State.SUCCEEDED:
                assert kinds == ["capture", "hold"]
            elif generation.state in FINAL_STATES:
                assert kinds == ["hold", "release"]
            else:
                assert kinds == ["hold"]


@pytest.mark.django_db
def test_ledger_state_machine(apixo_account, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(timezone, "now", clock)
    monkeypatch.setattr(services, "enqueue_submit", lambda gid: None)
    monkeypatch.setattr(services, "enqueue_archive", lambda gid, attempt=None: None)
    LedgerMachine.account = apixo_account
    LedgerMachine.clock = clock
    LedgerMachine.seen = {"refused": 0, "nonzero_balance": 0, "totals": 0}
    run_state_machine_as_test(
        LedgerMachine,
        settings=settings(max_examples=25, stateful_step_count=30, deadline=None, derandomize=True,
                          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]),
    )
    # The machine really exercised the money rules (not a vacuous pass).
    assert LedgerMachine.seen["refused"] > 0 and LedgerMachine.seen["nonzero_balance"] > 0 and (
        LedgerMachine.seen["totals"] > 0 or connection.vendor != "postgresql"
    )
