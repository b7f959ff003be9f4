"""Reads about projects, tags and share links, scoped to what a user may see.

Visibility is the gallery's: a user sees the projects, tags and links of the teams they
belong to; anything else is absent (callers answer 404, never 403).
"""

from __future__ import annotations

from django.db.models import QuerySet

from generations.selectors import team_ids_of
from teamwork.models import Project, ShareLink, Tag, hash_token


def projects_visible_to(*, user, team_ids: list[int] | None = None, include_archived: bool = True) -> QuerySet[Project]:
    """The projects of ``user``'s teams, by name; ``include_archived=False`` for the switcher."""
    if team_ids is None:
        team_ids = team_ids_of(user)
    projects = Project.objects.filter(team_id__in=team_ids).select_related("team")
    if not include_archived:
        projects = projects.filter(archived=False)
    return projects.order_by("name", "id")


def project_for(*, user, project_id) -> Project | None:
    """One project of ``user``'s teams, or None (another team's, or no such project)."""
    try:
        project_id = int(project_id)
    except (TypeError, ValueError):
        return None
    return projects_visible_to(user=user).filter(pk=project_id).first()


def tags_visible_to(*, user, team_ids: list[int] | None = None) -> QuerySet[Tag]:
    """The tags of ``user``'s teams, by name."""
    if team_ids is None:
        team_ids = team_ids_of(user)
    return Tag.objects.filter(team_id__in=team_ids).order_by("name")


def share_links_visible_to(*, user) -> QuerySet[ShareLink]:
    """The share links of ``user``'s teams, newest first."""
    return ShareLink.objects.filter(team_id__in=team_ids_of(user)).select_related("generation", "project", "created_by")


def share_link_by_token(raw_token: str) -> ShareLink | None:
    """The active (not revoked, not expired) link whose token is ``raw_token``, or None."""
    if not raw_token or len(raw_token) > 200:
        return None
    link = ShareLink.objects.filter(token_hash=hash_token(raw_token)).select_related("generation", "project").first()
    return link if link is not None and link.is_active else None


def project_choices(user) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """((id, name) of the open projects, (id, name) of all projects) of ``user``'s teams, in one
    query: the studio's switcher offers the open ones, the gallery's filter all of them. Two
    teams' projects of the same name show their team."""
    # One query: the membership join instead of reading the team ids first.
    rows = list(
        Project.objects.filter(team__memberships__user=user).order_by("name", "id").values_list("pk", "name", "team__name", "archived")
    )
    names = [row[1] for row in rows]

    def label(name, team, archived):
        text = f"{name} ({team})" if names.count(name) > 1 else name
        return f"{text} (archived)" if archived else text

    every = [(pk, label(name, team, archived)) for pk, name, team, archived in rows]
    return [(pk, text) for (pk, text), row in zip(every, rows, strict=True) if not row[3]], every
