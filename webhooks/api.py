"""REST endpoints for outbound webhooks (/api/v1/webhooks): CRUD, secret rotation, test ping,
the delivery log and redeliver. Another user's or team's endpoints answer 404."""

from __future__ import annotations

import json
from datetime import datetime
from uuid import UUID

from ninja import Field, Query, Router, Schema
from ninja.responses import Status

from config.errors import ErrorOut
from webhooks import services
from webhooks.models import Delivery, Endpoint, EventType

router = Router(tags=["webhooks"])

EVENTS_DESCRIPTION = "Event types: " + ", ".join(EventType.values)


class WebhookIn(Schema):
    """Register an endpoint. ``team_id``: owned by that team (you must be its team admin); omitted: yours."""

    url: str = Field(examples=["https://example.com/hooks/hailuo"], description="http(s) URL on a public address")
    events: list[str] = Field(examples=[["generation.succeeded", "generation.failed"]], description=EVENTS_DESCRIPTION)
    description: str = Field("", max_length=200)
    enabled: bool = True
    team_id: int | None = None


class WebhookPatch(Schema):
    """Change some fields; omitted ones stay. Enabling a disabled endpoint clears its failure record."""

    url: str | None = None
    events: list[str] | None = Field(None, description=EVENTS_DESCRIPTION)
    description: str | None = Field(None, max_length=200)
    enabled: bool | None = None


class WebhookOut(Schema):
    id: UUID
    url: str
    description: str
    events: list[str]
    enabled: bool
    disabled_reason: str
    owner: str = Field(description="\"user\" or \"team\"")
    team_id: int | None
    secret_last4: str = Field(description="The last 4 characters of the signing secret")
    failing_since: datetime | None = Field(description="First failed attempt of the current run of failures")
    created_at: datetime


class WebhookCreatedOut(WebhookOut):
    secret: str = Field(description="The whsec_ signing secret: shown this once", examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])


class SecretOut(Schema):
    secret: str = Field(description="The new whsec_ signing secret: shown this once")


class AttemptOut(Schema):
    number: int
    manual: bool
    started_at: datetime
    status_code: int | None = Field(description="The receiver's HTTP status; null when it did not answer")
    latency_ms: int
    response_excerpt: str = Field(description="The first 1,000 characters of the answer")
    error: str
    ok: bool


class DeliveryOut(Schema):
    id: str = Field(description="The webhook-id header: the same on every attempt of this message")
    event_type: str
    status: str = Field(description="held, pending, succeeded or failed")
    attempts: int
    next_attempt_at: datetime | None
    created_at: datetime
    completed_at: datetime | None
    payload: dict | None = Field(description="The JSON body sent (null while held)")
    attempt_log: list[AttemptOut]


class DeliveryPageOut(Schema):
    items: list[DeliveryOut]
    count: int
    offset: int
    limit: int


def _endpoint_out(e: Endpoint) -> dict:
    return {
        "id": e.pk, "url": e.url, "description": e.description, "events": e.events, "enabled": e.enabled,
        "disabled_reason": e.disabled_reason, "owner": "team" if e.team_id else "user", "team_id": e.team_id,
        "secret_last4": e.secret_last4, "failing_since": e.failing_since, "created_at": e.created_at,
    }


def _delivery_out(d: Delivery) -> dict:
    return {
        "id": d.pk, "event_type": d.event_type, "status": d.status, "attempts": d.attempts,
        "next_attempt_at": d.next_attempt_at, "created_at": d.created_at, "completed_at": d.completed_at,
        "payload": json.loads(d.body) if d.body else None,
        "attempt_log": [
            {"number": a.number, "manual": a.manual, "started_at": a.started_at, "status_code": a.status_code,
             "latency_ms": a.latency_ms, "response_excerpt": a.response_excerpt, "error": a.error, "ok": a.ok}
            for a in d.attempt_log.all()
        ],
    }


@router.get("/webhooks", response=list[WebhookOut], summary="List my webhook endpoints (and my admin teams')")
def list_webhooks(request):
    return [_endpoint_out(e) for e in services.endpoints_visible_to(request.auth).order_by("created_at")]


@router.post("/webhooks", response={201: WebhookCreatedOut, 403: ErrorOut, 404: ErrorOut, 422: ErrorOut},
             summary="Register a webhook endpoint (the secret is in this answer only)")
def create_webhook(request, payload: WebhookIn):
    endpoint, secret = services.endpoint_create(actor=request.auth, **payload.dict())
    return Status(201, {**_endpoint_out(endpoint), "secret": secret})


@router.get("/webhooks/{webhook_id}", response={200: WebhookOut, 404: ErrorOut}, summary="Read one webhook endpoint")
def read_webhook(request, webhook_id: UUID):
    return Status(200, _endpoint_out(services.endpoint_for(user=request.auth, endpoint_id=webhook_id)))


@router.patch("/webhooks/{webhook_id}", response={200: WebhookOut, 404: ErrorOut, 422: ErrorOut},
              summary="Change a webhook endpoint (URL, events, description, enabled)")
def update_webhook(request, webhook_id: UUID, payload: WebhookPatch):
    endpoint = services.endpoint_for(user=request.auth, endpoint_id=webhook_id)
    services.endpoint_update(endpoint, **payload.dict())
    return Status(200, _endpoint_out(endpoint))


@router.delete("/webhooks/{webhook_id}", response={204: None, 404: ErrorOut}, summary="Delete a webhook endpoint and its log")
def delete_webhook(request, webhook_id: UUID):
    services.endpoint_for(user=request.auth, endpoint_id=webhook_id).delete()
    return Status(204, None)


@router.post("/webhooks/{webhook_id}/rotate-secret", response={200: SecretOut, 404: ErrorOut},
             summary="Replace the signing secret (the new one is in this answer only)")
def rotate_webhook_secret(request, webhook_id: UUID):
    endpoint = services.endpoint_for(user=request.auth, endpoint_id=webhook_id)
    return Status(200, {"secret": services.endpoint_rotate_secret(endpoint)})


@router.post("/webhooks/{webhook_id}/test", response={202: DeliveryOut, 404: ErrorOut},
             summary="Send a webhook.test message now (once, by the workers)")
def test_webhook(request, webhook_id: UUID):
    endpoint = services.endpoint_for(user=request.auth, endpoint_id=webhook_id)
    delivery = services.send_test_ping(endpoint, actor=request.auth)
    delivery.refresh_from_db()
    return Status(202, _delivery_out(delivery))


@router.get("/webhooks/{webhook_id}/deliveries", response={200: DeliveryPageOut, 404: ErrorOut},
            summary="The endpoint's deliveries with every attempt, newest first")
def list_deliveries(request, webhook_id: UUID, offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=200),
                    status: str | None = None):
    endpoint = services.endpoint_for(user=request.auth, endpoint_id=webhook_id)
    queryset = endpoint.deliveries.order_by("-created_at", "-id")
    if status:
        queryset = queryset.filter(status=status)
    items = list(queryset.prefetch_related("attempt_log")[offset: offset + limit])
    return Status(200, {"items": [_delivery_out(d) for d in items], "count": queryset.count(), "offset": offset, "limit": limit})


@router.get("/webhooks/{webhook_id}/deliveries/{delivery_id}", response={200: DeliveryOut, 404: ErrorOut},
            summary="One delivery with every attempt")
def read_delivery(request, webhook_id: UUID, delivery_id: str):
    endpoint = services.endpoint_for(user=request.auth, endpoint_id=webhook_id)
    return Status(200, _delivery_out(services.delivery_for(endpoint=endpoint, delivery_id=delivery_id)))


@router.post("/webhooks/{webhook_id}/deliveries/{delivery_id}/redeliver",
             response={202: DeliveryOut, 404: ErrorOut, 409: ErrorOut},
             summary="Send a delivery again now (same webhook-id; by the workers)")
def redeliver_delivery(request, webhook_id: UUID, delivery_id: str):
    endpoint = services.endpoint_for(user=request.auth, endpoint_id=webhook_id)
    delivery = services.delivery_for(endpoint=endpoint, delivery_id=delivery_id)
    services.redeliver(delivery)
    delivery.refresh_from_db()
    return Status(202, _delivery_out(delivery))
