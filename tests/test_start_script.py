"""``scripts/start.sh``: the release step, then gunicorn (``web``) answering on a free port, on a fresh database.

This is what the Dockerfile, compose.yaml, a Procfile or a systemd unit run; the image
itself cannot be built in CI (no registry), so the script is what is tested.
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
import time
import urllib.request

import psycopg
import pytest
from cryptography.fernet import Fernet

from .conftest import ROOT, free_port

pytestmark = [pytest.mark.postgres]


def test_release_then_web_answers(fresh_database, tmp_path):
    port = free_port()
    token = secrets.token_urlsafe(24)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHON": str(ROOT / ".venv" / "bin" / "python"),
        "DATABASE_URL": fresh_database,
        "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
        "HAILUO_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1",
        "DJANGO_SECURE_SSL_REDIRECT": "0",  # plain HTTP on loopback: the documented opt-out
        "HAILUO_MEDIA_ROOT": str(tmp_path / "media"),
        "HAILUO_METRICS_TOKEN": token,
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "prom"),
        "PORT": str(port),
        "GUNICORN_WORKERS": "2",
    }
    release = subprocess.run(["scripts/start.sh", "release"], cwd=ROOT, env=env, capture_output=True, text=True,
                             timeout=300)
    assert release.returncode == 0, release.stdout + release.stderr
    assert "release: done" in release.stdout and "hailuo:poll-sweep" in release.stdout
    with psycopg.connect(fresh_database) as conn:
        from generations.management.commands.setup_schedules import SCHEDULES

        names = {row[0] for row in conn.execute("SELECT name FROM django_q_schedule WHERE name LIKE 'hailuo:%%'")}
        assert names == set(SCHEDULES)
        assert conn.execute("SELECT to_regclass('hailuo_cache')").fetchone()[0] == "hailuo_cache"

    log = open(tmp_path / "web.log", "w")
    web = subprocess.Popen(["scripts/start.sh", "web"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                           start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(f"{base}/healthz/live", timeout=5) as response:
                    assert response.status == 200
                    break
            except OSError:
                assert web.poll() is None, (tmp_path / "web.log").read_text()
                assert time.monotonic() < deadline, (tmp_path / "web.log").read_text()
                time.sleep(0.5)
        with urllib.request.urlopen(f"{base}/accounts/login/", timeout=10) as response:
            page = response.read().decode()
            assert response.status == 200 and "Content-Security-Policy" in response.headers
            static_url = page.split('src="')[1].split('"')[0]  # a hashed (manifest) static file
        with urllib.request.urlopen(f"{base}{static_url}", timeout=10) as response:
            assert response.status == 200 and response.read()
        request = urllib.request.Request(f"{base}/metrics", headers={"Authorization": f"Bearer {token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            assert b"hailuo_generations" in response.read()
        assert "GET /accounts/login/ HTTP/1.1\" 200" in (tmp_path / "web.log").read_text()  # the access log
    finally:
        os.killpg(web.pid, signal.SIGTERM)
        web.wait(timeout=30)
        log.close()
