"""Shared fixtures: users, a team, a sandbox-backed APIXO account, API tokens, MEDIA_ROOT in
a temporary folder, a queue that records or drops what would reach django-q2; a fresh
PostgreSQL database beside the test one, free ports, and the session's S3 server (moto).

Provider traffic goes over real loopback HTTP to the sandboxes in ``providers.sandbox``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from django.conf import settings

from providers.adapters.conftest import TEST_KEYS, fresh, test_sandbox

APIXO_KEY = TEST_KEYS["apixo"]
ROOT = Path(__file__).resolve().parent.parent


def pytest_collection_modifyitems(config, items):
    """End-to-end tests need PostgreSQL: skip them on SQLite, unless the test command requires it."""
    on_postgres = settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
    if os.environ.get("HAILUO_REQUIRE_POSTGRES") == "1" and not on_postgres:
        raise pytest.UsageError("HAILUO_REQUIRE_POSTGRES=1 but DATABASE_URL does not point at PostgreSQL")
    if on_postgres:
        return
    skip = pytest.mark.skip(reason="needs PostgreSQL (run `make test`)")
    for item in items:
        if "postgres" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def apixo_sandbox():
    """One APIXO sandbox for the session (knobs and key as the adapter tests' APIXO sandbox)."""
    with test_sandbox("apixo") as handle:
        yield handle


@pytest.fixture
def sandbox(apixo_sandbox):
    """The session's APIXO sandbox, reset and with its test knobs back."""
    return fresh(apixo_sandbox, "apixo")


@pytest.fixture
def media_root(settings, tmp_path):
    """MEDIA_ROOT moved to a fresh folder of the test's own."""
    settings.MEDIA_ROOT = tmp_path / "media"
    return settings.MEDIA_ROOT


@pytest.fixture
def no_queue(monkeypatch):
    """Nothing reaches django-q2: ``generations.services``' enqueue functions do nothing."""
    from generations import services

    monkeypatch.setattr(services, "enqueue_submit", lambda gid: None)
    monkeypatch.setattr(services, "enqueue_poll", lambda ids: None)
    monkeypatch.setattr(services, "enqueue_archive", lambda gid, attempt=None: None)


@pytest.fixture
def team(db):
    from accounts.models import Team

    return Team.objects.create(name="Studio A")


@pytest.fixture
def member(db, team):
    from accounts.models import Membership, User

    user = User.objects.create_user("member@example.com", "pw-member-123")
    Membership.objects.create(user=user, team=team)
    return user


@pytest.fixture
def teammate(db, team):
    from accounts.models import Membership, User

    user = User.objects.create_user("mate@example.com", "pw-mate-123")
    Membership.objects.create(user=user, team=team)
    return user


@pytest.fixture
def outsider(db):
    from accounts.models import Membership, Team, User

    other = Team.objects.create(name="Other studio")
    user = User.objects.create_user("outsider@example.com", "pw-out-123")
    Membership.objects.create(user=user, team=other)
    return user


@pytest.fixture
def apixo_account(db, sandbox):
    from providers.models import ProviderAccount

    account = ProviderAccount(kind="apixo", label="APIXO test", base_url=sandbox.base_url)
    account.set_api_key(APIXO_KEY)
    account.save()
    return account


@pytest.fixture
def budget(member):
    from billing.models import Budget

    return Budget.objects.create(user=member, amount=Decimal("5.00"), period=Budget.Period.MONTH)


@pytest.fixture
def api_token(member):
    from accounts.models import ApiToken

    _, raw = ApiToken.issue(user=member, name="tests")
    return raw


def make_params(account, **overrides):
    """CreateParams for APIXO standard text-to-video 6 s unless overridden."""
    from generations.services import CreateParams

    values = dict(
        provider_account_id=account.pk,
        model="hailuo-2-3",
        mode="standard-text-to-video",
        prompt="a tiktok dancer is dancing on a small drone, doing flips and tricks",
        duration=6,
        resolution="768p",
    )
    values.update(overrides)
    return CreateParams(**values)


class RecordedQueue(list):
    """Stands in for django-q2 in tests: what the code enqueues is recorded here.

    Items: ``("submit", id)``, ``("poll", [ids])``, ``("archive", id)`` or, for a download
    the sweep already claimed, ``("archive", id, attempt)``. :meth:`run` performs the submits
    and downloads not yet performed, in order, in this process (as a worker would); wake-up
    polls are left to the test.
    """

    def __init__(self):
        super().__init__()
        self.performed = 0

    def run(self) -> None:
        from generations import services

        while self.performed < len(self):
            item = self[self.performed]
            self.performed += 1
            if item[0] == "submit":
                services.generation_submit(generation_id=item[1])
            elif item[0] == "archive":
                services.generation_archive(generation_id=item[1], attempt=item[2] if len(item) > 2 else None)


def record_queue(monkeypatch) -> RecordedQueue:
    """Patch ``generations.services``' enqueue functions to record into a new RecordedQueue."""
    from generations import services

    queue = RecordedQueue()
    monkeypatch.setattr(services, "enqueue_submit", lambda gid: queue.append(("submit", gid)))
    monkeypatch.setattr(services, "enqueue_poll", lambda ids: queue.append(("poll", list(ids))))
    monkeypatch.setattr(
        services, "enqueue_archive",
        lambda gid, attempt=None: queue.append(("archive", gid) if attempt is None else ("archive", gid, attempt)),
    )
    return queue


def test_database_url() -> str:
    """The URL of the database the tests run on (PostgreSQL), as the app role the tests run as
    (tests/pg_roles.py), for processes we start."""
    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


test_database_url.__test__ = False  # a helper, not a test


@contextlib.contextmanager
def qcluster_process(*, public_base_url: str, media_root, log_path, workers: int = 2, stop_signal_group: bool = False):
    """A real django-q2 cluster (``manage.py run_workers``: workers, monitor and scheduler) in
    its own process group, on the test database, sending provider callbacks to ``public_base_url``.

    Yields the ``subprocess.Popen``. On exit sends SIGTERM (to the main process, or to the
    whole group with ``stop_signal_group``, as honcho and systemd do) and fails the test
    unless every process of the cluster is gone within 15 s and its log holds no traceback.
    """
    from generations.management.commands.run_workers import descendants

    env = dict(
        os.environ,
        DATABASE_URL=test_database_url(),
        DJANGO_SETTINGS_MODULE="config.settings_test",
        HAILUO_PUBLIC_BASE_URL=public_base_url,
        HAILUO_Q_WORKERS=str(workers),
        HAILUO_MEDIA_ROOT=str(media_root),
    )
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    env.pop("DATABASE_MIGRATE_URL", None)  # the cluster runs as the app role only (tests/pg_roles.py)
    with open(log_path, "w+") as log:
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "run_workers"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        stopped = False
        try:
            yield proc
        finally:
            family = [proc.pid, *descendants(proc.pid)]
            if stop_signal_group:
                os.killpg(proc.pid, signal.SIGTERM)
            else:
                proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
                stopped = True
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            left = [pid for pid in family if Path(f"/proc/{pid}").exists() and "Z" not in _proc_state(pid)]
            log.seek(0)
            output = log.read()
        assert stopped and not left, f"the cluster did not stop within 15 s of SIGTERM (left: {left})\n{output[-4000:]}"
        assert "Traceback" not in output, output[-4000:]


def _proc_state(pid: int) -> str:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return "Z"
    return stat[stat.rindex(")") + 2:].split()[0]


@pytest.fixture
def servers():
    """A factory of loopback HTTP(S) servers (``tests.loopback.LoopbackServer(routes, tls_context=)``); all stop at the end."""
    from .loopback import LoopbackServer

    made: list[LoopbackServer] = []

    def make(routes=None, **kwargs) -> LoopbackServer:
        made.append(LoopbackServer(routes, **kwargs))
        return made[-1]

    yield make
    for server in made:
        server.close()


def free_port() -> int:
    """A free TCP port on 127.0.0.1 (free when asked: start the server on it soon)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def fresh_database():
    """A new empty PostgreSQL database on the test server (beside the test database); its URL. Dropped afterwards."""
    import psycopg

    from tests.pg_roles import ROLES

    db = settings.DATABASES["default"]
    name = f"hailuo_fresh_{uuid.uuid4().hex[:8]}"
    # Creating a database needs the owner's rights when the session runs as the restricted
    # app role (tests.pg_roles): the fresh database then belongs to the owner, as in production.
    user, password = ROLES.get("owner", (db["USER"], db.get("PASSWORD") or ""))
    admin = dict(host=db["HOST"], port=db["PORT"], user=user, password=password or None, dbname="postgres", autocommit=True)
    with psycopg.connect(**admin) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    auth = user + (f":{password}" if password else "")
    yield f"postgres://{auth}@{db['HOST']}:{db['PORT']}/{name}"
    with psycopg.connect(**admin) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# --- S3: moto's server, once per session (tests/test_s3.py, tests/test_production.py) ------------------------
REGION = "us-east-1"
CREDENTIALS = {"access_key": "testing", "secret_key": "testing"}


@pytest.fixture(scope="session")
def s3_endpoint(tmp_path_factory):
    """The URL of a moto S3 server on a free loopback port (``python -m moto.server``).

    Skips without the [test] extras, unless ``HAILUO_REQUIRE_S3=1`` (``make test``): then fails.
    """
    try:
        import boto3  # noqa: F401
        import moto.server  # noqa: F401
        import storages.backends.s3  # noqa: F401
    except ImportError as exc:
        if os.environ.get("HAILUO_REQUIRE_S3") == "1":
            pytest.fail(f"HAILUO_REQUIRE_S3=1 but the S3 test dependencies are missing ({exc}): scripts/bootstrap.sh --test")
        pytest.skip(f"S3 tests need the [test] extras (moto[server], django-storages[s3]): {exc}")
    log_path = Path(tmp_path_factory.mktemp("moto")) / "moto.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with open(log_path, "w+") as log:
        for _attempt in range(3):
            port = free_port()
            endpoint = f"http://127.0.0.1:{port}"
            proc = subprocess.Popen(
                [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                stdout=log, stderr=subprocess.STDOUT, env=env,
            )
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and proc.poll() is None:
                try:
                    httpx.get(f"{endpoint}/moto-api/", timeout=1, trust_env=False)
                    break
                except httpx.TransportError:
                    time.sleep(0.2)
            if proc.poll() is None:
                break
        else:
            log.seek(0)
            pytest.fail(f"moto's S3 server did not start:\n{log.read()[-3000:]}")
        try:
            yield endpoint
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


class Bucket:
    """A fresh bucket on the S3 server, and a boto3 client to look inside it."""

    def __init__(self, endpoint: str):
        import boto3

        self.name = f"hailuo-test-{uuid.uuid4().hex[:12]}"
        self.prefix = "hailuo-studio"
        self.client = boto3.client(
            "s3", endpoint_url=endpoint, region_name=REGION,
            aws_access_key_id=CREDENTIALS["access_key"], aws_secret_access_key=CREDENTIALS["secret_key"],
        )
        self.client.create_bucket(Bucket=self.name)

    def keys(self) -> list[str]:
        listing = self.client.list_objects_v2(Bucket=self.name)
        return sorted(item["Key"] for item in listing.get("Contents", []))

    def read(self, name: str) -> bytes:
        return self.client.get_object(Bucket=self.name, Key=f"{self.prefix}/{name}")["Body"].read()
