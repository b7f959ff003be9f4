"""REST endpoints for generations (/api/v1/generations): create, read one, list mine."""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from django.http import HttpRequest
from django.urls import reverse
from ninja import Field, Header, Router, Schema
from ninja.responses import Status

from billing.money import format_usd
from config.errors import ErrorOut, NotFound
from generations import services
from generations.selectors import generation_for, generations_visible_to

router = Router(tags=["generations"])


class GenerationIn(Schema):
    """A create request: the same fields as the studio form."""

    provider_account_id: int
    model: str = Field(examples=["hailuo-2-3"])
    mode: str = Field(examples=["standard-text-to-video"])
    prompt: str = Field(examples=["a tiktok dancer is dancing on a small drone, doing flips and tricks"])
    duration: int = Field(examples=[6], description="Seconds of output")
    resolution: str = Field(examples=["768p"])
    image_url: str = ""
    options: dict = Field(default_factory=dict, description="Provider options, e.g. APIXO {\"provider\": \"value\"}")


class GenerationOut(Schema):
    id: UUID
    state: str
    provider: str
    provider_account_id: int
    model: str
    mode: str
    prompt: str
    duration: int
    resolution: str
    image_url: str
    progress: int | None
    price_usd: str = Field(description="Quoted price, decimal string, USD")
    charged_usd: str | None = Field(description="Captured amount on success, decimal string, USD")
    provider_task_id: str
    fail_code: str
    fail_message: str
    video_url: str | None = Field(description="Our archived copy (absolute URL); null until archived")
    archive_state: str
    created_at: datetime
    completed_at: datetime | None


class PageOut(Schema):
    items: list[GenerationOut]
    count: int
    offset: int
    limit: int


def _out(request: HttpRequest, g) -> dict:
    video_url = None
    if g.has_video:
        video_url = request.build_absolute_uri(reverse("generation_video", args=[g.pk]))
    return {
        "id": g.pk,
        "state": g.state,
        "provider": g.provider_kind,
        "provider_account_id": g.provider_account_id,
        "model": g.model,
        "mode": g.mode,
        "prompt": g.prompt,
        "duration": g.duration,
        "resolution": g.resolution,
        "image_url": g.image_url,
        "progress": g.progress,
        "price_usd": f"{g.quoted_amount:f}",
        "charged_usd": f"{g.charged_amount:f}" if g.charged_amount is not None else None,
        "provider_task_id": g.provider_task_id,
        "fail_code": g.fail_code,
        "fail_message": g.fail_message,
        "video_url": video_url,
        "archive_state": g.archive_state,
        "created_at": g.created_at,
        "completed_at": g.completed_at,
    }


@router.post(
    "/generations",
    response={201: GenerationOut, 200: GenerationOut, 402: ErrorOut, 403: ErrorOut, 409: ErrorOut, 422: ErrorOut},
    summary="Create a generation",
)
def create_generation(request, payload: GenerationIn, idempotency_key: str | None = Header(None, alias="Idempotency-Key")):
    """Validate, price and hold, then submit in the background. 201 on create; 200 when the
    Idempotency-Key replays an earlier request with the same parameters."""
    params = services.CreateParams(**payload.dict())
    # A refusal is a GenerationRefused (a DomainError): config.api answers it as ErrorOut.
    generation = services.generation_create(user=request.auth, params=params, idempotency_key=idempotency_key)
    return Status(200 if getattr(generation, "replayed", False) else 201, _out(request, generation))


@router.get("/generations/{generation_id}", response={200: GenerationOut, 404: ErrorOut}, summary="Read one generation")
def read_generation(request, generation_id: UUID):
    generation = generation_for(user=request.auth, generation_id=generation_id)
    if generation is None:
        raise NotFound("No such generation.")
    return Status(200, _out(request, generation))


@router.get("/generations", response=PageOut, summary="List my generations, newest first")
def list_generations(request, offset: int = 0, limit: int = 50, state: str | None = None):
    limit = max(1, min(limit, 200))
    queryset = generations_visible_to(user=request.auth).filter(user=request.auth).order_by("-created_at", "-id")
    if state:
        queryset = queryset.filter(state=state)
    items = list(queryset[offset : offset + limit])
    return {"items": [_out(request, g) for g in items], "count": queryset.count(), "offset": offset, "limit": limit}


__all__ = ["router", "format_usd"]
