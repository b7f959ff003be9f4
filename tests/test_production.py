"""Production-shaped end to end: the processes an operator runs, started the way the README says.

DEBUG off and the secure settings (over plain HTTP on loopback, with the README's opt-outs
``DJANGO_SECURE_SSL_REDIRECT=0`` and ``DJANGO_SECURE_COOKIES=0``); PostgreSQL (a database of
its own beside the test database) migrated by ``scripts/start.sh release``; gunicorn with two
workers (``scripts/start.sh web``); two worker clusters (``scripts/start.sh worker``, i.e.
``run_workers``); S3 storage on the session's moto server; an APIXO sandbox process on a free
port, allowed by ``HAILUO_ALLOWED_PRIVATE_HOSTS`` as one host:port; ``LOG_FORMAT=json``.

Then, over HTTP only: an API token (``manage.py create_api_token``) creates a generation,
which is submitted once, called back, polled, succeeds, is archived to the bucket and played
from it through the studio route; the ledger holds and captures it exactly once; ``/healthz``
is green with both clusters; ``/metrics`` counts the submit and the polls; the JSON logs tell
its story. Every process runs in its own process group and is stopped at the end, also when
the test fails.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import httpx
import psycopg
import pytest
from cryptography.fernet import Fernet
from prometheus_client.parser import text_string_to_metric_families

from billing.models import LedgerEntry
from generations.models import Generation

from .conftest import CREDENTIALS, REGION, ROOT, Bucket, free_port

pytestmark = [pytest.mark.postgres, pytest.mark.e2e]

APIXO_KEY = "sk-prod-e2e-apixo-0042"
EMAIL, PASSWORD = "operator-e2e@example.com", "pw-prod-e2e-7781"

#: Creates the member, their team and the APIXO account (what an admin does in /admin/).
SEED = """
import os
from accounts.models import Membership, Team, User
from providers.models import ProviderAccount
user = User.objects.create_user(os.environ["SEED_EMAIL"], os.environ["SEED_PASSWORD"])
Membership.objects.create(user=user, team=Team.objects.create(name="Production e2e"))
account = ProviderAccount(kind="apixo", label="APIXO sandbox", base_url=os.environ["SEED_BASE_URL"])
account.set_api_key(os.environ["SEED_API_KEY"])
account.save()
print(f"account={account.pk}")
"""


class ProcessGroups:
    """Processes started each in its own process group (``start_new_session``), output to a log file.

    :meth:`stop` sends SIGTERM to every group, as systemd's ``KillMode=mixed`` and honcho do,
    waits up to ``grace`` seconds for every process of every group to be gone, SIGKILLs what
    is left, and returns the problems (groups that needed SIGKILL).
    """

    def __init__(self, log_dir: Path):
        self.log_dir = log_dir
        self.started: dict[str, subprocess.Popen] = {}

    def start(self, name: str, argv: list[str], env: dict) -> subprocess.Popen:
        with open(self.log_dir / f"{name}.log", "w") as log:
            proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        self.started[name] = proc
        return proc

    def log(self, name: str) -> str:
        return (self.log_dir / f"{name}.log").read_text(errors="replace")

    def tails(self) -> str:
        return "\n".join(f"--- {name}.log ---\n{self.log(name)[-2500:]}" for name in self.started)

    def check_running(self) -> None:
        """Fail, with the logs, when a process has exited."""
        for name, proc in self.started.items():
            assert proc.poll() is None, f"{name} exited with {proc.returncode}\n{self.tails()}"

    @staticmethod
    def _group_alive(pgid: int) -> bool:
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def stop(self, grace: float = 30.0) -> list[str]:
        for proc in self.started.values():
            if self._group_alive(proc.pid):
                os.killpg(proc.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        problems = []
        for name, proc in self.started.items():
            while time.monotonic() < deadline:
                proc.poll()  # reap the group leader (our child)
                if not self._group_alive(proc.pid):
                    break
                time.sleep(0.1)
            else:
                problems.append(f"{name} still running {grace:g} s after SIGTERM: killed")
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        return problems


def wait_until(what: str, check, *, timeout: float, groups: ProcessGroups, interval: float = 0.25):
    """Call ``check()`` until it returns something truthy (returned); fail with the logs after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        groups.check_running()
        try:
            last = check()
        except httpx.TransportError as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})\n{groups.tails()}")


def scrape(http: httpx.Client, token: str) -> dict[tuple[str, tuple], float]:
    response = http.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def total(samples, name: str, **labels) -> float:
    return sum(v for (n, ls), v in samples.items() if n == name and labels.items() <= dict(ls).items())


def lifecycle_lines(text: str, generation_id: str) -> list[dict]:
    """The JSON ``hailuo.lifecycle`` lines of one generation in a process's log."""
    lines = []
    for line in text.splitlines():
        if line.startswith("{"):
            data = json.loads(line)
            if data.get("logger") == "hailuo.lifecycle" and data.get("generation_id") == generation_id:
                lines.append(data)
    return lines


def test_api_to_archived_video_on_the_production_stack(fresh_database, s3_endpoint, tmp_path):
    started = time.monotonic()
    bucket = Bucket(s3_endpoint)
    web_port = sandbox_port = free_port()
    while sandbox_port == web_port:
        sandbox_port = free_port()
    base = f"http://127.0.0.1:{web_port}"
    metrics_token = secrets.token_urlsafe(24)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", str(tmp_path)),
        "PYTHON": sys.executable,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        # Only the README's required production variables ...
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "HAILUO_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DATABASE_URL": fresh_database,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        # ... the documented opt-outs for plain HTTP on loopback (no TLS proxy in front) ...
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "DJANGO_SECURE_COOKIES": "0",
        # ... and the operation's own settings.
        "HAILUO_PUBLIC_BASE_URL": base,
        "HAILUO_ALLOWED_PRIVATE_HOSTS": f"127.0.0.1:{sandbox_port}",
        "HAILUO_S3_BUCKET": bucket.name,
        "HAILUO_S3_ENDPOINT_URL": s3_endpoint,
        "HAILUO_S3_REGION": REGION,
        "HAILUO_S3_ACCESS_KEY_ID": CREDENTIALS["access_key"],
        "HAILUO_S3_SECRET_ACCESS_KEY": CREDENTIALS["secret_key"],
        "HAILUO_METRICS_TOKEN": metrics_token,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prometheus"),
        "LOG_FORMAT": "json",
        "HAILUO_POLL_TIME_SCALE": "0.1",  # APIXO's first poll 3 s after the submit, not 30 s
        "HAILUO_Q_WORKERS": "2",
        "PORT": str(web_port),
        "GUNICORN_WORKERS": "2",
    }
    groups = ProcessGroups(tmp_path)
    failed = True
    try:
        # The provider: an APIXO sandbox process on its own port.
        groups.start("sandbox", [sys.executable, "-m", "providers.sandbox", "apixo", "--port", str(sandbox_port),
                                 "--quiet", "--api-key", APIXO_KEY, "--generation-seconds", "1",
                                 "--callback-retry-delays", "0.5,1,2"], env)
        sandbox = httpx.Client(base_url=f"http://127.0.0.1:{sandbox_port}", trust_env=False, timeout=10)
        health = wait_until("the sandbox", lambda: sandbox.get("/_sandbox/health").json(), timeout=30, groups=groups)

        # Release (migrate, collectstatic, setup_schedules), then the member and the provider account.
        release = subprocess.run(["scripts/start.sh", "release"], cwd=ROOT, env=env, capture_output=True, text=True,
                                 timeout=180)
        assert release.returncode == 0 and "release: done" in release.stdout, release.stdout + release.stderr
        seed_env = dict(env, SEED_EMAIL=EMAIL, SEED_PASSWORD=PASSWORD, SEED_BASE_URL=health["base_url"], SEED_API_KEY=APIXO_KEY)
        seeded = subprocess.run([sys.executable, "manage.py", "shell", "-c", SEED], cwd=ROOT, env=seed_env,
                                capture_output=True, text=True, timeout=60)
        assert seeded.returncode == 0, seeded.stdout + seeded.stderr
        account_id = int(re.search(r"account=(\d+)", seeded.stdout).group(1))
        issued = subprocess.run([sys.executable, "manage.py", "create_api_token", EMAIL, "--name", "e2e"], cwd=ROOT, env=env,
                                capture_output=True, text=True, timeout=60)
        assert issued.returncode == 0, issued.stdout + issued.stderr
        api_token = issued.stdout.strip().splitlines()[-1]

        # The processes: gunicorn (two workers) and two worker clusters.
        groups.start("web", ["scripts/start.sh", "web"], env)
        groups.start("worker-1", ["scripts/start.sh", "worker"], env)
        groups.start("worker-2", ["scripts/start.sh", "worker"], env)
        http = httpx.Client(base_url=base, trust_env=False, timeout=15)
        wait_until("gunicorn", lambda: http.get("/healthz/live").status_code == 200, timeout=60, groups=groups)

        # Secure settings with DEBUG off: headers, no debug page.
        login_page = http.get("/accounts/login/")
        assert login_page.status_code == 200
        assert "script-src 'self'" in login_page.headers["Content-Security-Policy"]
        assert login_page.headers["X-Frame-Options"] == "DENY" and login_page.headers["Referrer-Policy"] == "same-origin"
        missing = http.get("/no-such-page/")
        assert missing.status_code == 404 and "URLconf" not in missing.text

        # The API: create with a bearer token, then read until archived.
        api = {"Authorization": f"Bearer {api_token}"}
        assert http.get("/api/v1/generations", headers={"Authorization": "Bearer hs_wrong"}).status_code == 401
        created = http.post("/api/v1/generations", headers={**api, "Idempotency-Key": "prod-e2e-1"}, json={
            "provider_account_id": account_id, "model": "hailuo-2-3", "mode": "standard-text-to-video",
            "prompt": "a lighthouse in a storm, waves breaking, cinematic", "duration": 6, "resolution": "768p",
        })
        assert created.status_code == 201, created.text
        generation_id = created.json()["id"]
        assert Decimal(created.json()["price_usd"]) == Decimal("0.336") and created.json()["state"] == "queued"

        def archived():
            body = http.get(f"/api/v1/generations/{generation_id}", headers=api).json()
            assert body["state"] not in ("failed", "expired", "canceled", "needs_reconciliation"), body
            return body if body["archive_state"] == "done" else None

        done = wait_until("the generation to be archived", archived, timeout=60, groups=groups, interval=0.5)
        assert done["state"] == "succeeded" and Decimal(done["charged_usd"]) == Decimal("0.336") and done["provider_task_id"]
        assert done["video_url"].startswith(f"{base}/")  # our archived copy, never the provider's URL

        # The database: the ledger held and captured exactly once; the video is in the bucket.
        with psycopg.connect(fresh_database) as conn:
            entries = conn.execute(
                f"SELECT kind, amount FROM {LedgerEntry._meta.db_table} WHERE generation_id = %s ORDER BY id",
                [generation_id],
            ).fetchall()
            video_name, video_bytes = conn.execute(
                f"SELECT video, video_bytes FROM {Generation._meta.db_table} WHERE id = %s", [generation_id]
            ).fetchone()
        assert entries == [("hold", Decimal("0.336")), ("capture", Decimal("0.336"))]
        stored = bucket.read(video_name)
        assert stored[4:8] == b"ftyp" and len(stored) == video_bytes
        assert f"{bucket.prefix}/{video_name}" in bucket.keys()

        # The provider saw one submit, answered polls, and called back (accepted by gunicorn).
        api_calls = sandbox.get("/_sandbox/requests", params={"kind": "api"}).json()
        submits = [c for c in api_calls if "generateTask" in c["path"]]
        assert len(submits) == 1 and submits[0]["status"] == 200
        assert any("statusTask" in c["path"] for c in api_calls)
        callbacks = sandbox.get("/_sandbox/requests", params={"kind": "callback"}).json()
        assert callbacks and callbacks[0]["ok"] and callbacks[0]["url"].startswith(f"{base}/hooks/apixo/{generation_id}/")

        # The video: the API's video_url with the bearer token (when it is an API route), and the
        # studio's route behind the login, both streamed from the bucket, whole and by range.
        if "/api/" in done["video_url"]:
            with httpx.Client(trust_env=False, timeout=15) as bearer:
                by_token = bearer.get(done["video_url"], headers=api)
            assert by_token.status_code == 200 and by_token.content == stored
        video_url = f"{base}/g/{generation_id}/video.mp4"
        assert http.get(video_url).status_code == 302  # not logged in: to the login page
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', http.get("/accounts/login/").text).group(1)
        logged_in = http.post("/accounts/login/", data={"login": EMAIL, "password": PASSWORD, "csrfmiddlewaretoken": csrf},
                              headers={"Referer": f"{base}/accounts/login/"})
        assert logged_in.status_code == 302, logged_in.text[-2000:]
        played = http.get(video_url)
        assert played.status_code == 200 and played.content == stored
        ranged = http.get(video_url, headers={"Range": "bytes=0-99"})
        assert ranged.status_code == 206 and ranged.content == stored[:100]
        assert ranged.headers["Content-Range"] == f"bytes 0-99/{video_bytes}"

        # /healthz green: database, S3, both clusters' heartbeats, the poll sweep.
        def ready():
            response = http.get("/healthz")
            return response if response.status_code == 200 and "2 cluster(s)" in response.text else None

        checks = wait_until("/healthz green with both clusters", ready, timeout=30, groups=groups).json()["checks"]
        assert all(check["ok"] for check in checks.values()), checks
        assert checks["storage"]["detail"] == "S3Storage writable"

        # /metrics: refused without the token; the submit and the polls counted across processes.
        assert http.get("/metrics").status_code == 403
        samples = scrape(http, metrics_token)
        assert total(samples, "hailuo_provider_request_seconds_count", provider="apixo", operation="submit") == 1
        polls = total(samples, "hailuo_provider_request_seconds_count", provider="apixo", operation="poll")
        assert polls == len([c for c in api_calls if "statusTask" in c["path"]]) >= 1
        assert total(samples, "hailuo_generations", state="succeeded", provider="apixo") == 1
        assert total(samples, "hailuo_money_captured_usd_total", provider="apixo") == pytest.approx(0.336)
        assert total(samples, "hailuo_callbacks_received_total", provider="apixo", outcome="accepted") >= 1

        # The JSON logs tell the generation's story: created and called back in the web
        # process, submitted and archived in the workers; succeeded in the web process when the
        # callback's own status read found it done (HAILUO_CALLBACK_STATUS_READ=inline), else in
        # a worker's poll.
        web = lifecycle_lines(groups.log("web"), generation_id)
        workers = lifecycle_lines(groups.log("worker-1") + groups.log("worker-2"), generation_id)
        assert {"created", "callback"} <= {line["step"] for line in web}
        steps = {(line["step"], line["state"]) for line in workers}
        assert {("submit", "submitting"), ("state", "submitted"), ("archived", "succeeded")} <= steps
        assert ("state", "succeeded") in steps | {(line["step"], line["state"]) for line in web}
        assert all(line["provider"] == "apixo" for line in web + workers)
        assert {line["task_id"] for line in workers if line["step"] != "submit"} == {done["provider_task_id"]}
        failed = False
    finally:
        problems = groups.stop()
        if not failed:
            assert not problems, f"{problems}\n{groups.tails()}"
            for name in ("web", "worker-1", "worker-2"):
                assert "Traceback" not in groups.log(name), groups.log(name)[-4000:]
    assert time.monotonic() - started < 120, "the production end-to-end test should stay well under two minutes"
