"""``manage.py run_workers`` stops cleanly: a SIGTERM to the whole process group (honcho's
Ctrl-C, systemd's stop) or to the main process ends every process of the cluster within
seconds, a running poll sweep first finishing its pass and releasing its slot."""

from __future__ import annotations

import time

import pytest
from django.utils import timezone
from django_q.tasks import async_task

from generations.models import SweepLease

from .conftest import qcluster_process

pytestmark = [pytest.mark.postgres, pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def _wait(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.parametrize("group", [True, False], ids=["SIGTERM to the group", "SIGTERM to the main process"])
def test_a_sigterm_stops_the_cluster_and_its_running_sweep_cleanly(group, tmp_path, settings):
    log_path = tmp_path / "workers.log"
    with qcluster_process(public_base_url="", media_root=tmp_path, log_path=log_path, stop_signal_group=group):
        # What the schedule does every minute: a worker takes the sweep and holds a slot for ~a minute.
        async_task("generations.tasks.poll_sweep", task_name="poll sweep")
        _wait(lambda: SweepLease.objects.filter(expires_at__gt=timezone.now()).exclude(holder="").exists(), 30,
              "the poll sweep to start")
        started = time.monotonic()
    # qcluster_process asserted that every process exited within 15 s, without a traceback.
    assert time.monotonic() - started < 15
    assert not SweepLease.objects.filter(expires_at__gt=timezone.now()).exclude(holder="").exists(), (
        "the sweep was killed holding its slot"
    )
    assert "SIGTERM held back until the task's step ended" in log_path.read_text()
