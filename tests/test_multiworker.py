"""Two real django-q2 clusters on one PostgreSQL poll 300 generations in flight (issue 5, "Proof").

The test process creates and submits 300 generations to the APIXO sandbox (5 s each, 50 ms per
answer). Two ``manage.py run_workers`` clusters, ``a`` and ``b``, run ``generations.tasks.poll_sweep``
(two sweeps at a time in each, kept topped up) until every generation has ended. Then:

- every generation succeeded and was captured exactly once (hold, then one capture);
- the sandbox received exactly one submit per generation;
- both clusters polled;
- no task was polled twice at once: per task id, the sandbox's status requests, each from its
  arrival to its answer (``latency_ms`` makes each one last at least 50 ms), never overlap;
- each task was polled at its cadence: never before its first delay after the submit, never
  sooner than its interval after the previous answer, and ``poll_count`` matches the requests.

Test harness choices:

- The clusters run ``config.settings_test`` plus django-q2's ``ALT_CLUSTERS`` (a two-line module
  written to a temporary directory), so that each cluster has its own queue (``Q_CLUSTER_NAME``):
  the test hands sweeps to each, and django-q2 records which cluster ran which sweep.
- Archives are out of scope here: a trigger on the test database keeps succeeded generations
  out of the archive queue (``archive_state`` stays empty), so that 300 downloads and poster
  frames do not eat the CPU the sweeps need. The archive path has its own tests.
- The test process reuses one TLS context for its 300 submits (``make_submit_client`` builds
  one per submit, ~40 ms of CPU each).
"""

from __future__ import annotations

import json
import os
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import certifi
import httpx
import pytest
from django.conf import settings as django_settings
from django.db import connection

from billing.models import LedgerEntry
from generations import services
from generations.models import Generation, State
from generations.services import submit as submit_step
from providers.models import ProviderAccount

from .conftest import make_params
from .pg_roles import execute_as_owner

pytestmark = [pytest.mark.postgres, pytest.mark.e2e, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

ROOT = Path(__file__).resolve().parent.parent
KEY = "sk-test-apixo-multiworker"
TASKS = 300
GENERATION_SECONDS = 5.0
LATENCY_MS = 50
CLUSTERS = ("a", "b")
SWEEPS_PER_CLUSTER = 2
SWEEP_SECONDS = 4.0
DEADLINE_SECONDS = 50.0
#: APIXO's cadence (first poll 30 s after the submit, then every 12.5 s ± 20 %) times 0.1:
#: 3 s, then 1.25 s, so that each 5 s task is polled a few times at a rate two CPUs sustain.
TIME_SCALE = 0.1

CLUSTER_SETTINGS = f"""
from config.settings_test import *  # noqa: F403
Q_CLUSTER = {{**Q_CLUSTER, "ALT_CLUSTERS": {{"a": {{}}, "b": {{}}}}}}  # noqa: F405
HAILUO_POLL_TIME_SCALE = {TIME_SCALE}
"""

NO_ARCHIVE_TRIGGER = """
CREATE FUNCTION multiworker_no_archive() RETURNS trigger AS $$
BEGIN
    IF NEW.archive_state = 'pending' THEN
        NEW.archive_state := '';
        NEW.next_archive_at := NULL;
    END IF;
    RETURN NEW;
END $$ LANGUAGE plpgsql;
CREATE TRIGGER multiworker_no_archive BEFORE INSERT OR UPDATE ON generations_generation
    FOR EACH ROW EXECUTE FUNCTION multiworker_no_archive();
"""


def _database_url() -> str:
    db = django_settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


#: The sandbox runs in a process of its own (the test process is busy submitting) and notes
#: when each API answer was ready (``end``) next to the request's arrival (``time``).
SANDBOX = f"""
import sys, time
from providers.sandbox import start_sandbox

handle = start_sandbox("apixo", generation_seconds={GENERATION_SECONDS}, latency_ms={LATENCY_MS}, api_keys=["{KEY}"])
update = handle.server.log.update

def update_with_end(record, **changes):
    if "status" in changes:
        changes.setdefault("end", time.time())
    update(record, **changes)

handle.server.log.update = update_with_end
print(handle.base_url, flush=True)
sys.stdin.read()  # serve until the test closes stdin
handle.stop()
"""


class SandboxProcess:
    def __init__(self):
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SANDBOX], cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        self.base_url = self.proc.stdout.readline().strip()
        self.origin = self.base_url.removesuffix("/api/v1")

    def _get(self, path):
        with urllib.request.urlopen(self.origin + path, timeout=30) as response:
            return json.load(response)

    def requests(self, kind):
        return self._get(f"/_sandbox/requests?kind={kind}")

    def tasks(self):
        return self._get("/_sandbox/tasks")

    def stop(self):
        self.proc.stdin.close()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def sandbox():
    handle = SandboxProcess()
    assert handle.base_url.startswith("http://127.0.0.1:"), handle.base_url
    yield handle
    handle.stop()


@pytest.fixture
def account(db, sandbox):
    account = ProviderAccount(kind="apixo", label="APIXO multi-worker", base_url=sandbox.base_url)
    account.set_api_key(KEY)
    account.save()
    return account


@pytest.fixture
def no_archives(db):
    execute_as_owner(NO_ARCHIVE_TRIGGER)  # DDL: the app role the suite runs as may not
    yield
    execute_as_owner("DROP TRIGGER multiworker_no_archive ON generations_generation; DROP FUNCTION multiworker_no_archive()")


@pytest.fixture
def clusters(tmp_path, no_archives):
    """Two clusters (``manage.py run_workers``) on the test database, each with its own queue."""
    (tmp_path / "multiworker_settings.py").write_text(CLUSTER_SETTINGS)
    procs = {}
    for name in CLUSTERS:
        env = dict(
            os.environ,
            DATABASE_URL=_database_url(),
            DJANGO_SETTINGS_MODULE="multiworker_settings",
            PYTHONPATH=os.pathsep.join([str(tmp_path), str(ROOT)]),
            Q_CLUSTER_NAME=name,
            HAILUO_Q_WORKERS=str(SWEEPS_PER_CLUSTER + 1),
            HAILUO_POLL_SWEEPERS=str(SWEEPS_PER_CLUSTER * len(CLUSTERS)),
            HAILUO_PUBLIC_BASE_URL="",  # no callbacks: polling alone
            HAILUO_MEDIA_ROOT=str(tmp_path / "media"),
        )
        env.pop("DATABASE_MIGRATE_URL", None)  # the app role only (tests/pg_roles.py)
        log = open(tmp_path / f"qcluster-{name}.log", "w+")
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "run_workers"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        procs[name] = (proc, log)
    yield procs
    for proc, _ in procs.values():
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    outputs = {}
    for name, (proc, log) in procs.items():
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.seek(0)
        outputs[name] = log.read()
        log.close()
    for name, output in outputs.items():
        assert "Traceback" not in output, f"cluster {name}:\n{output[-4000:]}"


def _create_and_submit(member, account, n: int, threads: int = 6) -> tuple[list, list[str]]:
    """Create and submit ``n`` generations from a few threads, as several web workers would."""

    def work(numbers):
        try:
            out = []
            for i in numbers:
                pk = services.generation_create(user=member, params=make_params(account, prompt=f"multi-worker clip {i}")).pk
                out.append((pk, services.generation_submit(generation_id=pk)))
            return out
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=threads) as pool:
        done = [pair for chunk in pool.map(work, [range(i, n, threads) for i in range(threads)]) for pair in chunk]
    return [pk for pk, _ in done], [state for _, state in done]


def test_two_clusters_poll_300_tasks_each_once_at_a_time(member, account, sandbox, clusters, monkeypatch, settings):
    from django_q.models import Task
    from django_q.tasks import async_task

    settings.HAILUO_POLL_TIME_SCALE = TIME_SCALE  # the submit sets the first poll time
    settings.HAILUO_PROVIDER_READ_TIMEOUT = 30.0  # a starved CPU must not turn a submit into a timeout

    monkeypatch.setattr(services, "enqueue_submit", lambda gid: None)  # the test process submits
    tls = ssl.create_default_context(cafile=certifi.where())
    monkeypatch.setattr(
        submit_step, "make_submit_client", lambda: httpx.AsyncClient(follow_redirects=False, trust_env=False, verify=tls)
    )
    sweeps: dict[str, list[str]] = {name: [] for name in CLUSTERS}
    stop = threading.Event()

    def keep_sweeping():
        """Keep SWEEPS_PER_CLUSTER sweeps queued or running in each cluster until told to stop."""
        try:
            while not stop.is_set():
                ended = set(Task.objects.filter(id__in=[t for ts in sweeps.values() for t in ts]).values_list("id", flat=True))
                for name in CLUSTERS:
                    for _ in range(SWEEPS_PER_CLUSTER - len([t for t in sweeps[name] if t not in ended])):
                        task_id = async_task("generations.tasks.poll_sweep", SWEEP_SECONDS, cluster=name, task_name=f"sweep {name}")
                        sweeps[name].append(task_id)
                stop.wait(0.25)
        finally:
            connection.close()

    started = time.monotonic()
    feeder = threading.Thread(target=keep_sweeping, daemon=True)
    feeder.start()
    try:
        # 600 generations are far beyond the site-wide default budget ($50 a month): this
        # test is about polling, so staff grant the member unlimited spend (billing.UnlimitedGrant).
        from billing.models import UnlimitedGrant

        UnlimitedGrant.objects.get_or_create(user=member, defaults={"reason": "multi-worker polling test"})
        ids, states = _create_and_submit(member, account, TASKS)
        assert Counter(states) == {State.SUBMITTED: TASKS}
        submitted = time.monotonic() - started
        while time.monotonic() - started < DEADLINE_SECONDS:
            if Generation.objects.filter(pk__in=ids, state=State.SUCCEEDED).count() == TASKS:
                break
            time.sleep(0.25)
    finally:
        stop.set()
        feeder.join(10)
    elapsed = time.monotonic() - started
    ended = Counter(Generation.objects.filter(pk__in=ids).values_list("state", flat=True))
    assert ended == {State.SUCCEEDED: TASKS}, f"after {elapsed:.0f} s: {ended}"

    # Let the sweeps still running end, so that the clusters stop cleanly.
    all_sweeps = [t for ts in sweeps.values() for t in ts]
    deadline = time.monotonic() + SWEEP_SECONDS + 15
    while Task.objects.filter(id__in=all_sweeps).count() < len(all_sweeps) and time.monotonic() < deadline:
        time.sleep(0.2)

    # Both clusters polled.
    polled_by: dict[str, int] = defaultdict(int)
    for task in Task.objects.filter(id__in=all_sweeps):
        assert task.success, task.result
        polled_by[task.cluster] += (task.result or {}).get("polled", 0)
    assert set(polled_by) == set(CLUSTERS) and all(polled_by.values()), dict(polled_by)

    # Held once and captured exactly once each, at the held amount.
    entries = list(LedgerEntry.objects.filter(generation_id__in=ids).values_list("generation_id", "kind", "amount"))
    per_generation = Counter((generation_id, kind) for generation_id, kind, _ in entries)
    assert len(per_generation) == 2 * TASKS and set(per_generation.values()) == {1}
    assert Counter(kind for _, kind in per_generation) == {"hold": TASKS, "capture": TASKS}
    assert {amount for _, _, amount in entries} == {Decimal("0.336")}

    # Exactly one submit per generation reached the provider.
    log = sandbox.requests("api")
    assert log and log[0]["seq"] == 1, "the sandbox's request log overflowed"
    posts = Counter(r["body"]["input"]["prompt"] for r in log if r["method"] == "POST")
    assert len(posts) == TASKS and set(posts.values()) == {1}
    created = {t["taskId"]: t["created"] for t in sandbox.tasks()}
    assert len(created) == TASKS

    # Never polled twice at once; polled at the cadence.
    first_delay = 30.0 * TIME_SCALE  # APIXO standard: 30 s after the submit
    interval = 12.5 * TIME_SCALE * 0.8  # then 12.5 s, jittered down to -20 %
    spans: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for r in log:
        if r["method"] == "GET" and "statusTask" in r["path"]:
            spans[r["query"]["taskId"]].append((r["time"], r["end"]))
    assert set(spans) == set(created)
    poll_counts = dict(Generation.objects.filter(pk__in=ids).values_list("provider_task_id", "poll_count"))
    for task_id, task_spans in spans.items():
        task_spans.sort()
        assert task_spans[0][0] >= created[task_id] + first_delay - 0.01, (task_id, created[task_id], task_spans[0])
        for (_, end), (start, _) in zip(task_spans, task_spans[1:], strict=False):
            assert start >= end, f"{task_id} was polled twice at once: {task_spans}"
            assert start - end >= interval - 0.01, f"{task_id} was polled again {start - end:.3f} s after an answer"
        assert poll_counts[task_id] == len(task_spans)
    print(f"\n{TASKS} tasks submitted in {submitted:.1f} s, all ended in {elapsed:.1f} s; "
          f"{sum(map(len, spans.values()))} polls, by cluster {dict(polled_by)}")
