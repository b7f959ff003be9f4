"""REST endpoints for the prompt library and the prompt history
(/api/v1/templates, /api/v1/templates/{id}/render, /api/v1/prompts/history).

Render, then create: ``POST /templates/{id}/render`` with ``{"values": {...}}`` answers the
filled create request, which the caller sends to ``POST /api/v1/generations`` as it is (or
changed). Visibility is the gallery's: another team's template answers 404.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from ninja import Field, Router, Schema
from ninja.responses import Status

from config.apitypes import JsonObject, Text
from config.errors import ErrorOut, Forbidden, NotFound
from generations.selectors import teams_of
from teamwork import library

router = Router(tags=["prompt library"])


class TemplateIn(Schema):
    name: Text = Field(max_length=120, examples=["Product on a turntable"])
    prompt: Text = Field(max_length=10_000, examples=["{product} turning slowly on a white turntable, soft light"],
                         description="Placeholders {name}; {{ and }} are literal braces")
    provider_account_id: int = Field(ge=1, le=2**31 - 1, examples=[1])
    model: Text = Field(max_length=60, examples=["hailuo-2-3"])
    mode: Text = Field(max_length=60, examples=["standard-text-to-video"])
    duration: int = Field(ge=1, le=3600, examples=[6])
    resolution: Text = Field(max_length=10, examples=["768p"])
    options: JsonObject = Field(default_factory=dict, examples=[{}])
    image_url: Text = Field("", max_length=2000, examples=[""])
    team_id: int | None = Field(None, ge=1, le=2**63 - 1, description="One of your teams; default: your first team")


class TemplatePatch(Schema):
    """Only the fields given change; settings are checked together."""

    name: Text | None = Field(None, max_length=120)
    prompt: Text | None = Field(None, max_length=10_000)
    provider_account_id: int | None = Field(None, ge=1, le=2**31 - 1)
    model: Text | None = Field(None, max_length=60)
    mode: Text | None = Field(None, max_length=60)
    duration: int | None = Field(None, ge=1, le=3600)
    resolution: Text | None = Field(None, max_length=10)
    options: JsonObject | None = None
    image_url: Text | None = Field(None, max_length=2000)


class TemplateOut(Schema):
    id: int
    team_id: int
    name: str
    prompt: str
    placeholders: list[str] = Field(examples=[["product"]])
    provider_account_id: int | None
    model: str
    mode: str
    duration: int
    resolution: str
    options: dict
    image_url: str
    created_by: str | None = Field(description="The author's email")
    created_at: datetime
    updated_at: datetime


class RenderIn(Schema):
    values: dict[str, Text] = Field(default_factory=dict, examples=[{"product": "a red sneaker"}])


class RenderOut(Schema):
    """The body of ``POST /api/v1/generations``."""

    provider_account_id: int | None
    model: str
    mode: str
    prompt: str
    duration: int
    resolution: str
    image_url: str
    options: dict


class HistoryOut(Schema):
    prompt: str
    count: int = Field(description="How many of your generations used it")
    last_at: datetime
    last_generation_id: UUID
    provider_account_id: int
    model: str
    mode: str
    duration: int
    resolution: str
    options: dict
    image_url: str


def _out(t) -> dict:
    return {
        "id": t.pk, "team_id": t.team_id, "name": t.name, "prompt": t.prompt, "placeholders": library.placeholders(t.prompt),
        "provider_account_id": t.provider_account_id, "model": t.model, "mode": t.mode, "duration": t.duration,
        "resolution": t.resolution, "options": t.options or {}, "image_url": t.image_url,
        "created_by": t.created_by.email if t.created_by else None, "created_at": t.created_at, "updated_at": t.updated_at,
    }


def _template(request, template_id: int):
    template = library.template_for(user=request.auth, template_id=template_id)
    if template is None:
        raise NotFound("No such template.")
    return template


def _editable(request, template_id: int):
    template = _template(request, template_id)
    if not library.may_edit(user=request.auth, template=template):
        raise Forbidden("Only the template's author or an admin of its team may change it.")
    return template


@router.get("/templates", response={200: list[TemplateOut]}, summary="List your teams' prompt templates")
def list_templates(request):
    """Every template of your teams, by name, with its placeholders."""
    return Status(200, [_out(t) for t in library.templates_visible_to(user=request.auth)[:500]])


@router.post("/templates", response={201: TemplateOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut}, summary="Create a prompt template")
def create_template(request, payload: TemplateIn):
    """A template of one of your teams (404 for another team; 409 `template_exists`; 422
    `validation_error` for settings the provider account does not offer)."""
    from accounts.models import Team

    team_ids, primary = teams_of(request.auth)
    team_id = payload.team_id or (primary.pk if primary else None)
    if team_id not in team_ids:
        raise NotFound("No such team.")
    data = payload.dict()
    settings = library.TemplateSettings(**{k: data[k] for k in library.TemplateSettings.__dataclass_fields__})
    template = library.template_create(
        user=request.auth, team=Team.objects.get(pk=team_id), name=payload.name, prompt=payload.prompt, settings=settings,
    )
    return Status(201, _out(library.template_for(user=request.auth, template_id=template.pk)))


@router.get("/templates/{template_id}", response={200: TemplateOut, 404: ErrorOut, 422: ErrorOut}, summary="Read a prompt template")
def read_template(request, template_id: int):
    """One template of your teams; 404 otherwise."""
    return Status(200, _out(_template(request, template_id)))


@router.patch("/templates/{template_id}", response={200: TemplateOut, 403: ErrorOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut},
              summary="Change a prompt template")
def update_template(request, template_id: int, payload: TemplatePatch):
    """Change the fields given. Its author, an admin of its team or staff only (403 `forbidden`)."""
    template = _editable(request, template_id)
    changes = payload.dict(exclude_unset=True)
    settings = None
    if set(changes) & set(library.TemplateSettings.__dataclass_fields__):
        current = library.settings_of(template)
        for name in library.TemplateSettings.__dataclass_fields__:
            if changes.get(name) is not None:
                setattr(current, name, changes[name])
        settings = current
    library.template_update(template=template, name=changes.get("name"), prompt=changes.get("prompt"), settings=settings)
    return Status(200, _out(_template(request, template_id)))


@router.delete("/templates/{template_id}", response={204: None, 403: ErrorOut, 404: ErrorOut, 422: ErrorOut}, summary="Delete a prompt template")
def delete_template(request, template_id: int):
    """Its author, an admin of its team or staff only (403 `forbidden`). Generations made from it keep their prompt."""
    _editable(request, template_id).delete()
    return Status(204, None)


@router.post("/templates/{template_id}/render", response={200: RenderOut, 404: ErrorOut, 422: ErrorOut}, summary="Fill a template in")
def render_template(request, template_id: int, payload: RenderIn):
    """The create request the template gives with `values` filled in: send it to `POST
    /api/v1/generations`. 422 `placeholder_missing` (a placeholder without a value, named in
    the message and in `fields` as `values.<name>`), `placeholder_unknown` (a value for a name
    the template does not have)."""
    return Status(200, library.template_request(_template(request, template_id), payload.values))


@router.get("/prompts/history", response={200: list[HistoryOut]}, summary="Your recent prompts")
def prompt_history(request, limit: int = library.HISTORY_SIZE):
    """Your distinct prompts, most recently used first (at most `limit`, 1 to 100), with how
    often you used each and the settings of the last generation that used it."""
    items = library.prompt_history(user=request.auth, limit=max(1, min(limit, 100)))
    return Status(200, [{
        "prompt": i.prompt, "count": i.count, "last_at": i.last_at, "last_generation_id": i.last.pk,
        "provider_account_id": i.last.provider_account_id, "model": i.last.model, "mode": i.last.mode,
        "duration": i.last.duration, "resolution": i.last.resolution, "options": i.last.options or {},
        "image_url": i.last.image_url,
    } for i in items])
