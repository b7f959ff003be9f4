"""REST endpoints for generations (/api/v1/generations).

Create (with an ``Idempotency-Key``), read one, list with the gallery's filters and keyset
cursors, cancel, retry, and download the archived video and its poster with the bearer
token. Visibility is the studio's: a member sees their own generations and their teams';
anything else answers 404. Cancel and retry follow ``generations.actions`` (owner or team
admin only).
"""

from __future__ import annotations

import hashlib
import json
from datetime import date, datetime
from typing import Literal
from uuid import UUID

from django.http import HttpRequest, JsonResponse
from django.urls import reverse
from ninja import Field, Header, Query, Router, Schema
from ninja.responses import Status

from config.apiauth import TokenAuth
from config.apitypes import JsonObject, Text
from config.errors import DomainError, ErrorOut, NotFound
from generations import actions, services, views
from generations.models import Generation, State
from generations.selectors import (
    GalleryFilters,
    decode_cursor,
    gallery_page,
    generation_for,
    generation_for_api,
    generation_from_joined,
    generation_joined_read,
    teams_of,
)
from teamwork.selectors import project_for

router = Router(tags=["generations"])

#: Longest accepted ``Idempotency-Key`` (IETF draft-ietf-httpapi-idempotency-key-header).
IDEMPOTENCY_KEY_MAX = 255
#: Answer header marking a replayed response.
REPLAY_HEADER = "Idempotent-Replayed"

_EXAMPLE_ID = "5b1f3a52-7c1e-4f7e-9a53-3d2f0c6f9e11"


class GenerationIn(Schema):
    """A create request: the same fields as the studio form."""

    provider_account_id: int = Field(ge=1, le=2**31 - 1, examples=[1], description="From GET /api/v1/providers")
    model: Text = Field(max_length=60, examples=["hailuo-2-3"])
    mode: Text = Field(max_length=60, examples=["standard-text-to-video"])
    prompt: Text = Field(max_length=10_000, examples=["a tiktok dancer is dancing on a small drone, doing flips and tricks"])
    duration: int = Field(ge=1, le=3600, examples=[6], description="Seconds of output")
    resolution: Text = Field(max_length=10, examples=["768p"])
    image_url: Text = Field("", max_length=2000, examples=[""], description="First frame (image-to-video modes)")
    options: JsonObject = Field(
        default_factory=dict, examples=[{"provider": "value"}], description='Provider options, e.g. APIXO {"provider": "value"}'
    )
    team_id: int | None = Field(
        None, ge=1, le=2**63 - 1, examples=[None],
        description="The team to book it to (one of yours); default: your primary team. 403 `team_forbidden` otherwise",
    )
    project_id: int | None = Field(
        None, ge=1, le=2**63 - 1, examples=[None],
        description="One of your teams' open projects (GET /api/v1/projects); the take then belongs to that team",
    )
    variants: int = Field(
        1, ge=1, le=4, examples=[1],
        description="How many takes of this request (1 to 4); above 1 the answer is a batch (BatchOut), all held or none",
    )


class GenerationOut(Schema):
    id: UUID = Field(examples=[_EXAMPLE_ID])
    state: str = Field(examples=["succeeded"], description=f"One of {', '.join(State.values)}")
    provider: str = Field(examples=["apixo"])
    provider_account_id: int = Field(examples=[1])
    model: str = Field(examples=["hailuo-2-3"])
    mode: str = Field(examples=["standard-text-to-video"])
    prompt: str = Field(examples=["a white cat lazing on a sunny windowsill"])
    duration: int = Field(examples=[6])
    resolution: str = Field(examples=["768p"])
    image_url: str = Field(examples=[""])
    progress: int | None = Field(examples=[100])
    price_usd: str = Field(description="Quoted price, decimal string, USD", examples=["0.336000"])
    charged_usd: str | None = Field(description="Captured amount on success, decimal string, USD", examples=["0.336000"])
    provider_task_id: str = Field(examples=["task_8f2c"])
    fail_code: str = Field(examples=[""])
    fail_message: str = Field(examples=[""])
    video_url: str | None = Field(
        description="GET it with your bearer token (byte ranges supported); null until archived",
        examples=[f"https://studio.example.com/api/v1/generations/{_EXAMPLE_ID}/video"],
    )
    poster_url: str | None = Field(
        description="A JPEG frame, with your bearer token; null until archived",
        examples=[f"https://studio.example.com/api/v1/generations/{_EXAMPLE_ID}/poster"],
    )
    archive_state: str = Field(examples=["done"])
    project_id: int | None = Field(examples=[None], description="Its project, if any")
    starred: bool = Field(examples=[False], description="A kept take (PUT/DELETE /star)")
    tags: list[str] = Field(examples=[["hero"]], description="Its tags' names, sorted (PUT /tags)")
    batch_id: UUID | None = Field(None, examples=[None], description="Its batch or variants (GET /api/v1/batches/{id}), if any")
    created_at: datetime
    completed_at: datetime | None
    hidden_at: datetime | None = Field(None, description="When it was hidden from the gallery; null when shown")
    rejection_reason: str | None = Field(
        None, description="State `rejected`: why a team admin rejected it (or that nobody decided in time); nothing was charged"
    )


class BatchProgressOut(Schema):
    total: int = Field(examples=[10])
    succeeded: int = Field(examples=[7])
    failed: int = Field(examples=[1], description="Failed, expired or canceled (released, not charged)")
    running: int = Field(examples=[2], description="Not final yet")
    states: dict[str, int] = Field(examples=[{"succeeded": 7, "failed": 1, "running": 2}])


class BatchOut(Schema):
    """A batch or variants (``generations.batches``): its progress and its generations in order."""

    id: UUID
    kind: str = Field(examples=["batch"], description="`batch` or `variants`")
    title: str
    size: int = Field(examples=[10])
    team_id: int | None
    project_id: int | None
    quoted_usd: str = Field(examples=["3.360000"], description="Sum of the items' quotes (= their holds), USD")
    charged_usd: str = Field(examples=["2.352000"], description="Sum of the captures so far, USD")
    progress: BatchProgressOut
    created_at: datetime
    generations: list[GenerationOut]


class PageOut(Schema):
    items: list[GenerationOut]
    next: str | None = Field(
        description="Opaque cursor of the next (older) page: pass it as `cursor`; null on the last page",
        examples=["1767225600000000.5b1f3a527c1e4f7e9a533d2f0c6f9e11"],
    )
    limit: int = Field(examples=[50])


class ListParams(Schema):
    """The gallery's filters and a keyset cursor."""

    cursor: Text | None = Field(None, max_length=200, description="`next` of the previous page")
    limit: int = Field(50, ge=1, le=200, description="Page size")
    state: Literal[tuple([*State.values, "in_progress"])] | None = Field(  # type: ignore[valid-type]
        None, description="A state, or `in_progress` (any state not final yet)", examples=["succeeded"]
    )
    provider: Text | None = Field(None, max_length=20, examples=["apixo"], description="Provider kind")
    model: Text | None = Field(None, max_length=60, examples=["hailuo-2-3"])
    member: int | None = Field(None, ge=1, le=2**63 - 1, description="Only this user's (a teammate's id)")
    created_from: date | None = Field(None, ge=date(2000, 1, 1), le=date(9998, 12, 31), description="Inclusive, UTC day")
    created_to: date | None = Field(None, ge=date(2000, 1, 1), le=date(9998, 12, 31), description="Inclusive, UTC day")
    q: Text | None = Field(None, max_length=200, description="Words the prompt contains", examples=["cat"])
    include_hidden: bool = Field(False, description="Also the generations hidden from the gallery")
    project: int | None = Field(None, ge=1, le=2**63 - 1, description="Only this project's (one of your teams')")
    starred: bool | None = Field(None, description="`true`: only starred (kept) takes")
    tag: Text | None = Field(None, max_length=40, description="Only takes with this tag", examples=["hero"])


def _out(request: HttpRequest, g: Generation) -> dict:
    archived = g.has_video
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
        "video_url": request.build_absolute_uri(reverse("api-v1:generation_video_api", args=[g.pk])) if archived else None,
        "poster_url": (
            request.build_absolute_uri(reverse("api-v1:generation_poster_api", args=[g.pk]))
            if archived and g.poster else None
        ),
        "archive_state": g.archive_state,
        "project_id": g.project_id,
        "starred": g.starred,
        "tags": _tag_names(g),
        "batch_id": g.batch_id,
        "created_at": g.created_at,
        "completed_at": g.completed_at, "hidden_at": g.hidden_at,
        "rejection_reason": g.fail_message if g.state == State.REJECTED else None,
    }


def _tag_names(g: Generation) -> list[str]:
    """Read with the row (``generation_for_api``), prefetched by the list (``gallery_page``), or
    none on a take just created (no query: issue 16's six statements per submit)."""
    if getattr(g, "just_created", False):
        return []
    names = getattr(g, "tag_names", None)
    return list(names) if names is not None else [t.name for t in g.tags.all()]


def request_fingerprint(payload: GenerationIn) -> str:
    """SHA-256 hex of the canonical JSON of a create body (sorted keys, no spaces, defaults
    filled in): two bodies meaning the same request have the same fingerprint; any difference,
    ``options`` included, changes it."""
    # ``variants`` is left out at its default, so fingerprints stored before it existed still match.
    dumped = payload.model_dump(mode="json", exclude={"variants"} if payload.variants == 1 else None)
    canonical = json.dumps(dumped, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _key_is_a_batch(user, idempotency_key: str) -> bool:
    """Whether ``user`` already used this key for a batch (its replay or conflict is the batch's)."""
    from generations.models import Batch

    return Batch.objects.filter(user=user, idempotency_key=idempotency_key).exists()


def _visible(request, generation_id) -> Generation:
    generation = generation_for(user=request.auth, generation_id=generation_id)
    if generation is None:
        raise NotFound("No such generation.")
    return generation


_IDEMPOTENCY_HELP = (
    "Optional, at most 255 characters. The same key with the same body replays the first answer "
    f"(same status and body, header `{REPLAY_HEADER}: true`); with any other body: 409 `idempotency_conflict`."
)
_IDEMPOTENCY_HEADER = Header(None, alias="Idempotency-Key", description=_IDEMPOTENCY_HELP)
_REPLAY_HEADERS = {REPLAY_HEADER: {"description": "`true` on a replayed answer", "schema": {"type": "string", "enum": ["true"]}}}


@router.post(
    "/generations",
    response={
        201: GenerationOut | BatchOut, 400: ErrorOut, 402: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut,
    },
    summary="Create a generation (or 2 to 4 variants of it)",
    openapi_extra={"responses": {201: {"headers": _REPLAY_HEADERS}}},
)
def create_generation(
    request,
    payload: GenerationIn,
    idempotency_key: Text | None = _IDEMPOTENCY_HEADER,
):
    """Validate, price and hold, then submit in the background: 201 with the generation.

    Refusals: 402 `budget_exceeded`, 403 `budget_not_allowed` / `team_forbidden` (a `team_id` not yours), 422 `validation_error` /
    `no_price_rule` / `provider_unavailable` / `project_archived` / `team_mismatch` (with `fields`), 404
    `not_found` for a `project_id` not of your teams, 400 `idempotency_key_too_long`,
    409 `idempotency_conflict`. With `variants` 2 to 4: 201 with a batch (BatchOut) of that many
    generations, all held in one transaction or none."""
    if idempotency_key is not None and len(idempotency_key) > IDEMPOTENCY_KEY_MAX:
        raise DomainError(
            "idempotency_key_too_long", f"An Idempotency-Key has at most {IDEMPOTENCY_KEY_MAX} characters.",
            {"Idempotency-Key": [f"At most {IDEMPOTENCY_KEY_MAX} characters."]}, status=400,
        )
    fields = payload.dict()
    team_id = fields.pop("team_id", None)
    variants = fields.pop("variants", 1)
    params = services.CreateParams(**fields)
    project = None
    if payload.project_id is not None:
        project = project_for(user=request.auth, project_id=payload.project_id)
        if project is None:
            raise NotFound("No such project.")
        if project.archived:
            raise DomainError(
                "project_archived", "This project is archived.", {"project_id": ["Archived: restore it first."]}, status=422
            )
        if team_id is not None and team_id != project.team_id:
            raise DomainError(
                "team_mismatch", "The project belongs to another team than team_id.",
                {"team_id": ["Leave it out, or give the project's team."]}, status=422,
            )
    if variants > 1 or (idempotency_key and _key_is_a_batch(request.auth, idempotency_key)):
        from generations.batches.api import variants_answer

        return variants_answer(
            request, params=params, count=variants, team=project.team if project is not None else team_id,
            idempotency_key=idempotency_key or None, fingerprint=request_fingerprint(payload),
        )
    # A refusal is a GenerationRefused (a DomainError): config.api answers it as ErrorOut.
    generation = services.generation_create(  # the fingerprint only matters with a key (replay or conflict)
        user=request.auth, params=params, idempotency_key=idempotency_key or None,
        fingerprint=request_fingerprint(payload) if idempotency_key else "",
        team=project.team if project is not None else team_id,
    )
    if getattr(generation, "replayed", False):
        first = generation.idempotent_response or {
            "status": 201, "body": GenerationOut.model_validate(_out(request, generation)).model_dump(mode="json"),
        }
        response = JsonResponse(first["body"], status=first["status"])
        response[REPLAY_HEADER] = "true"
        return response
    generation.just_created = True  # no tags can exist yet: the answer needs no tag query (issue 16: ≤ 6 per submit)
    body = GenerationOut.model_validate(_out(request, generation)).model_dump(mode="json")
    if idempotency_key:
        Generation.objects.filter(pk=generation.pk).update(idempotent_response={"status": 201, "body": body})
    # Rendered from the stored body so a replay is byte-for-byte the same answer.
    return JsonResponse(body, status=201)


def _joined_read(request):
    """``read_generation``'s row, read in the token lookup's statement (one round trip, issue 16)."""
    try:
        generation_id = UUID(str(request.resolver_match.kwargs["generation_id"]))
    except (AttributeError, KeyError, ValueError):
        return None  # a malformed id: the operation answers 422 itself
    return generation_joined_read(generation_id)


@router.get(
    "/generations/{generation_id}", response={200: GenerationOut, 404: ErrorOut, 422: ErrorOut}, summary="Read one generation",
    auth=TokenAuth(joined=_joined_read),
)
def read_generation(request, generation_id: UUID):
    """One generation you may see (yours or your team's); 404 otherwise."""
    token = request.api_token
    if token.joined is not None and token.joined_key == ("generation", generation_id):  # read with the token
        generation = generation_from_joined(token.joined)
    else:
        generation = generation_for_api(user=request.auth, generation_id=generation_id)
    if generation is None:
        raise NotFound("No such generation.")
    # Rendered as ninja renders a GenerationOut, without validating our own output again (the
    # hot read, issue 16; tests/test_hotsql.py checks the bytes against the validated path).
    from config.api import api

    return api.create_response(request, _out(request, generation), status=200)


@router.get("/generations", response={200: PageOut, 422: ErrorOut}, summary="List generations, newest first")
def list_generations(request, params: Query[ListParams]):
    """The generations the studio's gallery shows you (yours and your teams'), newest first, with
    the gallery's filters. Keyset pages: pass the answer's `next` as `cursor` for the next page
    (stable while new generations arrive); a malformed cursor answers 422 `invalid_cursor`."""
    if params.cursor and decode_cursor(params.cursor) is None:
        raise DomainError("invalid_cursor", "This cursor is not one we gave out.", {"cursor": ["Malformed cursor."]}, status=422)
    if params.created_from and params.created_to and params.created_from > params.created_to:
        raise DomainError(
            "invalid_request", "created_from is after created_to.", {"created_from": ["After created_to."]}, status=422
        )
    filters = GalleryFilters(
        state=params.state or "", provider=params.provider or "", model=params.model or "", member=params.member,
        date_from=params.created_from, date_to=params.created_to, q=params.q or "",
        show_hidden=params.include_hidden,
        project=params.project, starred=bool(params.starred), tag=(params.tag or "").strip().lower(),
    )
    team_ids, _ = teams_of(request.auth)
    page = gallery_page(user=request.auth, filters=filters, size=params.limit, before=params.cursor, team_ids=team_ids)
    return {"items": [_out(request, g) for g in page.items], "next": page.older_cursor, "limit": params.limit}


@router.post(
    "/generations/{generation_id}/cancel",
    response={200: GenerationOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut},
    summary="Cancel a generation",
)
def cancel_generation(request, generation_id: UUID):
    """As the studio's Cancel: locally while queued, at the provider where it documents a cancel.
    Only the owner or an admin of its team (403 `forbidden`); 409 `cannot_cancel` when the state
    or the provider allows none. Answers the generation afterwards (the hold is released)."""
    generation = _visible(request, generation_id)
    actions.generation_cancel(user=request.auth, generation=generation)
    generation.refresh_from_db()
    return Status(200, _out(request, generation))


@router.post(
    "/generations/{generation_id}/retry",
    response={201: GenerationOut, 402: ErrorOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut},
    summary="Retry a failed or expired generation",
)
def retry_generation(request, generation_id: UUID):
    """As the studio's Retry: a new generation with the same parameters (priced and held again;
    budgets apply). Only the owner or an admin of its team (403 `forbidden`); 409 `cannot_retry`
    unless it failed or expired. Answers the new generation."""
    generation = _visible(request, generation_id)
    new = actions.generation_retry(user=request.auth, generation=generation)
    return Status(201, _out(request, new))


def _binary(content_type: str, description: str) -> dict:
    range_headers = {
        "Accept-Ranges": {"schema": {"type": "string", "enum": ["bytes"]}},
        "Content-Range": {"description": "On 206: `bytes start-end/size`", "schema": {"type": "string"}},
    }
    return {
        "responses": {
            200: {"description": description, "headers": range_headers,
                  "content": {content_type: {"schema": {"type": "string", "format": "binary"}}}},
            206: {"description": "The requested byte range (`Range: bytes=a-b`)", "headers": range_headers,
                  "content": {content_type: {"schema": {"type": "string", "format": "binary"}}}},
        },
        "parameters": [
            {"in": "header", "name": "Range", "required": False, "schema": {"type": "string"},
             "description": "Optional, e.g. `bytes=0-1048575`", "example": "bytes=0-1023"},
        ],
    }


@router.get(
    "/generations/{generation_id}/video",
    response={404: ErrorOut, 416: ErrorOut, 422: ErrorOut},
    summary="Download the video (MP4)",
    url_name="generation_video_api",
    openapi_extra=_binary("video/mp4", "The archived MP4"),
)
def generation_video(request, generation_id: UUID, download: bool = False):
    """The archived MP4 from our storage, streamed, with byte ranges (206) like the studio's
    player. 404 until it is archived or when you may not see the generation; 416
    `range_not_satisfiable` for a range past the end. `download=true`: as an attachment."""
    return views.video_response(request, _visible(request, generation_id), download=download)


@router.get(
    "/generations/{generation_id}/poster",
    response={404: ErrorOut, 416: ErrorOut, 422: ErrorOut},
    summary="Download the poster frame (JPEG)",
    url_name="generation_poster_api",
    openapi_extra=_binary("image/jpeg", "A JPEG frame of the video"),
)
def generation_poster(request, generation_id: UUID):
    """The poster frame of the archived video; 404 until there is one."""
    return views.poster_response(request, _visible(request, generation_id))


__all__ = ["router", "request_fingerprint"]
