"""Prometheus metrics: what the processes count, what the database says at scrape time, and ``/metrics``.

Counted in the processes (prometheus-client; with several processes, set
``PROMETHEUS_MULTIPROC_DIR`` to a directory shared by every web and worker process of the
machine, emptied before they start: ``scripts/start.sh`` does both):

- ``hailuo_provider_request_seconds{provider,operation,outcome}``: a histogram of every
  HTTP request to a provider (its ``_count`` is the request count), timed in the one HTTP
  seam ``providers.http.ProviderHttp``; ``operation`` is submit, poll, cancel or balance
  (the adapter method that made the request, see :func:`provider_operation`), ``outcome``
  ``answered`` (any HTTP status) or ``transport_error``.
- ``hailuo_provider_errors_total{provider,operation,error_class}``: adapter calls that
  ended in a ``ProviderError``; ``error_class`` is ``rate_limited`` (HTTP 429 or a
  Retry-After), ``permanent`` (fix the request, don't retry) or ``transient``.
- ``hailuo_callbacks_received_total{provider,outcome}``: provider callbacks (``accepted``
  or ``rejected``), counted in the callback view.

Read from the database at scrape time (:class:`DatabaseCollector`): generations by state
and provider, money held (open holds) and captured (USD, as floats: Prometheus has no
decimals; the ledger stays the exact record), due-but-not-yet-polled lag, django-q2
queue depth and oldest age, archive failures.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import ipaddress
import os
import secrets
import time
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

PROVIDER_REQUEST_SECONDS = Histogram(
    "hailuo_provider_request_seconds",
    "HTTP requests to providers: latency in seconds (the _count is the number of requests).",
    ["provider", "operation", "outcome"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
PROVIDER_ERRORS = Counter(
    "hailuo_provider_errors",
    "Provider calls that failed, by class: permanent, transient or rate_limited.",
    ["provider", "operation", "error_class"],
)
CALLBACKS_RECEIVED = Counter(
    "hailuo_callbacks_received", "Provider callbacks received, by outcome (accepted or rejected).", ["provider", "outcome"]
)

#: (provider kind, operation) of the adapter call in progress in this task/thread.
_current_call: contextvars.ContextVar[tuple[str, str] | None] = contextvars.ContextVar("hailuo_provider_call", default=None)

#: Adapter method name → operation label.
OPERATIONS = {"submit": "submit", "fetch_status": "poll", "cancel": "cancel", "fetch_balance": "balance"}


def error_class(exc) -> str:
    """``rate_limited``, ``permanent`` or ``transient`` for a ``providers.http.ProviderError``."""
    if exc.http_status == 429 or exc.retry_after is not None:
        return "rate_limited"
    return "permanent" if exc.permanent else "transient"


def provider_operation(method, operation: str):
    """Wrap an async adapter method: its requests are labelled ``operation``; its ``ProviderError`` exceptions counted.

    Applied by ``ProviderAdapter.__init_subclass__`` to submit, fetch_status, cancel and
    fetch_balance of every adapter; the label ``provider`` is the adapter's ``kind``.
    """
    from providers.http import ProviderError

    @functools.wraps(method)
    async def wrapper(self, *args, **kwargs):
        token = _current_call.set((self.kind, operation))
        try:
            return await method(self, *args, **kwargs)
        except ProviderError as exc:
            PROVIDER_ERRORS.labels(self.kind, operation, error_class(exc)).inc()
            raise
        finally:
            _current_call.reset(token)

    wrapper._hailuo_instrumented = True
    return wrapper


@contextlib.contextmanager
def observe_provider_request(provider: str = "") -> Iterator[None]:
    """Time one provider HTTP request into ``hailuo_provider_request_seconds`` (used by ``ProviderHttp``)."""
    kind, operation = _current_call.get() or ((provider or "unknown").lower(), "other")
    started = time.perf_counter()
    outcome = "transport_error"
    try:
        yield
        outcome = "answered"
    finally:
        PROVIDER_REQUEST_SECONDS.labels(kind, operation, outcome).observe(time.perf_counter() - started)


class DatabaseCollector:
    """Gauges read from PostgreSQL/SQLite at each scrape (a handful of aggregate queries)."""

    def collect(self):
        from django.db.models import Count, Exists, Min, OuterRef, Q, Sum
        from django.utils import timezone
        from django_q.models import OrmQ

        from billing.models import LedgerEntry
        from generations.models import ArchiveState, Generation, State

        now = timezone.now()
        generations = GaugeMetricFamily(
            "hailuo_generations", "Generations by state and provider (all time).", labels=["state", "provider"]
        )
        for row in Generation.objects.values("state", "provider_kind").annotate(n=Count("pk")).order_by():
            generations.add_metric([row["state"], row["provider_kind"]], row["n"])
        yield generations

        held = GaugeMetricFamily("hailuo_money_held_usd", "USD held by open holds (not yet captured or released).",
                                 labels=["provider"])
        settled = LedgerEntry.objects.filter(
            generation=OuterRef("generation"), kind__in=[LedgerEntry.Kind.CAPTURE, LedgerEntry.Kind.RELEASE]
        )
        open_holds = (
            LedgerEntry.objects.filter(kind=LedgerEntry.Kind.HOLD)
            .alias(settled=Exists(settled))
            .filter(settled=False)
            .values("provider_account__kind")
            .annotate(total=Sum("amount"))
            .order_by()
        )
        for row in open_holds:
            held.add_metric([row["provider_account__kind"] or ""], float(row["total"] or 0))
        yield held

        captured = CounterMetricFamily("hailuo_money_captured_usd", "USD captured (charged) since the start.",
                                       labels=["provider"])
        for row in (
            LedgerEntry.objects.filter(kind=LedgerEntry.Kind.CAPTURE)
            .values("provider_account__kind").annotate(total=Sum("amount")).order_by()
        ):
            captured.add_metric([row["provider_account__kind"] or ""], float(row["total"] or 0))
        yield captured

        due = Generation.objects.filter(
            state__in=[State.SUBMITTED, State.RUNNING], next_poll_at__lte=now
        ).aggregate(n=Count("pk"), oldest=Min("next_poll_at"))
        yield GaugeMetricFamily("hailuo_polls_due", "Generations due for a poll and not yet polled.", value=due["n"])
        yield GaugeMetricFamily(
            "hailuo_poll_lag_seconds", "How long the most overdue generation has waited for its poll (0: none due).",
            value=(now - due["oldest"]).total_seconds() if due["oldest"] else 0.0,
        )

        queue = OrmQ.objects.aggregate(
            waiting=Count("pk", filter=Q(lock__lte=now)), running=Count("pk", filter=Q(lock__gt=now)),
            oldest=Min("lock", filter=Q(lock__lte=now)),
        )
        yield GaugeMetricFamily("hailuo_queue_depth", "django-q2 tasks waiting for a worker.", value=queue["waiting"])
        yield GaugeMetricFamily("hailuo_queue_in_flight", "django-q2 tasks taken by a worker, not yet acknowledged.",
                                value=queue["running"])
        yield GaugeMetricFamily(
            "hailuo_queue_oldest_age_seconds", "Age of the oldest django-q2 task waiting for a worker (0: none).",
            value=(now - queue["oldest"]).total_seconds() if queue["oldest"] else 0.0,
        )

        archives = GaugeMetricFamily("hailuo_archives", "Video archives (downloads into our storage) by state.",
                                     labels=["state"])
        counts = dict(
            Generation.objects.exclude(archive_state=ArchiveState.NONE)
            .values_list("archive_state").annotate(n=Count("pk")).order_by()
        )
        for state in (ArchiveState.PENDING, ArchiveState.DONE, ArchiveState.FAILED):
            archives.add_metric([state.value], counts.get(state.value, 0))
        yield archives
        yield GaugeMetricFamily("hailuo_archive_failures", "Succeeded generations whose video could not be archived.",
                                value=counts.get(ArchiveState.FAILED.value, 0))


_database_registry = CollectorRegistry(auto_describe=False)
_database_registry.register(DatabaseCollector())


def render_metrics() -> bytes:
    """The exposition text: this process's (or, in multiprocess mode, every process's) counters + the database's gauges."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY as registry
    return generate_latest(registry) + generate_latest(_database_registry)


def _client_allowed(request) -> bool:
    from django.conf import settings

    token = settings.HAILUO_METRICS_TOKEN
    header = request.headers.get("Authorization", "")
    if token and header.startswith("Bearer ") and secrets.compare_digest(header[7:].strip().encode(), token.encode()):
        return True
    try:
        address = ipaddress.ip_address(request.META.get("REMOTE_ADDR", ""))
    except ValueError:
        return False
    for allowed in settings.HAILUO_METRICS_ALLOWED_IPS:
        try:
            if address in ipaddress.ip_network(allowed, strict=False):
                return True
        except ValueError:
            continue
    return False


def metrics_view(request):
    """``GET /metrics``: the Prometheus text format.

    Allowed with ``Authorization: Bearer $HAILUO_METRICS_TOKEN`` or from an address in
    ``HAILUO_METRICS_ALLOWED_IPS`` (the TCP peer, REMOTE_ADDR: behind a proxy, allow-list
    the proxy or use the token); otherwise 403, and 404 when neither is configured
    (metrics are off).
    """
    from django.conf import settings
    from django.http import Http404, HttpResponse, JsonResponse

    if not settings.HAILUO_METRICS_TOKEN and not settings.HAILUO_METRICS_ALLOWED_IPS:
        raise Http404("metrics are off: set HAILUO_METRICS_TOKEN or HAILUO_METRICS_ALLOWED_IPS")
    if not _client_allowed(request):
        from config.errors import Forbidden

        error = Forbidden("A metrics token (Authorization: Bearer) or an allowed address is required.")
        return JsonResponse(error.as_dict(), status=error.status)
    return HttpResponse(render_metrics(), content_type=CONTENT_TYPE_LATEST)
