"""The REST API's own middleware stack (``config.middleware``, issue 16).

API requests skip the browser's middleware (sessions, CSRF, messages, allauth, static files)
yet answer with the same security headers, the same error shape and the same refusals; the
interactive docs stay on the browser stack.
"""

from __future__ import annotations

import pytest
from django.conf import settings
from django.test import Client

pytestmark = pytest.mark.django_db

SECURITY_HEADERS = ("Content-Security-Policy", "X-Frame-Options", "X-Content-Type-Options", "Referrer-Policy",
                    "Cross-Origin-Opener-Policy")


def test_api_answers_carry_the_browser_pages_security_headers(client, api_token, member):
    page = client.get("/accounts/login/")
    api = client.get("/api/v1/providers", HTTP_AUTHORIZATION=f"Bearer {api_token}")
    assert page.status_code == 200 and api.status_code == 200
    for name in SECURITY_HEADERS:
        assert page.get(name), name
        assert api.get(name) == page.get(name), name
    assert "default-src 'self'" in api["Content-Security-Policy"]
    assert api["X-Frame-Options"] == "DENY"


def test_error_answers_keep_the_headers_and_the_error_shape(client):
    for path in ("/api/v1/providers", "/api/v1/no-such-thing", "/api/v1/providers/"):
        response = client.get(path)
        assert response.status_code in (401, 404), path
        assert response["Content-Type"].startswith("application/json"), path
        assert set(response.json()) == {"code", "message", "fields"}, path
        assert response["X-Frame-Options"] == "DENY" and response["Content-Security-Policy"], path


def test_an_api_request_neither_reads_nor_sets_a_session(client, member, api_token):
    """A logged-in browser's session cookie does not authenticate an API call (tokens only),
    and an API answer never sets a cookie: no session, no CSRF token, no messages."""
    client.force_login(member)
    assert client.get("/api/v1/providers").status_code == 401
    response = client.get("/api/v1/providers", HTTP_AUTHORIZATION=f"Bearer {api_token}")
    assert response.status_code == 200
    assert not hasattr(response.wsgi_request, "session") and not hasattr(response.wsgi_request, "user")
    assert not response.cookies
    assert "Cookie" not in response.get("Vary", "")
    page = client.get("/studio/")
    assert page.status_code == 200 and "Cookie" in page["Vary"]  # the browser stack still runs for pages
    assert page.wsgi_request.user == member


def test_callbacks_and_health_checks_run_the_api_stack_too(client, member):
    """A provider's callback and the health checks are programs too: the same headers, no
    session read or cookie set even with a session cookie sent, the answer unchanged (a
    callback with a wrong token is refused as before)."""
    client.force_login(member)
    callback = client.post("/hooks/apixo/00000000-0000-0000-0000-000000000000/not-a-token/", b"{}",
                           content_type="application/json")
    health = client.get("/healthz/live")
    assert callback.status_code == 404 and callback.json()["ok"] is False
    assert health.status_code == 200
    for response in (callback, health):
        assert not hasattr(response.wsgi_request, "session")
        assert not response.cookies and "Cookie" not in response.get("Vary", "")
        assert response["X-Frame-Options"] == "DENY" and response["Content-Security-Policy"]
        assert response["X-Content-Type-Options"] == "nosniff"


def test_the_docs_stay_on_the_browser_stack(client):
    response = client.get("/api/v1/docs")
    assert response.status_code == 200
    assert "text/html" in response["Content-Type"]
    assert response["Content-Security-Policy"]
    assert client.get("/api/v1/openapi.json").status_code == 200


def test_the_api_stack_is_the_configured_one():
    from config.middleware import ApiStack

    stack = ApiStack(lambda request: None)
    chain, names = stack.api_response, []
    while not hasattr(inner := getattr(chain, "__wrapped__", chain), "__func__"):  # down to a bound method
        names.append(f"{type(inner).__module__}.{type(inner).__qualname__}")
        chain = inner.get_response
    assert inner.__func__.__name__ == "_get_response"  # Django's own view dispatch
    assert names == list(settings.HAILUO_API_MIDDLEWARE)
    browser_only = {"django.contrib.sessions.middleware.SessionMiddleware", "django.middleware.csrf.CsrfViewMiddleware",
                    "django.contrib.messages.middleware.MessageMiddleware", "allauth.account.middleware.AccountMiddleware"}
    assert not browser_only & set(names)
    assert settings.MIDDLEWARE[0] == "config.middleware.ApiStack"


def test_https_redirect_and_hsts_apply_to_the_api(settings, api_token):
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 3600
    client = Client()  # a new handler: the stacks read the settings when built
    response = client.get("/api/v1/providers", HTTP_AUTHORIZATION=f"Bearer {api_token}")
    assert response.status_code == 301 and response["Location"].startswith("https://")
    response = client.get("/api/v1/providers", HTTP_AUTHORIZATION=f"Bearer {api_token}", secure=True)
    assert response.status_code == 200
    assert response["Strict-Transport-Security"].startswith("max-age=3600")


def test_report_only_csp_is_the_browser_stacks_too(settings, api_token):
    settings.CONTENT_SECURITY_POLICY_REPORT_ONLY, settings.CONTENT_SECURITY_POLICY = settings.CONTENT_SECURITY_POLICY, None
    client = Client()
    page = client.get("/accounts/login/")
    api = client.get("/api/v1/providers", HTTP_AUTHORIZATION=f"Bearer {api_token}")
    assert "Content-Security-Policy" not in api and "Content-Security-Policy" not in page
    assert api["Content-Security-Policy-Report-Only"] == page["Content-Security-Policy-Report-Only"]


def test_a_host_we_do_not_serve_answers_the_api_error_shape(client):
    """Django refuses a ``Host`` outside ``ALLOWED_HOSTS`` (400); under the API the refusal is
    JSON like every other error (the browser stack answered an HTML page)."""
    response = client.get("/api/v1/providers", HTTP_HOST="evil.example")
    assert response.status_code == 400
    assert response["Content-Type"].startswith("application/json")
    assert response.json()["code"] == "bad_request"
    assert response["X-Frame-Options"] == "DENY" and response["Content-Security-Policy"]
