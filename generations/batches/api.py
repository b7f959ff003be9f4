"""REST endpoints for batches (/api/v1/batches): many generations from one request, one
idempotency key, all held or none.

``POST /batches`` takes shared settings and a list of items (a prompt and per-item overrides);
``GET /batches/{id}`` answers the batch with its progress and its generations. The single
create's ``variants`` (``POST /generations``, 2 to 4) answers a batch too. Visibility is the
gallery's: another team's batch is 404.
"""

from __future__ import annotations

from uuid import UUID

from django.http import HttpRequest, JsonResponse
from ninja import Field, Router, Schema
from ninja.responses import Status

from config.apitypes import JsonObject, Text
from config.errors import DomainError, ErrorOut, NotFound
from generations.api import (
    _IDEMPOTENCY_HEADER,
    _REPLAY_HEADERS,
    IDEMPOTENCY_KEY_MAX,
    REPLAY_HEADER,
    BatchOut,
    _out,
)
from generations.batches.parsing import MAX_BATCH_ROWS, items_from_api
from generations.batches.selectors import batch_for, batch_generations, batch_progress
from generations.models import Batch
from generations.services.batch import BatchShared, batch_create, batch_fingerprint, variants_create
from teamwork.selectors import project_for

router = Router(tags=["batches"])


class BatchSharedIn(Schema):
    """Settings every item shares unless it overrides them (the single create's fields but the prompt)."""

    provider_account_id: int = Field(ge=1, le=2**31 - 1, examples=[1], description="From GET /api/v1/providers")
    model: Text = Field("", max_length=60, examples=["hailuo-2-3"])
    mode: Text = Field("", max_length=60, examples=["standard-text-to-video"])
    duration: int | None = Field(None, ge=1, le=3600, examples=[6], description="Seconds of output")
    resolution: Text = Field("", max_length=10, examples=["768p"])
    image_url: Text = Field("", max_length=2000, examples=[""], description="First frame (image-to-video modes)")
    options: JsonObject = Field(default_factory=dict, examples=[{}], description="Provider options")


class BatchItemIn(Schema):
    """One prompt; the other fields, when given, override the shared settings for this item."""

    prompt: Text = Field(max_length=10_000, examples=["a red kite over the dunes"])
    duration: int | None = Field(None, ge=1, le=3600, examples=[None])
    resolution: Text | None = Field(None, max_length=10, examples=[None])
    model: Text | None = Field(None, max_length=60, examples=[None])
    mode: Text | None = Field(None, max_length=60, examples=[None])
    image_url: Text | None = Field(None, max_length=2000, examples=[None])


class BatchIn(Schema):
    shared: BatchSharedIn
    items: list[BatchItemIn] = Field(min_length=1, max_length=MAX_BATCH_ROWS, description=f"1 to {MAX_BATCH_ROWS} items")
    title: Text = Field("", max_length=200, examples=["Spring campaign, first cut"])
    team_id: int | None = Field(None, ge=1, le=2**63 - 1, description="The team to book it to (one of yours)")
    project_id: int | None = Field(None, ge=1, le=2**63 - 1, description="One of your teams' open projects")


def batch_out(request: HttpRequest, batch: Batch) -> dict:
    """The :class:`BatchOut` body of ``batch`` (JSON-ready)."""
    progress = batch_progress([batch])[batch.pk]
    body = {
        "id": batch.pk, "kind": batch.kind, "title": batch.title, "size": batch.size, "team_id": batch.team_id,
        "project_id": batch.project_id, "quoted_usd": f"{progress.quoted:f}", "charged_usd": f"{progress.charged:f}",
        "progress": {
            "total": progress.total, "succeeded": progress.succeeded, "failed": progress.failed, "running": progress.running,
            "states": progress.states,
        },
        "created_at": batch.created_at,
        "generations": [_out(request, g) for g in batch_generations(batch)],
    }
    return BatchOut.model_validate(body).model_dump(mode="json")


def variants_answer(request, *, params, count: int, team, idempotency_key: str | None, fingerprint: str) -> JsonResponse:
    """``POST /generations`` with ``variants`` 2 to 4 (or a key already used for a batch): the
    variants as one batch (``services.batch.variants_create``), answered as :func:`answer_batch`."""
    batch = variants_create(
        user=request.auth, params=params, count=count, team=team, idempotency_key=idempotency_key, fingerprint=fingerprint,
    )
    return answer_batch(request, batch, idempotency_key)


def check_key(idempotency_key: str | None) -> None:
    if idempotency_key is not None and len(idempotency_key) > IDEMPOTENCY_KEY_MAX:
        raise DomainError(
            "idempotency_key_too_long", f"An Idempotency-Key has at most {IDEMPOTENCY_KEY_MAX} characters.",
            {"Idempotency-Key": [f"At most {IDEMPOTENCY_KEY_MAX} characters."]}, status=400,
        )


def resolve_project(user, project_id, team_id):
    """The project of ``project_id`` (one of ``user``'s teams', open, of ``team_id`` if given), or None.
    Raises 404 ``not_found``, 422 ``project_archived`` / ``team_mismatch`` as the single create."""
    if project_id is None:
        return None
    project = project_for(user=user, project_id=project_id)
    if project is None:
        raise NotFound("No such project.")
    if project.archived:
        raise DomainError("project_archived", "This project is archived.", {"project_id": ["Archived: restore it first."]}, status=422)
    if team_id is not None and team_id != project.team_id:
        raise DomainError(
            "team_mismatch", "The project belongs to another team than team_id.",
            {"team_id": ["Leave it out, or give the project's team."]}, status=422,
        )
    return project


def answer_batch(request, batch: Batch, idempotency_key: str | None) -> JsonResponse:
    """201 with the batch; the first answer to a key is stored and replayed as is
    (``Idempotent-Replayed: true``)."""
    if getattr(batch, "replayed", False):
        first = batch.idempotent_response or {"status": 201, "body": batch_out(request, batch)}
        response = JsonResponse(first["body"], status=first["status"])
        response[REPLAY_HEADER] = "true"
        return response
    body = batch_out(request, batch)
    if idempotency_key:
        Batch.objects.filter(pk=batch.pk).update(idempotent_response={"status": 201, "body": body})
    return JsonResponse(body, status=201)


@router.post(
    "/batches",
    response={201: BatchOut, 400: ErrorOut, 402: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut},
    summary="Create a batch of generations",
    openapi_extra={"responses": {201: {"headers": _REPLAY_HEADERS}}},
)
def create_batch(request, payload: BatchIn, idempotency_key: Text | None = _IDEMPOTENCY_HEADER):
    """Validate and price every item, then hold them all in one transaction and submit them in
    the background: 201 with the batch and its generations. All or none: 402 `budget_exceeded`
    names the budget the whole batch would exceed, and nothing is created. 422
    `validation_error` names each refused item and field (`fields`: `items.2.duration`); 403
    `budget_not_allowed` / `team_forbidden`; 404 for a `project_id` not of your teams; 409
    `idempotency_conflict` when the key came with another body."""
    check_key(idempotency_key)
    project = resolve_project(request.auth, payload.project_id, payload.team_id)
    shared = BatchShared(
        **{**payload.shared.dict(), "project_id": project.pk if project is not None else None},
    )
    errors: list = []
    items = items_from_api([item.dict() for item in payload.items], collect=errors)
    fingerprint = batch_fingerprint(
        shared=shared, items=items, kind="api-batch", extra={"team_id": payload.team_id, "title": payload.title},
    )
    batch = batch_create(
        user=request.auth, shared=shared, items=items, team=project.team if project is not None else payload.team_id,
        title=payload.title, idempotency_key=idempotency_key or None, fingerprint=fingerprint, errors=errors,
    )
    return answer_batch(request, batch, idempotency_key)


@router.get("/batches/{batch_id}", response={200: BatchOut, 404: ErrorOut, 422: ErrorOut}, summary="Read one batch")
def read_batch(request, batch_id: UUID):
    """A batch you may see (yours or your team's) with its progress and its generations; 404 otherwise."""
    batch = batch_for(user=request.auth, batch_id=batch_id)
    if batch is None:
        raise NotFound("No such batch.")
    return Status(200, batch_out(request, batch))
