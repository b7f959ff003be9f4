"""Outbound webhooks: manage endpoints, create deliveries for events, send them with backoff.

Flow: an event (:func:`emit`, or a generation's final/attention state through
:func:`on_generation_event`) creates one :class:`~webhooks.models.Delivery` per subscribed,
enabled endpoint of the owner (the user and/or the team), and on commit hands each to the
django-q2 workers (:func:`enqueue_delivery` → ``webhooks.tasks.deliver``). A worker claims
the attempt (conditional UPDATE on ``Delivery.attempts``, so one attempt is never sent
twice), POSTs it through the SSRF guard (``providers.http.make_public_client``: pinned,
public addresses only unless ``HAILUO_ALLOWED_PRIVATE_HOSTS`` lists the host:port), logs an
:class:`~webhooks.models.Attempt` and, on failure, schedules the next attempt after
``HAILUO_WEBHOOK_RETRY_DELAYS``. The scheduled sweep (:func:`deliveries_sweep`, every minute)
hands due retries to the workers. An endpoint whose attempts have all failed for
``HAILUO_WEBHOOK_DISABLE_AFTER`` seconds is disabled and its owner emailed.

Every function that depends on the time takes ``now`` (timezone-aware UTC; default: the
current time) so tests drive the clock instead of sleeping.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime, timedelta

import httpx
from django.conf import settings
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from accounts.models import Membership, Team
from config.errors import DomainError, Forbidden, NotFound
from providers.http import UnsafeURL, check_public_url, make_public_client
from webhooks import signing
from webhooks.models import TEST_EVENT, Attempt, Delivery, Endpoint, EventType, new_secret

log = logging.getLogger(__name__)

EXCERPT_CHARS = 1000
#: Bytes of a receiver's answer read at most (the excerpt keeps the first 1,000 characters).
MAX_RESPONSE_BYTES = 64 * 1024
MAX_ENDPOINTS_PER_OWNER = 20

#: Generation states that fire an event, and the event type each fires. ``expired`` (no
#: final answer in time: the hold is released, nothing is charged) is a failure to the receiver;
#: the payload's ``state`` says which.
GENERATION_EVENTS = {
    "succeeded": EventType.GENERATION_SUCCEEDED,
    "failed": EventType.GENERATION_FAILED,
    "expired": EventType.GENERATION_FAILED,
    "canceled": EventType.GENERATION_CANCELED,
    "needs_reconciliation": EventType.GENERATION_NEEDS_RECONCILIATION,
}


def _now(now: datetime | None) -> datetime:
    return now or timezone.now()


def iso(value: datetime | None) -> str | None:
    """ISO 8601 in UTC with a ``Z`` (``2025-01-31T12:00:00.123456Z``), or None."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def public_url(path: str) -> str:
    """``HAILUO_PUBLIC_BASE_URL`` + ``path`` (just ``path`` when no public base URL is set)."""
    return f"{settings.HAILUO_PUBLIC_BASE_URL}{path}"


# --- visibility and management ---------------------------------------------------------------
def admin_team_ids(user) -> list[int]:
    """Ids of the teams ``user`` is a team admin of."""
    return list(Membership.objects.filter(user=user, role=Membership.Role.TEAM_ADMIN).values_list("team_id", flat=True))


def endpoints_visible_to(user):
    """Endpoints ``user`` may see and manage: their own, and their admin teams' endpoints."""
    return Endpoint.objects.filter(Q(user=user) | Q(team_id__in=admin_team_ids(user))).select_related("team", "user")


def endpoint_for(*, user, endpoint_id) -> Endpoint:
    """The endpoint if ``user`` may manage it; raises :class:`NotFound` otherwise (also for a bad id)."""
    try:
        return endpoints_visible_to(user).get(pk=endpoint_id)
    except (Endpoint.DoesNotExist, ValueError, TypeError) as exc:
        raise NotFound("No such webhook endpoint.") from exc


def delivery_for(*, endpoint: Endpoint, delivery_id: str) -> Delivery:
    """One delivery of ``endpoint``; raises :class:`NotFound`."""
    delivery = endpoint.deliveries.filter(pk=delivery_id).first()
    if delivery is None:
        raise NotFound("No such delivery.")
    return delivery


def _invalid(field: str, message: str) -> DomainError:
    return DomainError("validation_error", message, {field: [message]}, status=422)


def check_endpoint_url(url: str) -> str:
    """Refuse (422 ``validation_error`` on ``url``) a URL that is not http(s) or whose host is not public.

    The same guard as every fetch (``providers.http.check_public_url`` with
    ``HAILUO_ALLOWED_PRIVATE_HOSTS``); every delivery checks again and pins the address it
    connects to, so a DNS answer that changes later cannot reach a private address either.
    """
    url = (url or "").strip()
    if not url:
        raise _invalid("url", "A URL is required.")
    if len(url) > 2000:
        raise _invalid("url", "The URL is longer than 2,000 characters.")
    try:
        check_public_url(url, allowed_private_hosts=settings.HAILUO_ALLOWED_PRIVATE_HOSTS)
    except UnsafeURL as exc:
        raise _invalid("url", f"This URL cannot receive webhooks: {exc}.") from exc
    except OSError as exc:
        raise _invalid("url", "The URL's host does not resolve.") from exc
    return url


def check_events(events) -> list[str]:
    """The subscribed events, deduplicated in the order of :class:`EventType`; 422 for none or an unknown one."""
    events = list(events or [])
    unknown = sorted(set(events) - set(EventType.values))
    if unknown:
        raise _invalid("events", f"Unknown event type(s): {', '.join(unknown)}. Known: {', '.join(EventType.values)}.")
    if not events:
        raise _invalid("events", "Choose at least one event.")
    return [value for value in EventType.values if value in events]


def _owner_team(*, actor, team_id: int | None) -> Team | None:
    if team_id is None:
        return None
    team = Team.objects.filter(pk=team_id, memberships__user=actor).first()
    if team is None:
        raise NotFound("No such team.")
    if team.pk not in admin_team_ids(actor):
        raise Forbidden("Only a team admin registers webhook endpoints for the team.")
    return team


def endpoint_create(*, actor, url: str, events, description: str = "", enabled: bool = True,
                    team_id: int | None = None) -> tuple[Endpoint, str]:
    """Register an endpoint owned by ``actor`` (or by team ``team_id``, if ``actor`` is its team admin).

    Returns ``(endpoint, secret)``: the ``whsec_`` secret is returned here once and never again
    (only its last 4 characters are shown later). Raises ``DomainError`` 422 ``validation_error``
    (bad URL or events, too many endpoints), ``NotFound`` (not the actor's team), ``Forbidden``
    (a member but not a team admin).
    """
    team = _owner_team(actor=actor, team_id=team_id)
    url = check_endpoint_url(url)
    events = check_events(events)
    owned = Endpoint.objects.filter(team=team) if team else Endpoint.objects.filter(user=actor)
    if owned.count() >= MAX_ENDPOINTS_PER_OWNER:
        raise _invalid("url", f"At most {MAX_ENDPOINTS_PER_OWNER} endpoints per owner.")
    secret = new_secret()
    endpoint = Endpoint(
        user=None if team else actor, team=team, created_by=actor, url=url, events=events,
        description=(description or "").strip()[:200], enabled=enabled,
    )
    endpoint.set_secret(secret)
    endpoint.save()
    return endpoint, secret


def endpoint_update(endpoint: Endpoint, *, url: str | None = None, events=None, description: str | None = None,
                    enabled: bool | None = None) -> Endpoint:
    """Change the given fields (None: unchanged). Enabling again clears the failure record.
    Raises ``DomainError`` 422 like :func:`endpoint_create`."""
    if url is not None:
        endpoint.url = check_endpoint_url(url)
    if events is not None:
        endpoint.events = check_events(events)
    if description is not None:
        endpoint.description = description.strip()[:200]
    if enabled is not None:
        if enabled and not endpoint.enabled:
            endpoint.failing_since = None
            endpoint.disabled_reason = ""
        endpoint.enabled = enabled
    endpoint.save()
    return endpoint


def endpoint_rotate_secret(endpoint: Endpoint) -> str:
    """Give the endpoint a new ``whsec_`` secret and return it (shown once). Attempts from now on sign with it."""
    secret = new_secret()
    endpoint.set_secret(secret)
    endpoint.save(update_fields=["secret_encrypted", "secret_last4", "updated_at"])
    return secret


# --- events and payloads --------------------------------------------------------------------
def message_body(event_type: str, data: dict, *, now: datetime | None = None) -> str:
    """The JSON text sent: ``{"type": event_type, "timestamp": ISO 8601 UTC, "data": data}``
    (the Standard Webhooks payload structure), compact, UTF-8."""
    payload = {"type": event_type, "timestamp": iso(_now(now)), "data": data}
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False, default=str)


def generation_data(generation) -> dict:
    """The ``data`` of a generation event.

    Keys: ``id``, ``state``, ``provider``, ``provider_account_id``, ``model``, ``mode``,
    ``duration`` (seconds), ``resolution``, ``price_usd`` (the quote) and ``charged_usd``
    (captured on success, else null) as decimal strings in USD, ``fail_code``,
    ``fail_message``, ``archive_state``, ``url`` (``/api/v1/generations/{id}``),
    ``video_url`` (``/api/v1/generations/{id}/video``, null until the video is archived);
    both absolute below ``HAILUO_PUBLIC_BASE_URL`` when it is set; ``created_at`` and
    ``completed_at`` in ISO 8601 UTC.
    """
    base = f"/api/v1/generations/{generation.pk}"
    return {
        "id": str(generation.pk),
        "state": generation.state,
        "provider": generation.provider_kind,
        "provider_account_id": generation.provider_account_id,
        "model": generation.model,
        "mode": generation.mode,
        "duration": generation.duration,
        "resolution": generation.resolution,
        "price_usd": f"{generation.quoted_amount:f}",
        "charged_usd": f"{generation.charged_amount:f}" if generation.charged_amount is not None else None,
        "fail_code": generation.fail_code,
        "fail_message": generation.fail_message,
        "archive_state": generation.archive_state,
        "url": public_url(base),
        "video_url": public_url(base + "/video") if generation.has_video else None,
        "created_at": iso(generation.created_at),
        "completed_at": iso(generation.completed_at),
    }


def _subscribed(event_type: str, *, user, team) -> list[Endpoint]:
    owners = Q()
    if user is not None:
        owners |= Q(user=user)
    if team is not None:
        owners |= Q(team=team)
    if not owners:
        return []
    # Filtered in Python: JSON containment differs between PostgreSQL and SQLite.
    return [e for e in Endpoint.objects.filter(owners, enabled=True) if event_type in e.events]


def emit(event_type: str, *, user=None, team=None, payload: dict, generation=None,
         now: datetime | None = None) -> list[Delivery]:
    """Send the event ``event_type`` with ``payload`` (the message's ``data`` object) to every
    enabled endpoint of ``user`` and of ``team`` that subscribed to it.

    This is the one entry point for new event sources (e.g. the budgets work calls
    ``webhooks.emit("budget.threshold_reached", user=…, team=…, payload={...})`` with
    amounts as decimal strings in USD). ``payload`` must be JSON-serializable. Call it
    inside the transaction that records the fact: deliveries are created in it and handed
    to the workers only when it commits (nothing is sent for a rolled-back fact).
    Returns the deliveries created (none when nobody subscribed). Raises ``ValueError`` for an
    unknown event type.
    """
    if event_type not in EventType.values:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    endpoints = _subscribed(event_type, user=user, team=team)
    if not endpoints:
        return []
    now = _now(now)
    body = message_body(event_type, payload, now=now)
    deliveries = [
        Delivery.objects.create(endpoint=e, event_type=event_type, generation=generation, body=body,
                                status=Delivery.Status.PENDING, next_attempt_at=now, created_at=now)
        for e in endpoints
    ]
    _enqueue_on_commit([d.pk for d in deliveries])
    return deliveries


def _enqueue_on_commit(delivery_ids: list[str]) -> None:
    def go():
        for delivery_id in delivery_ids:
            enqueue_delivery(delivery_id)

    transaction.on_commit(go)


def on_generation_event(event) -> list[Delivery]:
    """React to a new ``GenerationEvent`` row (the ``post_save`` receiver in ``webhooks.signals``).

    A final or attention state (:data:`GENERATION_EVENTS`) creates the deliveries; a success
    whose video is still being archived is created ``held`` and released by the archive's own
    event (any later event of that generation, once ``archive_state`` is no longer pending).
    """
    from generations.models import ArchiveState, Generation

    event_type = GENERATION_EVENTS.get(event.state)
    if event_type is None:
        if not event.state:
            return release_held(generation_id=event.generation_id)
        return []
    generation = Generation.objects.get(pk=event.generation_id)
    if event_type != EventType.GENERATION_SUCCEEDED or generation.archive_state != ArchiveState.PENDING:
        return emit(event_type, user=generation.user, team=generation.team, payload=generation_data(generation),
                    generation=generation)
    endpoints = _subscribed(event_type, user=generation.user, team=generation.team)
    return [
        Delivery.objects.create(endpoint=e, event_type=event_type, generation=generation, status=Delivery.Status.HELD)
        for e in endpoints
    ]


def release_held(*, generation_id=None, older_than: datetime | None = None, now: datetime | None = None) -> list[Delivery]:
    """Turn held success deliveries into pending ones, their body built from the generation as it is now.

    With ``generation_id``: that generation's, once its archive is no longer pending. With
    ``older_than``: every held delivery created before it (the archive is taking too long:
    sent without a video URL). Returns the released deliveries.
    """
    from generations.models import ArchiveState, Generation

    held = Delivery.objects.filter(status=Delivery.Status.HELD)
    if generation_id is not None:
        held = held.filter(generation_id=generation_id)
    if older_than is not None:
        held = held.filter(created_at__lt=older_than)
    now = _now(now)
    released = []
    for delivery in held.select_related("generation"):
        generation = delivery.generation
        if generation is None:
            Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.HELD).update(status=Delivery.Status.FAILED, completed_at=now)
            continue
        generation = Generation.objects.get(pk=generation.pk)
        if older_than is None and generation.archive_state == ArchiveState.PENDING:
            continue
        body = message_body(delivery.event_type, generation_data(generation), now=now)
        if Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.HELD).update(
            status=Delivery.Status.PENDING, body=body, next_attempt_at=now
        ):
            released.append(delivery)
    if released:
        _enqueue_on_commit([d.pk for d in released])
    return released


# --- sending ----------------------------------------------------------------------------------
def enqueue_delivery(delivery_id: str, attempt: int | None = None, manual: bool = False) -> None:
    """Hand one delivery to the django-q2 workers (``attempt``: already claimed, see :func:`delivery_attempt`)."""
    from django_q.tasks import async_task

    async_task("webhooks.tasks.deliver", str(delivery_id), attempt, manual, task_name=f"webhook {delivery_id}"[:100])


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
    transaction.on_commit(lambda: enqueue_delivery(delivery.pk, number, True))
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
    transaction.on_commit(lambda: enqueue_delivery(delivery.pk, number, True))
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
            enqueue_delivery(delivery.pk, number)
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
