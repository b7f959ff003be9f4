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
from datetime import UTC, datetime

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from accounts.models import Membership, Team
from config.errors import DomainError, Forbidden, NotFound
from providers.http import UnsafeURL, check_public_url
from webhooks.models import Delivery, Endpoint, EventType, new_secret

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
    "rejected": EventType.GENERATION_CANCELED,  # a team admin's rejection (approvals); nothing is charged
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
    """Hand one delivery to the django-q2 workers (``attempt``: already claimed, see :func:`delivery_attempt`),
    through the process's broker as the lifecycle's tasks (``generations.broker.enqueue_task``)."""
    from generations.broker import enqueue_task

    enqueue_task("webhooks.tasks.deliver", str(delivery_id), attempt, manual, task_name=f"webhook {delivery_id}"[:100])




from webhooks.sending import (  # noqa: E402,F401  (re-exported: the sending half of this module)
    _email_disabled,
    _lease_seconds,
    _post,
    _record_failure,
    claim,
    deliveries_sweep,
    delivery_attempt,
    next_delay,
    redeliver,
    send_test_ping,
)
