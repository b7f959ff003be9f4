"""``manage.py run_workers``: a django-q2 cluster (what ``qcluster`` starts) that stops cleanly.

django-q2's own ``qcluster`` stops the cluster from inside its signal handler (an
``Event.set()`` in signal context, django-q2 issue #346), and hangs for good when the
signal also reached its children (``honcho``, ``systemd``'s control-group kill and a
terminal's Ctrl-C all signal the whole group): a child that died while waiting on the
stop event leaves ``Event.set()`` waiting for it forever. Only SIGKILL then ends it.

It also enqueues one poll sweep as the cluster starts (``generations.tasks.poll_sweep_at_start``),
so nothing waits for the schedule's next minute tick.

This command starts the same ``django_q.cluster.Cluster`` but handles SIGTERM and SIGINT
itself: the handler only notes the signal; the main loop then sends SIGTERM to every
process of the cluster (the sentinel, the workers, the monitor, the pusher) and waits for
them to exit, up to ``--grace`` seconds, SIGKILL after that. A worker in the middle of a
submit or a poll sweep holds the signal back until its step is recorded
(``generations.tasks.finish_before_sigterm``); an interrupted task is redelivered by the
broker after ``Q_CLUSTER["retry"]`` seconds and finds its work done or claimed.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand


def descendants(pid: int) -> list[int]:
    """Every live descendant of ``pid`` (children, grandchildren, ...), read from /proc (Linux)."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) ": state, ppid, ...
        if fields[0] == "Z":
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


class Command(BaseCommand):
    help = "Run a django-q2 cluster (workers, monitor, scheduler) that stops cleanly on SIGTERM or SIGINT."

    def add_arguments(self, parser):
        parser.add_argument(
            "--grace", type=float, default=60.0,
            help="seconds the cluster's processes get to finish their step after SIGTERM before SIGKILL (default 60)",
        )

    def handle(self, *args, grace: float, **options):
        from django_q.cluster import Cluster

        settings.SECRET_KEY  # noqa: B018 (the cluster signs tasks: fail early without one)
        stop = threading.Event()
        cluster = Cluster()  # installs django-q2's signal handlers: replaced right below
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda signum, frame: stop.set())
        cluster.start()
        # A first sweep now: the schedule's next tick may be up to a minute away.
        from django_q.tasks import async_task

        async_task("generations.tasks.poll_sweep_at_start", task_name="poll sweep at start")
        while not stop.wait(0.5):
            if not cluster.sentinel.is_alive():
                self.stderr.write("run_workers: the cluster's sentinel exited; stopping")
                break
        self.stdout.write("run_workers: stopping the cluster")
        me = os.getpid()
        for pid in descendants(me):
            _signal(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while (left := descendants(me)) and time.monotonic() < deadline:
            time.sleep(0.1)
        for pid in left:
            _signal(pid, signal.SIGKILL)
        cluster.sentinel.join(timeout=1)
        self.stdout.write("run_workers: stopped" + (f" ({len(left)} killed after {grace:g} s)" if left else ""))


def _signal(pid: int, signum: int) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass
