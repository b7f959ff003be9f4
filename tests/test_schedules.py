"""``manage.py setup_schedules``: every schedule the app needs, idempotent, orphans removed."""

from __future__ import annotations

import pytest
from django.core.management import call_command
from django_q.models import Schedule

from generations.management.commands.setup_schedules import PREFIX, SCHEDULES

pytestmark = pytest.mark.django_db


def test_setup_schedules_is_idempotent_and_removes_orphans():
    Schedule.objects.create(name=f"{PREFIX}retired", func="generations.tasks.sweep_once", schedule_type=Schedule.MINUTES)
    Schedule.objects.create(name="someone-elses", func="math.floor", schedule_type=Schedule.HOURLY)
    for _ in range(2):
        call_command("setup_schedules", stdout=open("/dev/null", "w"))
    ours = dict(Schedule.objects.filter(name__startswith=PREFIX).values_list("name", "func"))
    assert ours == {
        f"{PREFIX}poll-sweep": "generations.tasks.poll_sweep",
        f"{PREFIX}balance-snapshots": "billing.tasks.snapshot_balances",
        f"{PREFIX}webhook-deliveries": "webhooks.tasks.deliveries_sweep",
        f"{PREFIX}reconciliation-digest": "generations.tasks.reconciliation_digest",
        f"{PREFIX}approvals-expire": "approvals.tasks.expire_pending",
    }
    assert set(ours) == set(SCHEDULES)
    assert Schedule.objects.filter(name="someone-elses").exists()  # not ours: left alone
    sweep = Schedule.objects.get(name=f"{PREFIX}poll-sweep")
    assert (sweep.schedule_type, sweep.minutes, sweep.repeats) == (Schedule.MINUTES, 1, -1) and sweep.next_run
