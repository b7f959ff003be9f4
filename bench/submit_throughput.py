#!/usr/bin/env python
"""``POST /api/v1/generations`` and an authenticated ``GET`` under gunicorn, against a trivial
view, with a small and then a large ledger in the budget period.

Prints figures; it is not a test. See bench/README.md ("submit_throughput.py").

    scripts/with-postgres.sh .venv/bin/python bench/submit_throughput.py [--seconds 2] [--connections 16] \
        [--reps 9] [--ledger 1000] [--generations 10000] [--large-ledger 1000000]

1. Migrates the throwaway database (``DATABASE_URL``), creates a member of a team with an own
   budget and a team budget large enough never to refuse (so every submit checks two real
   layers and their running totals), an APIXO account (pointing at a closed local port: a
   submit only queues the provider call for a django-q2 worker, and none runs here) and a
   read-write API token, ``--generations`` past generations (a table in use: see
   ``fill_generations``) and ``--ledger`` entries of this month for the member's team (COPY), then ``ANALYZE``.
2. Starts gunicorn as ``scripts/start.sh web`` does (``deploy/gunicorn.conf.py``, gthread) with
   ``--workers`` workers, settings ``bench.settings_bench`` (rate limits lifted; ``bench.urls``
   adds ``/bench/trivial``), access log off.
3. Runs ``wrk`` (Debian's ``wrk``) for ``--seconds`` against, in turn: ``GET /bench/trivial``,
   ``GET /api/v1/generations/{id}`` with the token, ``POST /api/v1/generations`` with the token
   (one new generation, a budget check and a ledger hold per request) and ``POST
   /bench/submit-floor`` (``bench.urls.submit_floor``: the same statements as a submit,
   replayed in one round trip with no Python between them, so the floor under a submit that
   writes these rows; from it and the GET the run prints a bound on any such submit's CPU
   ratio: the trivial view's CPU over the GET's gunicorn CPU plus the floor's PostgreSQL
   CPU); then COPYs entries
   until the period holds ``--large-ledger`` (default 1,000,000), and runs the trivial view and
   the ``POST`` again. Each group runs ``--reps`` times back to back, in short slices (the
   machine's speed drifts by 2x within a minute on a shared host: a ratio compares targets run
   seconds apart); prints the medians of
   requests/s and latency percentiles, non-2xx answers, the median of each target's ratio
   to the trivial view of its own rep with its quartiles, the CPU time per
   request of the gunicorn processes and of PostgreSQL's (from /proc: where the cost is) and the
   "CPU ratio" (the trivial view's CPU per request over the target's: the throughput ratio of a
   server whose CPU is the limit, which moves far less with the machine's speed than the
   requests/s do), and the large-ledger submit rate over the small-ledger one.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import median

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

BODY = {"provider_account_id": 0, "model": "hailuo-2-3", "mode": "standard-text-to-video",
        "prompt": "a paper boat on a rainy street, slow dolly in", "duration": 6, "resolution": "768p"}


#: The submit's floor (``bench.urls.submit_floor``): its statements replayed in one round trip.
FLOOR = "submit floor: the same statements, one round trip, no Python between"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=int, default=2,
                   help="wrk duration per target (default 2: short slices, so each ratio compares neighbours in time)")
    p.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    p.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    p.add_argument("--workers", type=int, default=2, help="gunicorn workers (default 2)")
    p.add_argument("--reps", type=int, default=9, help="repetitions of each target, back to back (default 9; medians)")
    p.add_argument("--ledger", type=int, default=1000, help="ledger entries this month before measuring (default 1,000)")
    p.add_argument("--generations", type=int, default=10_000,
                   help="past generations in the gallery before measuring (default 10,000; see fill_generations)")
    p.add_argument("--large-ledger", type=int, default=1_000_000,
                   help="ledger entries this month for the second submit run (default 1,000,000; 0: skip it)")
    return p.parse_args(argv)


def fill_ledger(user_id: int, team_id: int, account_id: int, count: int) -> None:
    """COPY ``count`` credits of this month for the member's team: money in the period's ledger
    that a budget check summing the ledger could not skip (the running totals absorb them in
    one statement of the ledger's trigger)."""
    from django.db import connection, transaction
    from django.utils import timezone

    from billing.models import LedgerEntry

    if count <= 0:
        return
    now = timezone.now()
    with transaction.atomic(), connection.cursor() as cursor:
        cols = "user_id, team_id, provider_account_id, kind, amount, currency, reason, late, effective_at, created_at"
        with cursor.cursor.copy(f"COPY {LedgerEntry._meta.db_table} ({cols}) FROM STDIN") as copy:
            for _ in range(count):
                copy.write_row((user_id, team_id, account_id, "credit", "0.000001", "USD", "bench", False, now, now))
    from billing.db_roles import as_owner

    with as_owner(), connection.cursor() as cursor:  # so autovacuum does not start during a measurement
        cursor.execute(f"VACUUM (ANALYZE) {LedgerEntry._meta.db_table}")
        cursor.execute("ANALYZE")


def fill_generations(user_id: int, team_id: int, account_id: int, count: int) -> None:
    """``count`` past generations (succeeded, a month back) for the member: a database in use
    rather than an empty table. PostgreSQL caches each connection's plans for the foreign-key
    checks that every new event and ledger entry runs against ``generations_generation``;
    planned while the table looks empty they scan it whole, and keep doing so as the run fills
    it until autovacuum's next ``ANALYZE`` (issue 16: up to a millisecond a check at ~3,000
    rows). :func:`fill_ledger`'s ``ANALYZE`` follows, as autovacuum's would on a live database."""
    from datetime import timedelta
    from decimal import Decimal

    from django.utils import timezone

    from generations.models import Generation, State

    if count <= 0:
        return
    at = timezone.now() - timedelta(days=30)
    rows = [Generation(user_id=user_id, team_id=team_id, provider_account_id=account_id, provider_kind="apixo",
                       model="hailuo-2-3", mode="standard-text-to-video", prompt=f"past generation {i}", duration=6,
                       resolution="768p", quoted_amount=Decimal("0.336"), state=State.SUCCEEDED, created_at=at)
            for i in range(count)]
    Generation.objects.bulk_create(rows, batch_size=2000)


def setup(ledger: int, generations: int = 0) -> tuple[str, int, int, int]:
    """Returns (raw token, provider account id, user id, team id)."""
    from decimal import Decimal

    from django.core.management import call_command

    from accounts.models import ApiToken, Membership, Team, User
    from billing.models import Budget
    from generations.models import Generation
    from providers.models import ProviderAccount

    call_command("migrate", verbosity=0)
    if Generation.objects.exists():
        raise SystemExit("the database already has generations: use a throwaway database (scripts/with-postgres.sh)")
    user = User.objects.create_user("bench@example.com", "pw-bench-12345")
    team = Team.objects.create(name="Bench", time_zone="UTC")
    Membership.objects.create(user=user, team=team)
    Budget.objects.create(user=user, amount=Decimal("1000000"), period="month")  # own layer (replaces the default)
    Budget.objects.create(team=team, amount=Decimal("1000000"), period="month")  # team layer
    account = ProviderAccount(kind="apixo", label="bench", base_url="http://127.0.0.1:9")
    account.set_api_key("sk-bench-0001")
    account.save()
    _, raw = ApiToken.issue(user=user, name="bench")
    fill_generations(user.pk, team.pk, account.pk, generations)
    fill_ledger(user.pk, team.pk, account.pk, ledger)
    return raw, account.pk, user.pk, team.pk


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(url: str, seconds: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise SystemExit(f"gunicorn did not answer {url}")


def cpu_seconds() -> dict[tuple[str, str], float]:
    """CPU seconds (user + system) used so far by each gunicorn and PostgreSQL process, keyed by
    (``"gunicorn"`` or ``"postgres"``, pid), from /proc (Linux); empty elsewhere."""
    if not os.path.isdir("/proc/self"):
        return {}
    tick = os.sysconf("SC_CLK_TCK")
    used = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        group = "gunicorn" if "gunicorn" in cmd else "postgres" if cmd.startswith("postgres") else None
        if group:
            used[(group, pid)] = (int(fields[11]) + int(fields[12])) / tick
    return used


def cpu_used(before: dict, after: dict) -> dict[str, float]:
    """CPU seconds per group between two :func:`cpu_seconds`: each process's own difference (one
    started in between counts whole). A process that ended in between (an autovacuum worker)
    is left out rather than subtracting all it had used, which made a group's figure negative."""
    totals = {"gunicorn": 0.0, "postgres": 0.0} if after else {}
    for (group, pid), seconds in after.items():
        totals[group] += seconds - before.get((group, pid), 0.0)
    return totals


def _cpu(result: dict) -> float:
    """CPU ms per request, gunicorn's and PostgreSQL's together (NaN without /proc)."""
    return result.get("gunicorn_cpu_ms", float("nan")) + result.get("postgres_cpu_ms", float("nan"))


def _quartiles(values: list[float]) -> str:
    """``"q1-q3"`` of ``values`` (three decimals); the lone value for fewer than four."""
    from statistics import quantiles

    if len(values) < 4:
        return ", ".join(f"{v:.3f}" for v in values)
    q1, _, q3 = quantiles(values, n=4)
    return f"{q1:.3f}-{q3:.3f}"


def wrk(url: str, args, *, method: str = "GET", body: str = "", token: str = "") -> dict:
    before = cpu_seconds()
    script = tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False)
    lines = [f'wrk.method = "{method}"']
    if body:
        lines += [f"wrk.body = {json.dumps(body)}", 'wrk.headers["Content-Type"] = "application/json"']
    if token:
        lines.append(f'wrk.headers["Authorization"] = "Bearer {token}"')
    script.write("\n".join(lines) + "\n")
    script.close()
    out = subprocess.run(["wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{args.seconds}s", "--latency",
                          "-s", script.name, url], capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)

    def ms(label: str) -> float:
        m = re.search(rf"{label}\s+([\d.]+)(us|ms|s)\b", out)
        if not m:
            return float("nan")
        return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]

    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    requests = int(re.search(r"(\d+) requests in", out).group(1))
    used = cpu_used(before, cpu_seconds())
    cpu = {f"{k}_cpu_ms": 1000 * seconds / max(requests, 1) for k, seconds in used.items()}
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)), "requests": requests,
            "non_2xx": int(errors.group(1)) if errors else 0, "p50": ms("50%"), "p99": ms("99%"), **cpu}


def main(argv=None) -> int:
    args = parse_args(argv)
    if not shutil.which("wrk"):
        raise SystemExit("wrk is missing: apt-get install wrk")
    if not os.environ.get("DATABASE_URL"):
        raise SystemExit("PostgreSQL only: run it under scripts/with-postgres.sh")
    os.environ["DJANGO_SETTINGS_MODULE"] = "bench.settings_bench"
    import django

    django.setup()
    import httpx

    token, account_id, user_id, team_id = setup(args.ledger, args.generations)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="bench.settings_bench", GUNICORN_BIND=f"127.0.0.1:{port}",
               GUNICORN_WORKERS=str(args.workers), GUNICORN_ACCESS_LOG="", PROMETHEUS_MULTIPROC_DIR="",
               PYTHONPATH=str(REPO))
    # The server's log goes to a file: a pipe nobody reads fills up (64 KB of INFO lines) and
    # freezes the workers mid-transaction.
    server_log = tempfile.NamedTemporaryFile("w+b", prefix="submit-bench-gunicorn-", suffix=".log", delete=False)
    # --max-requests 0: no worker recycling mid-measurement (a restart costs seconds of Django start-up).
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "config.wsgi:application", "-c", "deploy/gunicorn.conf.py",
                               "--max-requests", "0"],
                              cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=server_log, start_new_session=True)
    try:
        wait_up(base + "/bench/trivial")
        body = json.dumps(dict(BODY, provider_account_id=account_id))
        first = httpx.post(base + "/api/v1/generations", content=body, timeout=10,
                           headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        if first.status_code not in (200, 201, 202):
            raise SystemExit(f"POST /api/v1/generations answered {first.status_code}: {first.text[:500]}")
        gid = first.json()["id"]
        floor_url = base + "/bench/submit-floor"
        floor = httpx.post(floor_url, content=body, timeout=10,
                           headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        if floor.status_code != 201:
            raise SystemExit(f"POST /bench/submit-floor answered {floor.status_code}: {floor.text[:500]}")
        from billing.models import LedgerEntry

        small = LedgerEntry.objects.count()
        get_url, post_url = f"{base}/api/v1/generations/{gid}", base + "/api/v1/generations"
        reps: list[dict] = []
        for _ in range(args.reps):  # each rep runs the three targets back to back: a ratio is within one rep
            reps.append({
                "trivial view": wrk(base + "/bench/trivial", args),
                "authenticated GET /api/v1/generations/{id}": wrk(get_url, args, token=token),
                f"POST /api/v1/generations, {small:,} ledger entries": wrk(post_url, args, method="POST", body=body, token=token),
                FLOOR: wrk(floor_url, args, method="POST", body=body, token=token),
            })
        large_reps: list[dict] = []
        if args.large_ledger:
            fill_ledger(user_id, team_id, account_id, args.large_ledger - LedgerEntry.objects.count())
            large = LedgerEntry.objects.count()
            for _ in range(args.reps):
                large_reps.append({
                    "trivial view, large ledger": wrk(base + "/bench/trivial", args),
                    f"POST /api/v1/generations, {large:,} ledger entries": wrk(post_url, args, method="POST", body=body, token=token),
                })
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:  # a worker still finishing wrk's last requests
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(30)
    from django.db import connection

    from billing.models import LedgerEntry

    entries = LedgerEntry.objects.count()
    with connection.cursor() as cursor:
        cursor.execute("SELECT version()")
        version = cursor.fetchone()[0].split(" on ")[0]
    print(f"gunicorn gthread -w {args.workers} (4 threads), wrk -t{args.threads} -c{args.connections} -d{args.seconds}s, "
          f"{args.reps} reps (medians), {version}, {os.cpu_count()} CPUs; ledger entries at the end: {entries:,}\n")
    print("| target | requests/s (median) | p50 | p99 | non-2xx | CPU ms per request: gunicorn + PostgreSQL | "
          "ratio to the trivial view of its rep: median (quartiles) | ratios per rep | CPU ratio: median (quartiles) |")
    print("|---|---:|---:|---:|---:|---:|---:|---|---:|")
    summary = {}
    for group in (reps, large_reps):
        if not group:
            continue
        baseline = next(iter(group[0]))
        for name in group[0]:
            runs = [rep[name] for rep in group]
            ratios = [rep[name]["rps"] / rep[baseline]["rps"] for rep in group]
            cpu_ratios = [_cpu(rep[baseline]) / _cpu(rep[name]) for rep in group]
            summary[name] = {"rps": median(r["rps"] for r in runs), "ratio": median(ratios), "cpu_ratio": median(cpu_ratios)}
            print(f"| {name} | {summary[name]['rps']:,.0f} | {median(r['p50'] for r in runs):.1f} ms | "
                  f"{median(r['p99'] for r in runs):.1f} ms | {sum(r['non_2xx'] for r in runs)} | "
                  f"{median(r.get('gunicorn_cpu_ms', float('nan')) for r in runs):.2f} + "
                  f"{median(r.get('postgres_cpu_ms', float('nan')) for r in runs):.2f} | {summary[name]['ratio']:.3f} "
                  f"({_quartiles(ratios)}) | {', '.join(f'{x:.3f}' for x in ratios)} | "
                  f"{summary[name]['cpu_ratio']:.3f} ({_quartiles(cpu_ratios)}) |")
    names = list(summary)
    post_small = next(n for n in names if n.startswith("POST") and f"{small:,} ledger" in n)
    get_name = "authenticated GET /api/v1/generations/{id}"
    print(f"\nsubmit ratio {summary[post_small]['ratio']:.3f} (CPU ratio {summary[post_small]['cpu_ratio']:.3f}; goal >= 0.20); "
          f"authenticated GET ratio {summary[get_name]['ratio']:.3f} (CPU ratio {summary[get_name]['cpu_ratio']:.3f}; goal >= 0.50)")
    bounds = [_cpu(rep["trivial view"]) / (rep[get_name].get("gunicorn_cpu_ms", float("nan"))
                                           + rep[FLOOR].get("postgres_cpu_ms", float("nan"))) for rep in reps]
    print(f"submit floor ratio {summary[FLOOR]['ratio']:.3f} (CPU ratio {summary[FLOOR]['cpu_ratio']:.3f}): a submit whose "
          "database work were one call, with no Python between its statements")
    print(f"bound on any submit that writes these rows: CPU ratio {median(bounds):.3f} ({_quartiles(bounds)}): the trivial "
          "view's CPU over (the authenticated GET's gunicorn CPU + the floor's PostgreSQL CPU)")
    if large_reps:
        post_large = [n for n in names if n.startswith("POST")][-1]
        print(f"submits/s with the large ledger over the small one: {summary[post_large]['rps'] / summary[post_small]['rps']:.3f}; "
              f"as ratios to the trivial view of their reps: {summary[post_large]['ratio'] / summary[post_small]['ratio']:.3f}; "
              f"as CPU ratios: {summary[post_large]['cpu_ratio'] / summary[post_small]['cpu_ratio']:.3f} (goal >= 0.90)")
    print(json.dumps({"reps": reps, "large_reps": large_reps}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
