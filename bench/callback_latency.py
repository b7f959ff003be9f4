#!/usr/bin/env python
"""Callback latency: from a provider's callback POST to the generation succeeded and captured.

Prints figures; it is not a test. See bench/README.md ("callback_latency.py").

    scripts/with-postgres.sh .venv/bin/python bench/callback_latency.py [--tasks 200] [--spacing 0.05] [--modes queue,inline]

The production processes, started as ``scripts/start.sh`` starts them, on the throwaway
PostgreSQL of ``scripts/with-postgres.sh`` (DEBUG off, ``config.settings``):

- ``scripts/start.sh release`` (migrate, schedules), once;
- an APIXO sandbox process (``python -m providers.sandbox apixo``) on a free port;
- per mode, ``scripts/start.sh web`` (gunicorn, ``deploy/gunicorn.conf.py`` defaults) and
  ``scripts/start.sh worker`` (``run_workers``: django-q2 on the PostgreSQL ORM broker,
  ``Q_CLUSTER`` as configured, its poll sweep and the schedules running), with
  ``HAILUO_CALLBACK_STATUS_READ`` set to the mode:
  ``queue`` (the old path, the baseline: the callback queues the status read on django-q2)
  or ``inline`` (the read is done in the callback's request).

For each mode, ``--tasks`` generations (a ledger hold each) are submitted with the real
``services.generation_submit`` (so the sandbox gets each one's real callback URL, pointing at
gunicorn), all in flight at once; the sandbox finishes them ``--spacing`` s apart (``[seconds:N]``
prompt markers) and POSTs each callback. ``HAILUO_POLL_TIME_SCALE`` is large, so no poll
sweep reads them before their callback: every success comes through the callback's read.
Each success queues an archive download on the cluster (the sandbox's MP4), as in production.

Measured per task: the callback's POST start (the sandbox's request log: its ``time`` minus
``duration_ms``) to the ``capture`` ledger entry's ``created_at`` (written in the same
transaction as the move to ``succeeded``). Also the callback request's own duration (what the
provider waits for), how many status reads and submits each task got, and captures per
generation (must be exactly 1).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

API_KEY = "sk-bench-callback-0001"
MODEL, MODE = "hailuo-2-3", "standard-text-to-video"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", type=int, default=200, help="generations in flight at once (default 200)")
    p.add_argument("--spacing", type=float, default=0.1, help="seconds between two tasks finishing (default 0.1: 10 callbacks/s)")
    p.add_argument("--lead", type=float, default=4.0, help="seconds from the last submit to the first task finishing (default 4)")
    p.add_argument("--warmup", type=int, default=20,
                   help="tasks driven through callbacks first, per mode, not measured (every gunicorn worker's first "
                        "callback imports and connects; default 20)")
    p.add_argument("--modes", default="queue,inline", help="HAILUO_CALLBACK_STATUS_READ values, in order (default queue,inline)")
    p.add_argument("--json", default="", help="also write the raw results as JSON to this path")
    return p.parse_args(argv)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


class Processes:
    """Child processes each in its own process group, stopped with SIGTERM to the group (SIGKILL after 30 s)."""

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str], env: dict) -> None:
        with open(self.log_dir / f"{name}.log", "w") as log:
            self.procs[name] = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                                start_new_session=True)

    def check(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited ({proc.returncode}):\n{(self.log_dir / f'{name}.log').read_text()[-3000:]}")

    def stop(self, *names: str) -> None:
        for name in names or list(self.procs):
            proc = self.procs.pop(name)
            try:
                os.killpg(proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def group_cpu_seconds(pgid: int) -> float:
    """CPU seconds (user + system, with reaped children such as ffmpeg) of every live process in a process group."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:
            total += sum(int(f) for f in fields[11:15]) / tick
    return total


def _wait(what: str, check, timeout: float, procs: Processes, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        procs.check()
        try:
            last = check()
        except Exception as exc:  # noqa: BLE001 (not up yet)
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise SystemExit(f"timed out waiting for {what} (last: {last!r})")


def make_env(tmp: Path, web_port: int, sandbox_port: int) -> dict:
    """The production environment (README "Configuration"), on the throwaway database."""
    from cryptography.fernet import Fernet

    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(tmp)),
        "PYTHON": sys.executable,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "HAILUO_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DATABASE_URL": os.environ["DATABASE_URL"],
        **({"DATABASE_MIGRATE_URL": os.environ["DATABASE_MIGRATE_URL"]} if os.environ.get("DATABASE_MIGRATE_URL") else {}),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DJANGO_SECURE_COOKIES": "0",
        "HAILUO_PUBLIC_BASE_URL": f"http://127.0.0.1:{web_port}",
        "HAILUO_ALLOWED_PRIVATE_HOSTS": f"127.0.0.1:{sandbox_port}",
        "HAILUO_MEDIA_ROOT": str(tmp / "media"),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp / "prometheus"),
        # No sweep reads a task before its callback: the first poll is hours away.
        "HAILUO_POLL_TIME_SCALE": "1000",
        "PORT": str(web_port),
        "GUNICORN_ACCESS_LOG": "",
    }


def setup_django(env: dict) -> None:
    os.environ.update(env)
    import logging

    import django

    django.setup()
    logging.disable(logging.INFO)  # the bench's own submits: their lifecycle lines are noise here


def create_and_submit(n: int, spacing: float, lead: float, account, user, team) -> list:
    """``n`` generations with a hold each, submitted one after another; task ``i`` finishes at the sandbox
    ``lead + i * spacing`` s after the last submit (``[seconds:N]`` computed at each submit)."""
    from django.db import transaction

    from billing import services as billing_services
    from billing.pricing import Quote
    from generations import services
    from generations.models import Generation, State

    ids = []
    for i in range(n):
        with transaction.atomic():
            g = Generation.objects.create(
                user=user, team=team, provider_account=account, provider_kind="apixo", model=MODEL, mode=MODE,
                prompt=f"bench callback {i}", duration=6, resolution="768p", quoted_amount=Decimal("0.336"),
            )
            billing_services.ledger_hold(generation=g, quote=Quote(Decimal("0.336"), None, {}))
        ids.append(g.pk)
    submit_seconds = 0.04 * n + 2.0  # an upper bound of the submits' wall time, measured below
    finish_at = time.time() + submit_seconds + lead
    for i, gid in enumerate(ids):
        seconds = max(0.5, finish_at + i * spacing - time.time())
        Generation.objects.filter(pk=gid).update(prompt=f"bench callback {i} [seconds:{seconds:.3f}]")
        state = services.generation_submit(generation_id=gid)
        if state != State.SUBMITTED:
            raise SystemExit(f"submit of {gid} ended {state}")
    return ids


def run_mode(mode: str, args, base_env: dict, procs: Processes, sandbox, account, user, team) -> dict:
    """Start gunicorn and a worker cluster in ``mode``, drive ``args.tasks`` callbacks, collect the figures."""
    import httpx
    from django.db.models import Count

    from billing.models import LedgerEntry
    from generations.models import Generation, State

    env = dict(base_env, HAILUO_CALLBACK_STATUS_READ=mode)
    procs.start(f"web-{mode}", ["scripts/start.sh", "web"], env)
    procs.start(f"worker-{mode}", ["scripts/start.sh", "worker"], env)
    web = httpx.Client(base_url=env["HAILUO_PUBLIC_BASE_URL"], trust_env=False, timeout=10)
    _wait("gunicorn", lambda: web.get("/healthz/live").status_code == 200, 60, procs)
    time.sleep(3.0)  # the cluster's workers up, its first sweep started

    def drive(n: int, label: str) -> list:
        ids = create_and_submit(n, args.spacing, args.lead, account, user, team)
        expected_end = time.time() + args.lead + n * args.spacing

        def all_final():
            return Generation.objects.filter(pk__in=ids, state=State.SUCCEEDED).count() == len(ids) or None

        _wait(f"{len(ids)} generations to succeed ({label})", all_final, max(60.0, expected_end - time.time() + 60), procs, 0.5)
        return ids

    if args.warmup:
        drive(args.warmup, f"{mode} warm-up")
    time.sleep(2.0)
    sandbox.post("/_sandbox/reset")
    groups = {name: procs.procs[f"{name}-{mode}"].pid for name in ("web", "worker")}
    cpu_before = {name: group_cpu_seconds(pgid) for name, pgid in groups.items()}
    before = time.time()
    ids = drive(args.tasks, mode)
    time.sleep(1.0)
    cpu_ms = {name: round((group_cpu_seconds(pgid) - cpu_before[name]) * 1000 / len(ids), 1) for name, pgid in groups.items()}
    callbacks = sandbox.get("/_sandbox/requests", params={"kind": "callback"}).json()
    api = sandbox.get("/_sandbox/requests", params={"kind": "api"}).json()
    procs.stop(f"web-{mode}", f"worker-{mode}")
    task_of = dict(Generation.objects.filter(pk__in=ids).values_list("provider_task_id", "pk"))
    first_post: dict = {}
    answered: dict = {}
    attempts: dict = {}
    for c in callbacks:
        if c["time"] < before:
            continue
        gid = task_of.get(c.get("task_id"))
        if gid is None:
            continue
        start = c["time"] - c["duration_ms"] / 1000.0
        attempts[gid] = attempts.get(gid, 0) + 1
        if gid not in first_post or start < first_post[gid]:
            first_post[gid] = start
            answered[gid] = c["duration_ms"] / 1000.0
    captured = {
        gid: at.timestamp()
        for gid, at in LedgerEntry.objects.filter(generation_id__in=ids, kind="capture").values_list("generation_id", "created_at")
    }
    captures = dict(LedgerEntry.objects.filter(generation_id__in=ids, kind="capture").values_list("generation_id")
                    .annotate(n=Count("id")).values_list("generation_id", "n"))
    reads: dict = {}
    submits: dict = {}
    for r in api:
        if r["time"] < before:
            continue
        tid = r.get("task_id") or (r.get("query") or {}).get("taskId")
        if r["method"] == "GET" and tid in task_of:
            reads[tid] = reads.get(tid, 0) + 1
        elif r["method"] == "POST" and tid in task_of:
            submits[tid] = submits.get(tid, 0) + 1
    latencies = [captured[g] - first_post[g] for g in ids if g in captured and g in first_post]
    before_callback = sum(1 for x in latencies if x < 0)
    return {
        "mode": mode, "tasks": len(ids), "callbacks_seen": len(first_post), "captured": len(captured),
        "latency_ms": {k: round(_pct(latencies, q) * 1000, 1) for k, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99), ("max", 1.0))},
        "mean_ms": round(statistics.mean(latencies) * 1000, 1) if latencies else None,
        "callback_request_ms": {k: round(_pct(list(answered.values()), q) * 1000, 1) for k, q in (("p50", 0.5), ("p99", 0.99))},
        "cpu_ms_per_task": cpu_ms,
        "final_before_callback": before_callback,
        "callback_retries": sum(attempts.values()) - len(attempts),
        "captures_per_generation": sorted(set(captures.values())),
        "status_reads_per_task": sorted(set(reads.values())) if reads else [],
        "submits_per_task": sorted(set(submits.values())) if submits else [],
    }


def main(argv=None) -> int:
    args = parse_args(argv)
    if not os.environ.get("DATABASE_URL"):
        raise SystemExit("run under scripts/with-postgres.sh (DATABASE_URL must name a throwaway PostgreSQL)")
    tmp = Path(tempfile.mkdtemp(prefix="bench-callback-"))
    web_port, sandbox_port = _free_port(), _free_port()
    env = make_env(tmp, web_port, sandbox_port)
    procs = Processes(tmp)
    import httpx

    try:
        release = subprocess.run(["scripts/start.sh", "release"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        if release.returncode != 0:
            raise SystemExit(release.stdout + release.stderr)
        procs.start("sandbox", [sys.executable, "-m", "providers.sandbox", "apixo", "--port", str(sandbox_port), "--quiet",
                                "--api-key", API_KEY, "--callback-retry-delays", "1,2,4"], env)
        sandbox = httpx.Client(base_url=f"http://127.0.0.1:{sandbox_port}", trust_env=False, timeout=30)
        health = _wait("the sandbox", lambda: sandbox.get("/_sandbox/health").json(), 30, procs)
        setup_django(env)
        from accounts.models import Membership, Team, User
        from providers.models import ProviderAccount

        user = User.objects.create_user("bench-callback@example.com", "pw-bench-123")
        team = Team.objects.create(name="Bench callbacks")
        Membership.objects.create(user=user, team=team)
        from billing.models import UnlimitedGrant  # hundreds of tasks: beyond the site-wide default budget

        UnlimitedGrant.objects.create(user=user, reason="callback latency benchmark")
        account = ProviderAccount(kind="apixo", label="APIXO sandbox", base_url=health["base_url"])
        account.set_api_key(API_KEY)
        account.save()
        results = []
        for mode in [m.strip() for m in args.modes.split(",") if m.strip()]:
            print(f"{mode}: {args.tasks} tasks, finishing {args.spacing:g} s apart ...", flush=True)
            results.append(run_mode(mode, args, env, procs, sandbox, account, user, team))
            print(f"  {json.dumps(results[-1])}", flush=True)
    finally:
        procs.stop()
    print()
    print(f"## Callback POST → succeeded and captured ({args.tasks} tasks in flight, finishing {args.spacing:g} s apart; "
          f"gunicorn + run_workers, django-q2 on the PostgreSQL broker)")
    print()
    print("| HAILUO_CALLBACK_STATUS_READ | p50 ms | p95 ms | p99 ms | max ms | callback request p50 / p99 ms | "
          "CPU ms per task web / workers | captures per generation | status reads per task | submits per task | callback retries |")
    print("|---|---:|---:|---:|---:|---|---|---|---|---|---:|")
    for r in results:
        lat = r["latency_ms"]
        req = r["callback_request_ms"]
        cpu = r["cpu_ms_per_task"]
        print(f"| {r['mode']} | {lat['p50']} | {lat['p95']} | {lat['p99']} | {lat['max']} | {req['p50']} / {req['p99']} | "
              f"{cpu['web']} / {cpu['worker']} | {r['captures_per_generation']} | {r['status_reads_per_task']} | "
              f"{r['submits_per_task']} | {r['callback_retries']} |")
    by_mode = {r["mode"]: r for r in results}
    if "queue" in by_mode and "inline" in by_mode:
        q, i = by_mode["queue"]["latency_ms"], by_mode["inline"]["latency_ms"]
        print()
        print(f"inline / queue: p50 {i['p50'] / q['p50']:.2f}, p99 {i['p99'] / q['p99']:.2f}; "
              f"goal p99 ≤ 300 ms: {'met' if i['p99'] <= 300 else 'NOT met'} ({i['p99']} ms)")
    load = os.getloadavg()
    print(f"Machine: {os.cpu_count()} cores, 1/5-min load average {load[0]:.2f} / {load[1]:.2f} (shared with other processes).")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
