"""Production settings: ``check --deploy`` clean with only the required variables; the security headers.

The deploy check runs ``manage.py check --deploy`` in a fresh process with ``config.settings``
(not the test settings), DEBUG off and only the README's required production variables.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys

import pytest
from cryptography.fernet import Fernet

from .conftest import ROOT

#: The README's required production variables (its "Configuration" table marks them "required").
REQUIRED = {
    "DJANGO_SECRET_KEY": secrets.token_urlsafe(50),
    "HAILUO_ENCRYPTION_KEYS": Fernet.generate_key().decode(),
    "DJANGO_ALLOWED_HOSTS": "studio.example.com",
    "DATABASE_URL": "postgres://hailuo:secret@db.example.com:5432/hailuo",
}


def run_manage(*args, extra_env=None):
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DJANGO_SETTINGS_MODULE": "config.settings", **REQUIRED,
           **(extra_env or {})}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=120)


def test_check_deploy_is_clean_with_only_the_required_variables():
    done = run_manage("check", "--deploy", "--fail-level", "WARNING")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "System check identified no issues" in done.stdout


def test_the_secure_defaults_and_their_opt_outs():
    code = ("from django.conf import settings as s; print(s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_SECONDS, "
            "s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, getattr(s, 'SECURE_PROXY_SSL_HEADER', None))")
    secure = run_manage("shell", "-c", code)
    assert secure.stdout.strip().splitlines()[-1] == "True 31536000 True True None", secure.stderr
    opted_out = run_manage("shell", "-c", code, extra_env={
        "DJANGO_SECURE_SSL_REDIRECT": "0", "DJANGO_SECURE_HSTS_SECONDS": "0", "DJANGO_SECURE_COOKIES": "0",
        "DJANGO_SECURE_PROXY_SSL_HEADER": "X-Forwarded-Proto"})
    assert opted_out.stdout.strip().splitlines()[-1] == "False 0 False False ('HTTP_X_FORWARDED_PROTO', 'https')", opted_out.stderr
    # DEBUG on (the demo) relaxes them by default
    demo = run_manage("shell", "-c", code, extra_env={"DJANGO_DEBUG": "1"})
    assert demo.stdout.strip().splitlines()[-1] == "False 0 False False None", demo.stderr


@pytest.mark.django_db
def test_pages_carry_the_csp_and_the_other_security_headers(client, member):
    for url in ("/accounts/login/", "/admin/login/", "/api/v1/docs", "/studio/"):
        if url == "/studio/":
            client.force_login(member)
        response = client.get(url)
        assert response.status_code == 200, url
        csp = response["Content-Security-Policy"]
        assert "script-src 'self'" in csp and "unsafe-eval" not in csp, url
        assert "'unsafe-inline'" not in csp.split("script-src")[1].split(";")[0], url
        assert "frame-ancestors 'none'" in csp and "object-src 'none'" in csp, url
        assert response["X-Frame-Options"] == "DENY" and response["Referrer-Policy"] == "same-origin", url
        assert response["X-Content-Type-Options"] == "nosniff", url


@pytest.mark.django_db
def test_no_inline_script_in_the_rendered_pages(client, member):
    """Scripts come from files only: no inline <script> body, no on*= handler, no hx-on (htmx evals those)."""
    import re

    for url in ("/accounts/login/", "/api/v1/docs", "/studio/"):
        if url == "/studio/":
            client.force_login(member)
        html = client.get(url).content.decode()
        for tag in re.findall(r"<script\b[^>]*>(.*?)</script>", html, flags=re.S):
            assert tag.strip() == "" or tag.strip().startswith("{"), f"inline script in {url}: {tag[:80]}"
        assert not re.search(r"\son[a-z]+=\"", html) and "hx-on" not in html, url
