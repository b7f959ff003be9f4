"""REST endpoints for team work: projects, a take's star and tags, share links
(/api/v1/projects, /api/v1/generations/{id}/star|tags, /api/v1/share-links).

Visibility is the gallery's: another team's projects, takes and links answer 404.
"""

from __future__ import annotations

from datetime import datetime
from uuid import UUID

from django.urls import reverse
from ninja import Field, Router, Schema
from ninja.responses import Status

from config.apitypes import Text
from config.errors import ErrorOut, NotFound
from generations.selectors import generation_for, teams_of
from teamwork import selectors, services

router = Router(tags=["team work"])


class ProjectIn(Schema):
    name: Text = Field(max_length=120, examples=["Spring campaign"])
    team_id: int | None = Field(None, ge=1, le=2**63 - 1, description="One of your teams; default: your first team")


class ProjectOut(Schema):
    id: int
    team_id: int
    name: str
    archived: bool
    created_at: datetime


class TagsIn(Schema):
    tags: list[Text] = Field(max_length=20, examples=[["hero", "client ok"]], description="Replaces the take's tags")


class TagsOut(Schema):
    tags: list[str]


class StarOut(Schema):
    id: UUID
    starred: bool


class ShareIn(Schema):
    generation_id: UUID | None = Field(None, description="Share one take (with a saved video)…")
    project_id: int | None = Field(None, ge=1, le=2**63 - 1, description="…or a project's starred takes")
    days: int = Field(services.SHARE_DEFAULT_DAYS, ge=1, le=services.SHARE_MAX_DAYS, description="Lifetime in days")
    show_prompt: bool = True
    show_parameters: bool = Field(False, description="Model, duration and resolution")
    title: Text = Field("", max_length=120)


class ShareOut(Schema):
    id: int
    generation_id: UUID | None
    project_id: int | None
    url: str | None = Field(description="The link, only in the answer that created it (stored hashed)")
    show_prompt: bool
    show_parameters: bool
    expires_at: datetime
    revoked_at: datetime | None
    open_count: int
    last_opened_at: datetime | None


def _project_out(p) -> dict:
    return {"id": p.pk, "team_id": p.team_id, "name": p.name, "archived": p.archived, "created_at": p.created_at}


def _share_out(link, url: str | None = None) -> dict:
    return {
        "id": link.pk, "generation_id": link.generation_id, "project_id": link.project_id, "url": url,
        "show_prompt": link.show_prompt, "show_parameters": link.show_parameters, "expires_at": link.expires_at,
        "revoked_at": link.revoked_at, "open_count": link.open_count, "last_opened_at": link.last_opened_at,
    }


def _generation(request, generation_id):
    generation = generation_for(user=request.auth, generation_id=generation_id)
    if generation is None:
        raise NotFound("No such generation.")
    return generation


@router.get("/projects", response={200: list[ProjectOut]}, summary="List your teams' projects")
def list_projects(request):
    """Every project of your teams (archived ones included, flagged), by name."""
    return Status(200, [_project_out(p) for p in selectors.projects_visible_to(user=request.auth)])


@router.post("/projects", response={201: ProjectOut, 404: ErrorOut, 409: ErrorOut, 422: ErrorOut}, summary="Create a project")
def create_project(request, payload: ProjectIn):
    """A new project in one of your teams (404 for another team; 409 `project_exists`)."""
    from accounts.models import Team

    team_ids, primary = teams_of(request.auth)
    team_id = payload.team_id or (primary.pk if primary else None)
    if team_id not in team_ids:
        raise NotFound("No such team.")
    return Status(201, _project_out(services.project_create(team=Team.objects.get(pk=team_id), name=payload.name)))


@router.put("/generations/{generation_id}/star", response={200: StarOut, 404: ErrorOut, 422: ErrorOut}, summary="Star a take")
def star_generation(request, generation_id: UUID):
    """Keep a take (idempotent)."""
    g = services.generation_set_starred(generation=_generation(request, generation_id), starred=True)
    return Status(200, {"id": g.pk, "starred": g.starred})


@router.delete("/generations/{generation_id}/star", response={200: StarOut, 404: ErrorOut, 422: ErrorOut}, summary="Unstar a take")
def unstar_generation(request, generation_id: UUID):
    """Remove the star (idempotent)."""
    g = services.generation_set_starred(generation=_generation(request, generation_id), starred=False)
    return Status(200, {"id": g.pk, "starred": g.starred})


@router.get("/generations/{generation_id}/tags", response={200: TagsOut, 404: ErrorOut, 422: ErrorOut}, summary="A take's tags")
def read_tags(request, generation_id: UUID):
    """The take's tags, by name."""
    return Status(200, {"tags": [t.name for t in _generation(request, generation_id).tags.order_by("name")]})


@router.put("/generations/{generation_id}/tags", response={200: TagsOut, 404: ErrorOut, 422: ErrorOut}, summary="Set a take's tags")
def set_tags(request, generation_id: UUID, payload: TagsIn):
    """Replace the take's tags (lower-cased; 1 to 40 letters, digits, spaces, - or _; at most 20).
    422 `validation_error` otherwise, `no_team` for a take without a team."""
    generation = _generation(request, generation_id)
    names = services.generation_set_tags(generation=generation, names=services.parse_tags(payload.tags))
    return Status(200, {"tags": names})


@router.get("/share-links", response={200: list[ShareOut]}, summary="List your teams' share links")
def list_share_links(request):
    """Newest first, with how often each was opened (the address itself is never shown again)."""
    return Status(200, [_share_out(link) for link in selectors.share_links_visible_to(user=request.auth)[:500]])


@router.post("/share-links", response={201: ShareOut, 404: ErrorOut, 422: ErrorOut}, summary="Create a share link")
def create_share_link(request, payload: ShareIn):
    """A read-only link, no login needed, to one take or to a project's starred takes; `url` is
    in this answer only. 404 for another team's take or project; 422 `validation_error`."""
    generation = _generation(request, payload.generation_id) if payload.generation_id else None
    project = None
    if payload.project_id is not None:
        project = selectors.project_for(user=request.auth, project_id=payload.project_id)
        if project is None:
            raise NotFound("No such project.")
    link, raw = services.share_create(
        user=request.auth, generation=generation, project=project, days=payload.days, show_prompt=payload.show_prompt,
        show_parameters=payload.show_parameters, title=payload.title,
    )
    return Status(201, _share_out(link, request.build_absolute_uri(reverse("teamwork:shared", args=[raw]))))


@router.post("/share-links/{link_id}/revoke", response={200: ShareOut, 404: ErrorOut, 422: ErrorOut}, summary="Revoke a share link")
def revoke_share_link(request, link_id: int):
    """It stops opening at once (idempotent)."""
    link = selectors.share_links_visible_to(user=request.auth).filter(pk=link_id).first()
    if link is None:
        raise NotFound("No such share link.")
    return Status(200, _share_out(services.share_revoke(link=link)))
