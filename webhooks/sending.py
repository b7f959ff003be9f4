"""Sending webhook deliveries: claim an attempt, POST it signed through the SSRF guard, log it,
schedule the next attempt with backoff, disable an endpoint failing for days and email its
owner. Split from ``webhooks.services`` (which re-exports these names); hand-overs to the
workers go through ``services.enqueue_delivery`` so tests and callers patch one place.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timedelta

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Q

from config.errors import DomainError
from providers.http import UnsafeURL, make_public_client
from webhooks import services, signing
from webhooks.models import TEST_EVENT, Attempt, Delivery, Endpoint
from webhooks.services import (
    EXCERPT_CHARS,
    GENERATION_EVENTS,
    MAX_RESPONSE_BYTES,
    _now,
    check_endpoint_url,
    emit,
    endpoint_create,
    endpoint_for,
    endpoint_rotate_secret,
    endpoint_update,
    endpoints_visible_to,
    generation_data,
    iso,
    message_body,
    on_generation_event,
    public_url,
    release_held,
)

log = logging.getLogger(__name__)


def _lease_seconds() -> float:
    return float(settings.HAILUO_WEBHOOK_TIMEOUT) + 60.0


def claim(delivery: Delivery, *, manual: bool = False, now: datetime | None = None) -> int | None:
    """Claim the next attempt of ``delivery``; returns its number, or None when it is not ours to send.

    One conditional UPDATE: ``attempts`` + 1 and a lease, only if ``attempts`` is still the
    value read and no other attempt holds an unexpired lease; an automatic attempt also needs
    the delivery pending and due. So two workers (or a worker and a redeliver click) never
    send the same attempt, nor two attempts of one delivery at once.
    """
    now = _now(now)
    conditions = Q(pk=delivery.pk, attempts=delivery.attempts) & (Q(lease_until__isnull=True) | Q(lease_until__lt=now))
    if not manual:
        conditions &= Q(status=Delivery.Status.PENDING, next_attempt_at__lte=now)
    else:
        conditions &= ~Q(status=Delivery.Status.HELD)
    moved = Delivery.objects.filter(conditions).update(
        attempts=F("attempts") + 1, lease_until=now + timedelta(seconds=_lease_seconds())
    )
    return delivery.attempts + 1 if moved else None


def redeliver(delivery: Delivery, *, now: datetime | None = None) -> int:
    """A manual attempt of ``delivery`` now (by the workers), whatever its status; returns the attempt number.

    The attempt is claimed here, so a double click sends once. Raises ``DomainError`` 409
    ``delivery_in_progress`` while another attempt is being sent, or the delivery is held.
    """
    number = claim(delivery, manual=True, now=now)
    if number is None:
        raise DomainError("delivery_in_progress", "An attempt of this delivery is being sent right now (or it waits for its video); try again in a minute.", status=409)
    transaction.on_commit(lambda: services.enqueue_delivery(delivery.pk, number, True))
    return number


def send_test_ping(endpoint: Endpoint, *, actor, now: datetime | None = None) -> Delivery:
    """Send a ``webhook.test`` message to ``endpoint`` once (by the workers; no retries), even if disabled.

    Its ``data``: ``{"endpoint_id", "message", "requested_by"}``. Returns the delivery.
    """
    now = _now(now)
    body = message_body(TEST_EVENT, {
        "endpoint_id": str(endpoint.pk), "message": "A test ping from Hailuo Studio.", "requested_by": actor.email,
    }, now=now)
    delivery = Delivery.objects.create(endpoint=endpoint, event_type=TEST_EVENT, body=body, created_at=now,
                                       status=Delivery.Status.PENDING, next_attempt_at=None)
    number = claim(delivery, manual=True, now=now)
    transaction.on_commit(lambda: services.enqueue_delivery(delivery.pk, number, True))
    return delivery


def _post(endpoint: Endpoint, delivery: Delivery, *, now: datetime) -> dict:
    """POST the delivery once; returns Attempt fields (status_code, latency_ms, response_excerpt, error, ok)."""
    timestamp = int(now.timestamp())
    timeout = httpx.Timeout(float(settings.HAILUO_WEBHOOK_TIMEOUT), connect=min(10.0, float(settings.HAILUO_WEBHOOK_TIMEOUT)))
    started = time.monotonic()
    result = {"status_code": None, "response_excerpt": "", "error": "", "ok": False}
    try:
        headers = {
            "content-type": "application/json",
            "user-agent": "HailuoStudio-Webhooks/1",
            **signing.headers(endpoint.secret, msg_id=delivery.pk, timestamp=timestamp, body=delivery.body),
        }
        with make_public_client(allowed_private_hosts=settings.HAILUO_ALLOWED_PRIVATE_HOSTS, timeout=timeout) as client:
            with client.stream("POST", endpoint.url, content=delivery.body.encode(), headers=headers) as response:
                received = b""
                for chunk in response.iter_bytes():
                    received += chunk
                    if len(received) >= MAX_RESPONSE_BYTES:
                        break
                result["status_code"] = response.status_code
                result["response_excerpt"] = received.decode("utf-8", "replace")[:EXCERPT_CHARS]
                result["ok"] = 200 <= response.status_code < 300
                if 300 <= response.status_code < 400:
                    result["error"] = "Redirects are not followed: answer 2xx at the registered URL."
    except UnsafeURL as exc:
        result["error"] = f"Refused by the SSRF guard: {exc}"
    except (httpx.HTTPError, OSError) as exc:
        result["error"] = f"{exc.__class__.__name__}: {exc}"[:EXCERPT_CHARS]
    except Exception as exc:  # e.g. a secret no configured key decrypts: logged as a failed attempt, retried on schedule
        log.exception("webhook delivery %s: attempt failed before or while sending", delivery.pk)
        result["error"] = f"{exc.__class__.__name__}: {exc}"[:EXCERPT_CHARS]
    result["latency_ms"] = int((time.monotonic() - started) * 1000)
    return result


def next_delay(auto_failures: int) -> int | None:
    """Seconds to wait after the ``auto_failures``-th failed automatic attempt, or None when retries are over."""
    delays = settings.HAILUO_WEBHOOK_RETRY_DELAYS
    return delays[auto_failures - 1] if auto_failures <= len(delays) else None


def delivery_attempt(*, delivery_id: str, attempt: int | None = None, manual: bool = False,
                     now: datetime | None = None) -> str:
    """Make one attempt of a delivery (the worker task's body). Returns the delivery's status after it.

    ``attempt``: the number already claimed by the sweep or a redeliver (the call does
    nothing unless the delivery's ``attempts`` still equals it); None: claim one now. An
    automatic attempt for a disabled endpoint is not sent: the delivery fails. After a failed
    automatic attempt the next one is due after :func:`next_delay`; when none is left the
    delivery has failed. A manual attempt never moves the backoff. Every attempt is logged.
    """
    now = _now(now)
    delivery = Delivery.objects.select_related("endpoint").filter(pk=delivery_id).first()
    if delivery is None:
        return "missing"
    if attempt is None:
        attempt = claim(delivery, manual=manual, now=now)
        if attempt is None:
            return delivery.status
    elif delivery.attempts != attempt or delivery.lease_until is None:
        return delivery.status  # another attempt has started since: not ours
    endpoint = delivery.endpoint
    if not manual and not endpoint.enabled:
        Delivery.objects.filter(pk=delivery.pk).update(
            status=Delivery.Status.FAILED, lease_until=None, next_attempt_at=None, completed_at=now
        )
        Attempt.objects.create(delivery=delivery, number=attempt, started_at=now, error="Not sent: the endpoint is disabled.")
        return Delivery.Status.FAILED
    result = _post(endpoint, delivery, now=now)
    Attempt.objects.create(delivery=delivery, number=attempt, manual=manual, started_at=now, **result)
    if result["ok"]:
        Delivery.objects.filter(pk=delivery.pk).update(
            status=Delivery.Status.SUCCEEDED, lease_until=None, next_attempt_at=None, completed_at=now
        )
        Endpoint.objects.filter(pk=endpoint.pk).exclude(failing_since=None).update(failing_since=None)
        return Delivery.Status.SUCCEEDED
    fields = {"lease_until": None}
    status = delivery.status
    if delivery.event_type == TEST_EVENT:
        status = Delivery.Status.FAILED
        fields.update(completed_at=now)
    elif not manual:
        failures = delivery.auto_failures + 1
        delay = next_delay(failures)
        fields["auto_failures"] = failures
        if delay is None:
            status = Delivery.Status.FAILED
            fields.update(next_attempt_at=None, completed_at=now)
        else:
            fields["next_attempt_at"] = now + timedelta(seconds=delay)
    Delivery.objects.filter(pk=delivery.pk).update(status=status, **fields)
    _record_failure(endpoint, now=now, last_error=result["error"] or f"HTTP {result['status_code']}")
    return status


def _record_failure(endpoint: Endpoint, *, now: datetime, last_error: str) -> bool:
    """Note a failed attempt; disable the endpoint (once) and email its owner when it has
    failed for ``HAILUO_WEBHOOK_DISABLE_AFTER`` seconds with no success. Returns True if disabled now."""
    Endpoint.objects.filter(pk=endpoint.pk, failing_since__isnull=True).update(failing_since=now)
    since = Endpoint.objects.filter(pk=endpoint.pk).values_list("failing_since", flat=True).first()
    window = timedelta(seconds=settings.HAILUO_WEBHOOK_DISABLE_AFTER)
    if since is None or now - since < window:
        return False
    reason = f"Disabled on {iso(now)}: every attempt failed since {iso(since)} (last: {last_error[:300]})."
    with transaction.atomic():
        if not Endpoint.objects.filter(pk=endpoint.pk, enabled=True).update(enabled=False, disabled_reason=reason):
            return False
        Delivery.objects.filter(endpoint=endpoint, status__in=[Delivery.Status.PENDING, Delivery.Status.HELD]).update(
            status=Delivery.Status.FAILED, next_attempt_at=None, completed_at=now
        )
    _email_disabled(endpoint, reason)
    return True


def _email_disabled(endpoint: Endpoint, reason: str) -> None:
    recipients = Endpoint.objects.select_related("user").get(pk=endpoint.pk).owner_emails()
    if not recipients:
        log.warning("webhook endpoint %s disabled; no owner address to tell", endpoint.pk)
        return
    page = public_url(f"/webhooks/{endpoint.pk}/")
    send_mail(
        subject="Hailuo Studio: a webhook endpoint was disabled",
        message=(
            f"The webhook endpoint {endpoint.url} ({endpoint.owner_label}) has been disabled.\n\n{reason}\n\n"
            f"Fix the receiver, then enable the endpoint again and redeliver what it missed: {page}\n"
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=recipients,
        fail_silently=True,
    )


def deliveries_sweep(*, now: datetime | None = None, limit: int = 200) -> dict[str, int]:
    """The scheduled pass: release held successes waiting too long, claim due attempts and
    hand them to the workers. Returns ``{"released": n, "enqueued": n}``."""
    now = _now(now)
    released = release_held(older_than=now - timedelta(seconds=settings.HAILUO_WEBHOOK_HOLD_MAX), now=now)
    enqueued = 0
    due = (
        Delivery.objects.filter(status=Delivery.Status.PENDING, next_attempt_at__lte=now)
        .filter(Q(lease_until__isnull=True) | Q(lease_until__lt=now))
        .order_by("next_attempt_at")[:limit]
    )
    for delivery in due:
        number = claim(delivery, now=now)
        if number is not None:
            services.enqueue_delivery(delivery.pk, number)
            enqueued += 1
    return {"released": len(released), "enqueued": enqueued}


__all__ = [
    "GENERATION_EVENTS",
    "check_endpoint_url",
    "claim",
    "deliveries_sweep",
    "delivery_attempt",
    "emit",
    "endpoint_create",
    "endpoint_for",
    "endpoint_rotate_secret",
    "endpoint_update",
    "endpoints_visible_to",
    "generation_data",
    "on_generation_event",
    "redeliver",
    "send_test_ping",
]
