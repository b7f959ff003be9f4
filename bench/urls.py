"""The project's URLs plus two bench-only views: ``/bench/trivial`` (the baseline: answers ``ok``
without touching the database) and ``/bench/submit-floor`` (what a submit's database work
costs with no Python between its statements: the floor under ``POST /api/v1/generations``)."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import datetime

from django.db import connection
from django.http import HttpResponse, JsonResponse
from django.urls import include, path
from django.utils import timezone


def trivial(request):
    """The baseline: the same server, middleware and worker, no work."""
    return HttpResponse(b"ok", content_type="text/plain")


_PLAN: dict[int, tuple[list, list, object]] = {}
_PLAN_LOCK = threading.Lock()


def _capture_plan(user) -> tuple[list, list, object]:
    """Run two real submits for ``user`` (``services.generation_create``, the body of
    ``bench/submit_throughput.BODY``): the first warms this process's caches (provider account,
    price rules, approval rule), as every submit after a worker's first finds them; the second
    is recorded, every statement with its parameters. Returns ``(the statements inside its
    transaction, the statements outside it (the queue row, after the commit), the recorded
    generation's id)``. Called within a request whose token read noted the configuration
    version (``billing.config_cache``), as the API's submit is."""
    from bench.submit_throughput import BODY
    from generations import services
    from providers.models import ProviderAccount

    inside: list = []
    outside: list = []

    def record(execute, sql, params, many, context):
        (inside if connection.in_atomic_block else outside).append((sql, list(params or ())))
        return execute(sql, params, many, context)

    account = ProviderAccount.objects.order_by("pk").first()
    params = services.CreateParams(**dict(BODY, provider_account_id=account.pk))
    services.generation_create(user=user, params=params)
    with connection.execute_wrapper(record):
        generation = services.generation_create(user=user, params=params)
    return inside, outside, generation.pk


def _replay(params: list, old_id, new_id, now: datetime) -> list:
    """``params`` of a recorded statement for a new generation: its id and every time replaced."""
    out = []
    for value in params:
        if value == old_id or value == str(old_id):
            value = new_id if not isinstance(value, str) else str(new_id)
        elif isinstance(value, datetime):
            value = now
        out.append(value)
    return out


def submit_floor(request):
    """``POST /bench/submit-floor`` with the bench's bearer token: the token read that every API
    call makes (``accounts.selectors.api_token_for``, as the real submit's), then the very
    statements a real submit sends, recorded from one (:func:`_capture_plan`) and replayed for a
    new generation id in ONE round trip (psycopg's pipeline: BEGIN, the budget locks and
    reads, the generation, its event, the hold and its running totals, COMMIT, then the queue
    row). No validation, quote, budget arithmetic or ORM in between: the cost of a submit
    whose whole database work were one call, the bound that moving the money rules into a
    database function could at best reach. Answers 201 ``{"id": …}``; 401 without a valid token.
    PostgreSQL only. Not a route of the app: ``bench.settings_bench`` only."""
    from psycopg import Cursor

    from accounts.selectors import api_token_for
    from config.hotsql import hot_cursor

    raw = request.META.get("HTTP_AUTHORIZATION", "").removeprefix("Bearer ")  # as config.apiauth reads it
    token = api_token_for(raw_token=raw)
    if token is None:
        return JsonResponse({"code": "unauthorized"}, status=401)
    json.loads(request.body)
    plan = _PLAN.get(token.user_id)
    if plan is None:
        with _PLAN_LOCK:
            plan = _PLAN.get(token.user_id) or _PLAN.setdefault(token.user_id, _capture_plan(token.user))
    inside, outside, old_id = plan
    new_id, now = uuid.uuid4(), timezone.now()
    with hot_cursor():  # the connection open, its prepare threshold set as the app's statements have it
        pass
    db = connection.connection
    with db.pipeline(), db.transaction(), Cursor(db) as cursor:
        for sql, params in inside:
            cursor.execute(sql, _replay(params, old_id, new_id, now))
    with db.pipeline(), Cursor(db) as cursor:
        for sql, params in outside:
            cursor.execute(sql, _replay(params, old_id, new_id, now))
    return JsonResponse({"id": str(new_id)}, status=201)


urlpatterns = [
    path("bench/trivial", trivial),
    path("bench/submit-floor", submit_floor),
    path("", include("config.urls")),
]
