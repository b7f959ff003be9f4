"""``/healthz`` (readiness) and ``/healthz/live`` (liveness) as JSON.

Readiness runs every check and answers 200 when all pass, 503 when one fails::

    {"status": "ok" | "fail",
     "checks": {"database": {"ok": true, "detail": "...", "ms": 1.2},
                "storage": {...}, "workers": {...}, "poll_sweep": {...}}}

- ``database``: a ``SELECT 1`` on the default database.
- ``storage``: a small file written to and deleted from the default storage (local media
  or S3), under ``healthz/``.
- ``workers``: the newest django-q2 cluster heartbeat (``django_q.status.Stat``, which each
  cluster's sentinel saves about twice a second in the shared ``django_q`` cache, a
  database table) is at most ``HAILUO_HEALTH_WORKER_MAX_AGE`` seconds old.
- ``poll_sweep``: a poll sweep holds a slot now, or the last one ended at most
  ``HAILUO_HEALTH_SWEEP_MAX_AGE`` seconds ago (``generations.models.SweepLease``: a sweep
  claims a slot until it ends, then sets the slot's ``expires_at`` to its end time).

Liveness answers 200 ``{"status": "ok"}`` without touching anything: the process serves.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import connection
from django.http import JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


class CheckFailed(Exception):
    """A health check's failure, with the reason as its message."""


def check_database() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return f"{connection.vendor} answers"


def check_storage() -> str:
    name = default_storage.save(f"healthz/{uuid.uuid4().hex}.txt", ContentFile(b"ok"))
    try:
        with default_storage.open(name, "rb") as handle:
            if handle.read() != b"ok":
                raise CheckFailed("the file read back differs from the one written")
    finally:
        default_storage.delete(name)
    return f"{type(default_storage._wrapped).__name__} writable"


def check_workers() -> str:
    from django_q.status import Stat

    stats = Stat.get_all()
    if not stats:
        raise CheckFailed("no worker cluster has reported a heartbeat (is run_workers running?)")
    newest = max(stat.timestamp for stat in stats)
    age = (timezone.now() - newest).total_seconds()
    if age > settings.HAILUO_HEALTH_WORKER_MAX_AGE:
        raise CheckFailed(f"the newest cluster heartbeat is {age:.0f} s old")
    return f"{len(stats)} cluster(s), newest heartbeat {age:.1f} s ago"


def check_poll_sweep() -> str:
    from generations.models import SweepLease

    now = timezone.now()
    leases = list(SweepLease.objects.all())
    if any(lease.holder and lease.expires_at > now for lease in leases):
        return "a sweep is running"
    if not leases:
        raise CheckFailed("no poll sweep has run yet (run setup_schedules and start the workers)")
    age = (now - max(lease.expires_at for lease in leases)).total_seconds()
    if age > settings.HAILUO_HEALTH_SWEEP_MAX_AGE:
        raise CheckFailed(f"the last poll sweep ended {age:.0f} s ago")
    return f"the last sweep ended {age:.0f} s ago"


#: name → check; each returns a detail string or raises.
CHECKS: dict[str, Callable[[], str]] = {
    "database": check_database,
    "storage": check_storage,
    "workers": check_workers,
    "poll_sweep": check_poll_sweep,
}


def run_checks() -> tuple[bool, dict[str, dict]]:
    """Run every check; returns (all passed, {name: {"ok", "detail", "ms"}}). Never raises."""
    results: dict[str, dict] = {}
    database_ok = True
    for name, check in CHECKS.items():
        started = time.perf_counter()
        if name != "database" and name != "storage" and not database_ok:
            results[name] = {"ok": False, "detail": "skipped: the database is down", "ms": 0.0}
            continue
        try:
            detail, ok = check(), True
        except Exception as exc:  # a health check reports every failure, whatever raised it
            detail, ok = (str(exc) if isinstance(exc, CheckFailed) else f"{exc.__class__.__name__}: {exc}"), False
        if name == "database":
            database_ok = ok
        results[name] = {"ok": ok, "detail": detail, "ms": round((time.perf_counter() - started) * 1000, 1)}
    return all(result["ok"] for result in results.values()), results


@never_cache
@require_GET
def healthz(request):
    """Readiness: every check, 200 when all pass, 503 otherwise (see the module docstring)."""
    ok, results = run_checks()
    return JsonResponse({"status": "ok" if ok else "fail", "checks": results}, status=200 if ok else 503)


@never_cache
@require_GET
def healthz_live(request):
    """Liveness: 200 as long as the process answers requests."""
    return JsonResponse({"status": "ok"})
