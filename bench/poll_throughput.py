#!/usr/bin/env python
"""Poll sweep throughput: ``generations_poll`` vs a naive one-by-one poller, against the APIXO sandbox.

Prints figures; it is not a test. See bench/README.md for what is measured and how to read it.

    DJANGO_SETTINGS_MODULE=config.settings_test .venv/bin/python bench/poll_throughput.py \
        [--counts 100,1000,10000] [--latencies 0,200] [--caps 32,256] [--naive-budget 15]

SQLite (a temp-file database, migrated here) unless DATABASE_URL is set; on PostgreSQL
the database DATABASE_URL names is migrated and filled directly (use a throwaway one:
``scripts/with-postgres.sh .venv/bin/python bench/poll_throughput.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import os
import platform
import pstats
import queue
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

API_KEY = "sk-bench-apixo-0042"
CALLBACK_WORKERS = 4  # threads handling callbacks at once (django-q2's default HAILUO_Q_WORKERS)
MODEL = "hailuo-2-3"
MODE = "standard-text-to-video"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ints = lambda s: [int(x) for x in s.split(",") if x.strip()]  # noqa: E731
    floats = lambda s: [float(x) for x in s.split(",") if x.strip()]  # noqa: E731
    p.add_argument("--counts", type=ints, default=[100, 1000, 10000], help="tasks in flight (default 100,1000,10000)")
    p.add_argument("--latencies", type=floats, default=[0.0, 200.0], help="sandbox latency_ms values (default 0,200)")
    p.add_argument("--caps", type=ints, default=[32, 256], help="HAILUO_POLL_CONCURRENCY_PER_ACCOUNT values for the sweep (default 32,256)")
    p.add_argument("--naive-budget", type=float, default=15.0, help="stop a naive run after this many seconds and extrapolate (default 15)")
    p.add_argument("--sweep-budget", type=float, default=45.0, help="stop a sweep run after this many seconds and extrapolate (default 45)")
    p.add_argument("--callbacks", type=int, default=50, help="tasks driven through callbacks for the callback-to-state latency (0: skip; default 50)")
    p.add_argument("--no-compare", dest="compare", action="store_false",
                   help="skip the bottleneck runs (HTTP only, trivial aiohttp server) at the largest count and 0 ms")
    p.add_argument("--compare-count", type=int, default=3000, help="tasks used by the bottleneck runs (default 3000, at most the largest count)")
    p.add_argument("--profile", metavar="PATH", default="",
                   help="cProfile one sweep (largest count, first latency, largest cap), dump to PATH and print the top functions")
    p.add_argument("--sandbox", choices=("tuned", "stock"), default="tuned",
                   help="tuned (default): the sandbox with TCP_NODELAY and a listen backlog of 1024, as any production "
                        "server has; stock: exactly as shipped (Nagle + backlog 5 dominate its figures, see README)")
    p.add_argument("--inprocess-sandbox", action="store_true",
                   help="run the sandbox in this process (start_sandbox) instead of a child process; it then shares our GIL")
    p.add_argument("--allow-nonempty-db", action="store_true", help="run even if the database already holds generations")
    p.add_argument("--keep-db", action="store_true", help="keep the temporary SQLite database")
    p.add_argument("--json", metavar="PATH", default="", help="also write the raw results as JSON")
    p.add_argument("--goal", action="store_true",
                   help="only issue 16's goal: the sweep against plain aiohttp at the same concurrency, "
                        "--goal-count tasks at --goal-latency ms, --goal-reps times (bench/poll_goal.py)")
    p.add_argument("--goal-count", type=int, default=10000, help="tasks in flight for --goal (default 10000)")
    p.add_argument("--goal-latency", type=float, default=200.0, help="sandbox latency_ms for --goal (default 200)")
    p.add_argument("--goal-cap", type=int, default=0, help="concurrency for --goal (default 0: the provider's default)")
    p.add_argument("--goal-reps", type=int, default=3, help="back-to-back pairs for --goal (default 3)")
    # internal: the trivial aiohttp server used for the comparison (runs in a child process)
    p.add_argument("--fake-server", action="store_true", help=argparse.SUPPRESS)
    return p.parse_args(argv)


# ============================================================================================
# A trivial aiohttp server answering APIXO's status JSON (child process, no Django)
# ============================================================================================
def run_fake_server() -> int:
    from aiohttp import web

    exit_with_parent()
    state = {"latency_ms": 0.0}

    async def status(request: web.Request) -> web.Response:
        if not request.headers.get("Authorization", "").startswith("Bearer "):
            return web.json_response({"code": 401, "message": "Unauthorized", "data": {"error": "no key"}}, status=401)
        if state["latency_ms"]:
            await asyncio.sleep(state["latency_ms"] / 1000.0)
        task_id = request.query.get("taskId", "")
        body = {"code": 200, "message": "success", "data": {"taskId": task_id, "state": "pending", "createTime": int(time.time() * 1000)}}
        return web.json_response(body)

    async def config(request: web.Request) -> web.Response:
        state.update(await request.json())
        return web.json_response(state)

    async def main() -> None:
        app = web.Application()
        app.router.add_get("/api/v1/statusTask/{model}", status)
        app.router.add_post("/_fake/config", config)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1024)
        site = web.SockSite(runner, sock)
        await site.start()
        print(f"fake listening: http://127.0.0.1:{sock.getsockname()[1]}/api/v1", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        await runner.cleanup()

    asyncio.run(main())
    return 0


# ============================================================================================
# Child processes: the sandbox (python -m providers.sandbox) and the trivial server
# ============================================================================================
def _http_json(method: str, url: str, payload=None):
    data = json.dumps(payload).encode() if payload is not None else None
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:  # noqa: S310 (loopback)
        return json.loads(resp.read())


class ChildServer:
    """A server in a child process that prints ``...: BASE_URL`` on its first line."""

    def __init__(self, cmd: list[str], name: str):
        env = dict(os.environ, PYTHONPATH=str(REPO))
        self.name = name
        self.proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if ": " not in line:
            self.stop()
            raise RuntimeError(f"{name} did not start: {line!r}")
        self.base_url = line.split(": ", 1)[1].strip()
        self.origin = self.base_url[: -len("/api/v1")]
        self.pid = self.proc.pid
        # drain stdout so the child never blocks on a full pipe
        threading.Thread(target=lambda: self.proc.stdout.read(), daemon=True).start()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def tune_sandbox_tcp() -> None:
    """TCP settings every production HTTP server has, which the stdlib sandbox lacks (see README):
    TCP_NODELAY (else each answer's body waits for the client's delayed ACK: ~40 ms per request
    on one connection) and a listen backlog of 1024 (else, at 5, a burst of new connections
    loses SYNs and waits 1-3 s for their retransmission). Class attributes only; no sandbox
    code changes."""
    from providers.sandbox import common

    common.SandboxRequestHandler.disable_nagle_algorithm = True
    common.SandboxServer.request_queue_size = 1024


def exit_with_parent() -> None:
    """In a child server: stop (SIGTERM to ourselves) as soon as the bench process is gone."""
    parent = os.getppid()

    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, daemon=True).start()


def run_sandbox_child(argv: list[str]) -> int:
    """``--sandbox-child tuned|stock KIND ...``: the sandbox's own command line, optionally TCP-tuned."""
    exit_with_parent()
    flavour, rest = argv[0], argv[1:]
    if flavour == "tuned":
        tune_sandbox_tcp()
    from providers.sandbox.__main__ import main as sandbox_main

    return sandbox_main(rest)


class SandboxProcess(ChildServer):
    """The APIXO sandbox (``start_sandbox`` via the sandbox's own command line) in a child process, so
    its threads do not compete with the poller for our GIL. Same methods as a SandboxHandle."""

    tuned = True

    def __init__(self, **knobs):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--sandbox-child", "tuned" if self.tuned else "stock",
               "apixo", "--port", "0", "--quiet", "--api-key", API_KEY]
        for name, value in knobs.items():
            value = ",".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)
            cmd += ["--" + name.replace("_", "-"), value]
        super().__init__(cmd, "apixo sandbox")

    def configure(self, **knobs):
        return _http_json("POST", f"{self.origin}/_sandbox/config", knobs)

    def requests(self, kind: str | None = None) -> list[dict]:
        query = f"?kind={kind}" if kind else ""
        return _http_json("GET", f"{self.origin}/_sandbox/requests{query}")


class SandboxInProcess:
    """``start_sandbox`` in this process (``--inprocess-sandbox``)."""

    tuned = True

    def __init__(self, **knobs):
        from providers.sandbox import start_sandbox

        if self.tuned:
            tune_sandbox_tcp()
        self.handle = start_sandbox("apixo", api_keys=[API_KEY], **knobs)
        self.base_url, self.origin, self.pid = self.handle.base_url, self.handle.origin, None
        self.name = "apixo sandbox (in process)"

    def configure(self, **knobs):
        return self.handle.configure(**knobs)

    def requests(self, kind=None):
        return self.handle.requests(kind)

    def stop(self):
        self.handle.stop()


class FakeServer(ChildServer):
    def __init__(self):
        super().__init__([sys.executable, str(Path(__file__).resolve()), "--fake-server"], "trivial aiohttp server")

    def configure(self, **knobs):
        return _http_json("POST", f"{self.origin}/_fake/config", knobs)


# ============================================================================================
# CPU accounting
# ============================================================================================
_CLK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int | None) -> float | None:
    """CPU seconds (user + system) used so far by ``pid`` (all its threads), from /proc."""
    if not pid:
        return None
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _CLK
    except (OSError, IndexError, ValueError):
        return None


@dataclass
class Meter:
    """Wall time and CPU of this process, the server process and the database backend."""

    server_pid: int | None
    db_pid: int | None
    wall: float = 0.0
    cpu: dict = field(default_factory=dict)

    def __enter__(self):
        self._t = time.perf_counter()
        self._c = (time.process_time(), proc_cpu(self.server_pid), proc_cpu(self.db_pid))
        return self

    def __exit__(self, *exc):
        self.wall = time.perf_counter() - self._t
        end = (time.process_time(), proc_cpu(self.server_pid), proc_cpu(self.db_pid))
        for name, a, b in zip(("client", "server", "db"), self._c, end, strict=True):
            self.cpu[name] = (b - a) if (a is not None and b is not None) else None

    def pct(self, name: str) -> str:
        value = self.cpu.get(name)
        return "–" if value is None or not self.wall else f"{100 * value / self.wall:.0f}%"


# ============================================================================================
# Django side
# ============================================================================================
def setup_django(args) -> str | None:
    """Point Django at a temp SQLite file (unless DATABASE_URL), set it up, migrate. Returns the temp dir."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings_test")
    os.environ.setdefault("LOG_LEVEL", "WARNING")
    tmpdir = None
    if not os.environ.get("DATABASE_URL"):
        tmpdir = tempfile.mkdtemp(prefix="poll-bench-")
        os.environ["SQLITE_PATH"] = os.path.join(tmpdir, "bench.sqlite3")
    os.environ.setdefault("HAILUO_MEDIA_ROOT", os.path.join(tmpdir or tempfile.gettempdir(), "poll-bench-media"))
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)
    from generations.models import Generation

    if Generation.objects.exists() and not args.allow_nonempty_db:
        sys.exit("the database already holds generations: use a throwaway database (or --allow-nonempty-db)")
    return tmpdir


class Phases:
    """Time spent inside generations_poll's parts, by wrapping the module's functions (bench process only)."""

    def __init__(self):
        self.t = defaultdict(float)

    def install(self):
        from generations import services
        from generations.services import poll

        # generations_poll looks its round helpers up in its own module and the applying step
        # up in the package (generations/services/__init__.py), so each is wrapped there.
        orig_claim, orig_fetch, orig_apply = poll._claim_due, poll._fetch_all, services.generation_apply_update
        t = self.t

        def claim(**kw):
            start = time.perf_counter()
            try:
                return orig_claim(**kw)
            finally:
                t["claim"] += time.perf_counter() - start

        async def fetch(jobs, adapters, client=None):
            start = time.perf_counter()
            try:
                return await orig_fetch(jobs, adapters, client)
            finally:
                t["fetch"] += time.perf_counter() - start

        def apply(**kw):
            start = time.perf_counter()
            try:
                return orig_apply(**kw)
            finally:
                t["apply"] += time.perf_counter() - start

        orig_progress = poll._apply_progress

        def apply_progress(answers):  # the round's "still in progress" answers, in one UPDATE
            start = time.perf_counter()
            try:
                return orig_progress(answers)
            finally:
                t["apply"] += time.perf_counter() - start

        fetch.__wrapped_original__ = orig_fetch
        poll._claim_due, poll._fetch_all, services.generation_apply_update = claim, fetch, apply
        poll._apply_progress = apply_progress
        self.originals = (orig_claim, orig_fetch, orig_apply)

    def reset(self):
        self.t.clear()

    def snapshot(self) -> dict:
        return dict(self.t)


def db_backend_pid() -> int | None:
    from django.db import connection

    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return cur.fetchone()[0]


def make_fixtures(label: str, base_url: str):
    from accounts.models import Membership, Team, User
    from providers.models import ProviderAccount

    user = User.objects.filter(email="bench@example.com").first()
    if user is None:
        team = Team.objects.create(name=f"Bench team {time.time_ns()}")
        user = User.objects.create_user("bench@example.com", "pw-bench-123")
        Membership.objects.create(user=user, team=team)
    team = user.primary_team
    account = ProviderAccount(kind="apixo", label=f"{label} {time.time_ns()}", base_url=base_url)
    account.set_api_key(API_KEY)
    account.save()
    return user, team, account


async def _submit_many(adapter, n: int, concurrency: int = 64, prompt: str = "bench: a drone over a city at dusk") -> list[str]:
    """Submit ``n`` tasks concurrently over one AsyncClient (the APIXO adapter's submit)."""
    from providers.base import GenerationRequest
    from providers.http import ProviderHttp, Timeouts, make_poll_client

    request = GenerationRequest(model=MODEL, mode=MODE, prompt=prompt, duration=6, resolution="768p")
    sem = asyncio.Semaphore(concurrency)
    async with make_poll_client(max_connections=concurrency) as client:
        http = ProviderHttp(client, timeouts=Timeouts(connect=10, read=60), provider=adapter.label)

        async def one() -> str:
            async with sem:
                return (await adapter.submit(http, request)).task_id

        return await asyncio.gather(*(one() for _ in range(n)))


def create_inflight(user, team, account, n: int) -> list:
    """Submit ``n`` tasks to the sandbox and write their generations (``submitted``, due now). Returns the ids."""
    from datetime import timedelta

    from django.utils import timezone

    from generations.models import Generation, State

    task_ids = asyncio.run(_submit_many(account.adapter(), n))
    now = timezone.now()
    rows = [
        Generation(
            user=user, team=team, provider_account=account, provider_kind="apixo", model=MODEL, mode=MODE,
            prompt="bench: a drone over a city at dusk", duration=6, resolution="768p", quoted_amount=Decimal("0.336"),
            state=State.SUBMITTED, provider_task_id=task_id, submitted_at=now, created_at=now,
            next_poll_at=now - timedelta(seconds=1), poll_interval=12.5,
        )
        for task_id in task_ids
    ]
    Generation.objects.bulk_create(rows, batch_size=1000)
    return [g.pk for g in rows]


def _chunks(seq, size=1000):
    for i in range(0, len(seq), size):
        yield seq[i : i + size]


def set_due(ids: list, *, due: bool) -> None:
    """Make these generations due now (or park them far in the future), lease cleared."""
    from datetime import timedelta

    from django.utils import timezone

    from generations.models import Generation

    when = timezone.now() + (timedelta(seconds=-1) if due else timedelta(days=30))
    for chunk in _chunks(ids):
        Generation.objects.filter(pk__in=chunk).update(next_poll_at=when, poll_lease_until=None)


# --- the two pollers ----------------------------------------------------------------------------
@dataclass
class Run:
    count: int
    latency_ms: float
    mode: str  # "sweep cap N", "naive", "http-only ..." ...
    checked: int
    wall: float
    errors: int = 0
    partial: bool = False
    cpu: dict = field(default_factory=dict)
    cpu_pct: dict = field(default_factory=dict)
    phases: dict = field(default_factory=dict)
    target: str = "sandbox"
    note: str = ""

    @property
    def rate(self) -> float:
        return self.checked / self.wall if self.wall else 0.0

    def cpu_ms(self) -> str:
        return " / ".join("–" if self.cpu.get(k) is None or not self.checked else f"{1000 * self.cpu[k] / self.checked:.2f}"
                          for k in ("client", "server", "db"))

    @property
    def full_wall(self) -> float:
        """Wall time for all ``count`` tasks (extrapolated at the measured rate when partial)."""
        return self.count / self.rate if self.partial and self.rate else self.wall


def sweep(count, latency, cap, *, budget, meter_pids, phases, target="sandbox", profile: cProfile.Profile | None = None) -> Run:
    """Repeat ``generations_poll()`` (batches of HAILUO_POLL_BATCH) until nothing is due."""
    from django.test.utils import override_settings

    from generations import services

    errors = checked = 0
    partial = False
    phases.reset()
    with override_settings(HAILUO_POLL_CONCURRENCY_PER_ACCOUNT=cap), Meter(*meter_pids) as meter:
        if profile:
            profile.enable()
        started = time.perf_counter()
        while True:
            counts = services.generations_poll()
            if not counts.get("polled"):
                break
            checked += counts["polled"]
            errors += counts.get("errors", 0)
            if budget and time.perf_counter() - started > budget and checked < count:
                partial = True
                break
        if profile:
            profile.disable()
    return Run(count, latency, f"sweep cap {cap}", checked, meter.wall, errors, partial, meter.cpu,
               {k: meter.pct(k) for k in meter.cpu}, phases.snapshot(), target)


def naive(count, latency, ids, account, *, budget, meter_pids, phases) -> Run:
    """One sync httpx GET per task (the adapter's URL shape and headers), parse_status, generation_apply_update."""
    import httpx
    from django.conf import settings

    from generations import services
    from generations.models import Generation

    adapter = account.adapter()
    rows = []
    for chunk in _chunks(ids):
        rows += list(Generation.objects.filter(pk__in=chunk).values_list("id", "provider_task_id", "model"))
    errors = checked = 0
    partial = False
    timeout = httpx.Timeout(settings.HAILUO_PROVIDER_READ_TIMEOUT, connect=settings.HAILUO_PROVIDER_CONNECT_TIMEOUT)
    phases.reset()
    with httpx.Client(trust_env=False, follow_redirects=False) as client, Meter(*meter_pids) as meter:
        started = time.perf_counter()
        for generation_id, task_id, model in rows:
            try:
                response = client.get(f"{adapter.base_url}/statusTask/{model}", params={"taskId": task_id},
                                      headers=adapter._headers(), timeout=timeout)
                update = adapter.parse_status(response.json())
                services.generation_apply_update(generation_id=generation_id, update=update)
            except Exception:  # noqa: BLE001 (count it, keep going)
                errors += 1
            checked += 1
            if budget and time.perf_counter() - started > budget and checked < len(rows):
                partial = True
                break
    return Run(count, latency, "naive", checked, meter.wall, errors, partial, meter.cpu,
               {k: meter.pct(k) for k in meter.cpu}, phases.snapshot())


def http_only(count, latency, ids, account, cap, *, batch: int | None, meter_pids, target) -> Run:
    """Only the concurrent status fetches (services.poll._fetch_all, i.e. httpx over aiohttp), no database work.

    ``batch``: jobs per ``_fetch_all`` call (a new client each); None: one call for all, over one client.
    """
    from django.test.utils import override_settings

    from generations.models import Generation
    from generations.services import poll

    rows = []
    for chunk in _chunks(ids):
        rows += list(Generation.objects.filter(pk__in=chunk).values_list("id", "provider_task_id", "model"))
    jobs = [poll._PollJob(gid, account.pk, tid, model) for gid, tid, model in rows]
    adapters = {account.pk: account.adapter()}
    fetch = poll._fetch_all
    while hasattr(fetch, "__wrapped_original__"):
        fetch = fetch.__wrapped_original__
    errors = 0
    size = batch or len(jobs)
    with override_settings(HAILUO_POLL_CONCURRENCY_PER_ACCOUNT=cap), Meter(*meter_pids) as meter:
        for part in _chunks(jobs, size):
            for _, outcome in asyncio.run(fetch(part, adapters)):
                errors += not hasattr(outcome, "state")
    label = f"http only cap {cap}, " + (f"new client per {size}" if batch else "one client")
    return Run(count, latency, label, len(jobs), meter.wall, errors, False, meter.cpu,
               {k: meter.pct(k) for k in meter.cpu}, {}, target)


def raw_aiohttp(count, latency, ids, account, cap, *, meter_pids, target) -> Run:
    """The same GETs with aiohttp alone (no httpx layer), one session, then adapter.parse_status: the client's ceiling."""
    import aiohttp

    from generations.models import Generation

    rows = []
    for chunk in _chunks(ids):
        rows += list(Generation.objects.filter(pk__in=chunk).values_list("provider_task_id", "model"))
    adapter = account.adapter()
    headers = adapter._headers()

    async def go() -> int:
        errors = 0
        sem = asyncio.Semaphore(cap)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=cap)) as session:

            async def one(task_id, model):
                nonlocal errors
                async with sem:
                    try:
                        async with session.get(f"{adapter.base_url}/statusTask/{model}", params={"taskId": task_id},
                                               headers=headers) as resp:
                            adapter.parse_status(await resp.json())
                    except Exception:  # noqa: BLE001
                        errors += 1

            await asyncio.gather(*(one(t, m) for t, m in rows))
        return errors

    with Meter(*meter_pids) as meter:
        errors = asyncio.run(go())
    return Run(count, latency, f"aiohttp alone cap {cap}, one session", len(rows), meter.wall, errors, False, meter.cpu,
               {k: meter.pct(k) for k in meter.cpu}, {}, target)


# ============================================================================================
# Callback → state change latency
# ============================================================================================
class CallbackReceiver:
    """Stands in for our web server at HAILUO_PUBLIC_BASE_URL: records each callback's arrival, answers 200."""

    def __init__(self):
        self.inbox: queue.Queue = queue.Queue()
        inbox = self.inbox

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                arrived = time.time()
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                inbox.put((arrived, self.path, dict(self.headers.items()), body))
                payload = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    if not values:
        return float("nan")
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


def callback_latency(n: int, user, team, sandbox_cls) -> dict:
    """Drive ``n`` tasks through callbacks: generation_submit (real callback URL), the sandbox finishes each
    task and POSTs to the URL; then generation_callback + generations_poll(ids=[...]) as the view and the
    woken django-q2 task do. Measures from the sandbox's completeTime (and from the callback's arrival)
    to the state change."""
    from django.db import transaction
    from django.test.utils import override_settings
    from django.urls import resolve

    from billing import services as billing_services
    from billing.pricing import Quote
    from generations import services
    from generations.models import Generation, State

    sandbox = sandbox_cls(generation_seconds=5, callback_retry_delays=[0.2, 0.4, 0.8])
    receiver = CallbackReceiver()
    try:
        _, _, account = make_fixtures("APIXO callbacks", sandbox.base_url)
        first_done, spacing = 3.0, 0.1  # the sandbox finishes task i at its submit + 3 s + i * 0.1 s
        with override_settings(HAILUO_PUBLIC_BASE_URL=receiver.origin, HAILUO_POLL_TIME_SCALE=100.0):
            generations = []
            for i in range(n):
                with transaction.atomic():
                    g = Generation.objects.create(
                        user=user, team=team, provider_account=account, provider_kind="apixo", model=MODEL, mode=MODE,
                        prompt=f"bench callback {i} [seconds:{first_done + i * spacing:.2f}]", duration=6,
                        resolution="768p", quoted_amount=Decimal("0.336"),
                    )
                    billing_services.ledger_hold(generation=g, quote=Quote(Decimal("0.336"), None, {}))
                generations.append(g.pk)
            submit_started = time.time()
            problems = []
            for gid in list(generations):
                state = services.generation_submit(generation_id=gid)
                if state != State.SUBMITTED:
                    note = Generation.objects.filter(pk=gid).values_list("reconciliation_note", "fail_message").first()
                    problems.append(f"submit of {gid} ended {state}: {note}")
                    generations.remove(gid)
            submit_wall = time.time() - submit_started
            # The callback URL the adapter sent, from the sandbox's request log.
            sent_urls = {e.get("task_id"): e["body"]["callback_url"] for e in sandbox.requests("api")
                         if e["method"] == "POST" and isinstance(e.get("body"), dict) and e["body"].get("callback_url")}
            task_of = dict(Generation.objects.filter(pk__in=generations).values_list("provider_task_id", "pk"))
            expected_paths = {urllib.parse.urlsplit(url).path: task_of.get(tid) for tid, url in sent_urls.items()}
            samples: list[dict] = []
            expected = n - len(problems)  # failed submits are already problems
            done_event = threading.Event()
            lock = threading.Lock()

            def handle_one(arrived, path, headers, body):
                match = resolve(path)
                gid = match.kwargs["generation_id"]
                if expected_paths.get(path) != gid:
                    return f"callback path {path} is not the URL the adapter sent"
                done = json.loads(body)["data"]["completeTime"] / 1000.0
                t0 = time.time()
                services.generation_callback(kind=match.kwargs["kind"], generation_id=gid, token=match.kwargs["token"],
                                             headers=headers, body=body)
                t1 = time.time()
                services.generations_poll(ids=[gid])
                t2 = time.time()
                state = Generation.objects.filter(pk=gid).values_list("state", flat=True).first()
                if state != State.SUCCEEDED:
                    return f"{gid} is {state} after its callback"
                samples.append({"done_to_arrival": arrived - done, "queue_wait": t0 - arrived, "callback": t1 - t0,
                                "poll": t2 - t1, "arrival_to_state": t2 - arrived, "call_to_state": t2 - t0,
                                "done_to_state": t2 - done})
                return None

            def worker():
                from django.db import connection

                try:
                    while not done_event.is_set():
                        try:
                            item = receiver.inbox.get(timeout=0.2)
                        except queue.Empty:
                            continue
                        try:
                            problem = handle_one(*item)
                        except Exception as exc:  # noqa: BLE001
                            problem = f"callback handling failed: {exc!r}"
                        with lock:
                            if problem:
                                problems.append(problem)
                            if len(samples) + len(problems) >= n:
                                done_event.set()
                finally:
                    connection.close()

            # Like the web server and django-q2's workers (HAILUO_Q_WORKERS = 4), several callbacks are handled at once.
            workers = [threading.Thread(target=worker, daemon=True) for _ in range(CALLBACK_WORKERS)]
            for w in workers:
                w.start()
            if expected <= 0:
                done_event.set()
            done_event.wait(timeout=max(0.0, submit_started + submit_wall + first_done + n * spacing + 30 - time.time()))
            done_event.set()
            for w in workers:
                w.join(timeout=30)
    finally:
        receiver.stop()
        sandbox.stop()
    summary = {k: {"median": statistics.median(s[k] for s in samples), "p95": _pct([s[k] for s in samples], 0.95),
                   "max": max(s[k] for s in samples)} for k in (samples[0] if samples else {})}
    return {"n": n, "received": len(samples), "problems": problems, "submit_wall": submit_wall, "summary": summary}


# ============================================================================================
# Report
# ============================================================================================
def machine_info() -> dict:
    import aiohttp
    import django
    import httpx
    from django.db import connection

    cpu = ""
    with contextlib.suppress(OSError):
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    if connection.vendor == "postgresql":
        with connection.cursor() as cur:
            cur.execute("SHOW server_version")
            db = f"PostgreSQL {cur.fetchone()[0]}"
    else:
        import sqlite3

        db = f"{connection.vendor} {sqlite3.sqlite_version}"
    return {"cores": os.cpu_count(), "cpu": cpu, "python": platform.python_version(), "platform": platform.platform(),
            "db": db, "django": django.get_version(), "httpx": httpx.__version__, "aiohttp": aiohttp.__version__}


def fmt_s(x: float) -> str:
    return f"{x:.2f}" if x < 100 else f"{x:.0f}"


def print_tables(runs: list[Run], cb: dict | None, info: dict, args, extra: list[Run]) -> None:
    print()
    print(f"## Poll throughput ({info['db']}, {info['cores']} cores)")
    print()
    print("| tasks | latency | poller | checked | wall s | tasks/s | errors | all tasks, s | CPU % bench / sandbox / db | CPU ms per task | claim / fetch / apply s |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---|---|---|")
    for r in runs:
        full = f"{fmt_s(r.full_wall)} (extrapolated)" if r.partial else fmt_s(r.wall)
        ph = " / ".join(f"{r.phases.get(k, 0):.2f}" for k in ("claim", "fetch", "apply")) if r.phases else "–"
        if r.mode == "naive" and r.phases:
            ph = f"– / {r.wall - r.phases.get('apply', 0):.2f} (GET+parse) / {r.phases.get('apply', 0):.2f}"
        cpu = " / ".join(r.cpu_pct.get(k, "–") for k in ("client", "server", "db"))
        print(f"| {r.count:,} | {r.latency_ms:g} ms | {r.mode} | {r.checked:,} | {fmt_s(r.wall)} | {r.rate:,.0f} | {r.errors} | {full} | {cpu} | {r.cpu_ms()} | {ph} |")
    if extra:
        print()
        print("## Where the time goes (latency 0 ms)")
        print()
        print("| tasks | server | run | wall s | tasks/s | errors | CPU % bench / server / db | CPU ms per task | claim / fetch / apply s |")
        print("|---:|---|---|---:|---:|---:|---|---|---|")
        for r in extra:
            ph = " / ".join(f"{r.phases.get(k, 0):.2f}" for k in ("claim", "fetch", "apply")) if r.phases else "–"
            cpu = " / ".join(r.cpu_pct.get(k, "–") for k in ("client", "server", "db"))
            print(f"| {r.checked:,} | {r.target} | {r.mode} | {fmt_s(r.wall)} | {r.rate:,.0f} | {r.errors} | {cpu} | {r.cpu_ms()} | {ph} |")
    if cb:
        print()
        print(f"## Callback → state change ({cb['received']}/{cb['n']} tasks)")
        print()
        print("| interval | median ms | p95 ms | max ms |")
        print("|---|---:|---:|---:|")
        names = {
            "done_to_arrival": "sandbox completeTime → callback arrives (sandbox tick ≤ 50 ms + POST)",
            "queue_wait": f"arrival → handled ({CALLBACK_WORKERS} bench threads handle callbacks)",
            "callback": "services.generation_callback (view's work)",
            "poll": "services.generations_poll(ids=[…]) (woken task's work)",
            "call_to_state": "callback call → state succeeded",
            "arrival_to_state": "callback arrives → state succeeded",
            "done_to_state": "sandbox completeTime → state succeeded",
        }
        for key, label in names.items():
            if key in cb["summary"]:
                s = cb["summary"][key]
                print(f"| {label} | {s['median'] * 1000:.1f} | {s['p95'] * 1000:.1f} | {s['max'] * 1000:.1f} |")
        print()
        print("Not included: django-q2's queue pickup between the callback's enqueue_poll and the poll "
              "(Q_CLUSTER poll = 0.25 s, so up to ~250 ms more, plus the worker handing the task over).")
        for p in cb["problems"][:5]:
            print(f"- problem: {p}")
    print()
    print(f"Machine: {info['cores']} cores ({info['cpu']}), {info['platform']}; Python {info['python']}; "
          f"DB {info['db']}; Django {info['django']}, httpx {info['httpx']}, aiohttp {info['aiohttp']}; "
          f"1-min load average {info.get('load', '?')}.")
    print(f"Naive budget {args.naive_budget:g} s, sweep budget {args.sweep_budget:g} s (stopped runs are extrapolated "
          f"at the measured rate). CPU % is per run wall time (100% = one core); 'db' is the PostgreSQL backend "
          f"of the bench's connection. Sandbox: {args.sandbox}, {'in this process' if args.inprocess_sandbox else 'child process'}.")


# ============================================================================================
def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--sandbox-child"]:
        return run_sandbox_child(argv[1:])
    args = parse_args(argv)
    if args.fake_server:
        return run_fake_server()
    # SIGTERM (e.g. from scripts/with-postgres.sh) unwinds normally, so the child servers are stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    tmpdir = setup_django(args)
    from django.conf import settings
    from django.test.utils import override_settings

    from generations.models import Generation
    from providers.models import ProviderAccount

    log = lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    if args.goal:
        from bench.poll_goal import run_goal

        info = machine_info()
        load_before = os.getloadavg()
        run_goal(args, log)
        print(f"\nMachine: {info['cores']} cores ({info['cpu']}); Python {info['python']}; DB {info['db']}; "
              f"aiohttp {info['aiohttp']}; 1-min load average {load_before[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end "
              f"(the machine is shared: compare the ratios within this run, not absolute rates across runs).")
        return 0
    counts = sorted(set(args.counts))
    log = lambda msg: print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)  # noqa: E731
    sandbox_cls = SandboxInProcess if args.inprocess_sandbox else SandboxProcess
    sandbox_cls.tuned = args.sandbox == "tuned"
    # Tasks never finish during the throughput runs: they stay 'pending' (the first 15 % of generation_seconds).
    sandbox = sandbox_cls(generation_seconds=10 * 24 * 3600)
    phases = Phases()
    phases.install()
    runs: list[Run] = []
    extra: list[Run] = []
    cb = None
    started = time.perf_counter()
    load_before = os.getloadavg()
    # A poll reschedules a task ~interval × HAILUO_POLL_TIME_SCALE later (0.02 in settings_test: 0.25 s, so a long
    # sweep would poll the same tasks again). Scale 100: every task is checked exactly once per measurement.
    scale = override_settings(HAILUO_POLL_TIME_SCALE=100.0)
    scale.enable()
    try:
        user, team, account = make_fixtures("APIXO bench", sandbox.base_url)
        pids = (sandbox.pid, db_backend_pid())
        log(f"DB: {settings.DATABASES['default']['ENGINE']} {settings.DATABASES['default']['NAME']}; "
            f"sandbox {sandbox.base_url} (pid {sandbox.pid}); batch {settings.HAILUO_POLL_BATCH}")
        ids: list = []
        for count in counts:
            if len(ids) < count:
                sandbox.configure(latency_ms=0)
                t, before = time.perf_counter(), len(ids)
                ids += create_inflight(user, team, account, count - len(ids))
                log(f"submitted and wrote {len(ids) - before:,} tasks, {len(ids):,} in flight ({time.perf_counter() - t:.1f} s)")
            active = ids[:count]
            set_due(ids[count:], due=False)
            for latency in args.latencies:
                sandbox.configure(latency_ms=latency)
                for cap in args.caps:
                    set_due(active, due=True)
                    pids = (sandbox.pid, db_backend_pid())
                    r = sweep(count, latency, cap, budget=args.sweep_budget, meter_pids=pids, phases=phases)
                    runs.append(r)
                    log(f"{count:>6,} tasks {latency:>4g} ms  {r.mode:<12} {r.checked:>6,} in {r.wall:6.2f} s = {r.rate:8,.0f}/s  errors {r.errors}")
                set_due(active, due=True)
                r = naive(count, latency, active, account, budget=args.naive_budget, meter_pids=pids, phases=phases)
                runs.append(r)
                log(f"{count:>6,} tasks {latency:>4g} ms  naive        {r.checked:>6,} in {r.wall:6.2f} s = {r.rate:8,.0f}/s  errors {r.errors}"
                    + ("  (stopped: budget)" if r.partial else ""))
        sandbox.configure(latency_ms=0)
        top = counts[-1]
        active = ids[:top]
        if args.compare:
            n = min(top, args.compare_count)
            subset = ids[:n]
            set_due(ids[n:], due=False)
            cap_hi, cap_lo = max(args.caps), min(args.caps)
            batch = settings.HAILUO_POLL_BATCH

            def note(r):
                extra.append(r)
                log(f"compare ({r.target}) {r.mode}: {r.checked:,} in {r.wall:.2f} s = {r.rate:,.0f}/s  errors {r.errors}")

            for cap in sorted({cap_lo, cap_hi}):
                note(http_only(n, 0, subset, account, cap, batch=batch, meter_pids=pids, target="sandbox"))
            note(http_only(n, 0, subset, account, cap_hi, batch=None, meter_pids=pids, target="sandbox"))
            note(raw_aiohttp(n, 0, subset, account, cap_hi, meter_pids=pids, target="sandbox"))
            fake = FakeServer()
            try:
                ProviderAccount.objects.filter(pk=account.pk).update(base_url=fake.base_url)
                account.refresh_from_db()
                fpids = (fake.pid, pids[1])
                note(http_only(n, 0, subset, account, cap_hi, batch=batch, meter_pids=fpids, target="aiohttp server"))
                note(http_only(n, 0, subset, account, cap_hi, batch=None, meter_pids=fpids, target="aiohttp server"))
                note(raw_aiohttp(n, 0, subset, account, cap_hi, meter_pids=fpids, target="aiohttp server"))
                for cap in sorted({cap_lo, cap_hi}):
                    set_due(subset, due=True)
                    fpids = (fake.pid, db_backend_pid())
                    note(sweep(n, 0, cap, budget=args.sweep_budget, meter_pids=fpids, phases=phases, target="aiohttp server"))
                set_due(subset, due=True)
                r = naive(n, 0, subset, account, budget=args.naive_budget, meter_pids=fpids, phases=phases)
                r.target = "aiohttp server"
                note(r)
            finally:
                ProviderAccount.objects.filter(pk=account.pk).update(base_url=sandbox.base_url)
                account.refresh_from_db()
                fake.stop()
        if args.profile:
            sandbox.configure(latency_ms=args.latencies[0])
            set_due(ids, due=False)
            set_due(active, due=True)
            prof = cProfile.Profile()
            r = sweep(top, args.latencies[0], max(args.caps), budget=args.sweep_budget, meter_pids=(sandbox.pid, db_backend_pid()),
                      phases=phases, profile=prof)
            r.mode += " (cProfile)"
            extra.append(r)
            prof.dump_stats(args.profile)
            for order in ("tottime", "cumulative"):
                out = io.StringIO()
                pstats.Stats(prof, stream=out).sort_stats(order).print_stats(30)
                print(f"\n### cProfile of one sweep, {top:,} tasks, by {order} (full dump: {args.profile})\n```")
                print("\n".join(line for line in out.getvalue().splitlines() if line.strip())[:12000])
                print("```")
        set_due(ids, due=False)
    finally:
        scale.disable()
        sandbox.stop()
    if args.callbacks:
        log(f"callback latency: {args.callbacks} tasks")
        try:
            cb = callback_latency(args.callbacks, user, team, sandbox_cls)
        except Exception:  # noqa: BLE001 (print the throughput tables anyway)
            import traceback

            traceback.print_exc()
    info = machine_info()
    info["load"] = f"{load_before[0]:.2f} at start, {os.getloadavg()[0]:.2f} at end"
    print_tables(runs, cb, info, args, extra)
    log(f"total {time.perf_counter() - started:.0f} s; {Generation.objects.count():,} generations in the database")
    if args.json:
        Path(args.json).write_text(json.dumps({"machine": info, "runs": [r.__dict__ | {"rate": r.rate} for r in runs],
                                               "extra": [r.__dict__ | {"rate": r.rate} for r in extra], "callbacks": cb},
                                              default=str, indent=1))
    if tmpdir and not args.keep_db:
        from django.db import connections

        connections.close_all()
        shutil.rmtree(tmpdir, ignore_errors=True)
    elif tmpdir:
        log(f"kept {tmpdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
