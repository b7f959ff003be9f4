"""Writes for projects, stars, tags and share links.

Callers pass objects already checked visible (``teamwork.selectors``,
``generations.selectors.generation_for``); these functions check team coherence and raise
:class:`config.errors.DomainError` (422) otherwise.
"""

from __future__ import annotations

import re
import secrets
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from config.errors import DomainError
from teamwork.models import Project, ShareLink, Tag, hash_token

TAG_RE = re.compile(r"^[\w][\w\- ]{0,39}$")
#: Longest life of a share link (and its default).
SHARE_MAX_DAYS = 90
SHARE_DEFAULT_DAYS = 7
MAX_TAGS = 20


def _invalid(code: str, message: str, fields: dict[str, list[str]]) -> DomainError:
    """A 422 refusal in the one error shape."""
    return DomainError(code, message, fields, status=422)


def project_create(*, team, name: str) -> Project:
    """A new project of ``team``. Raises ``DomainError`` 422 ``validation_error`` (empty or too long
    a name) or 409 ``project_exists`` (the team has a project of that name)."""
    name = (name or "").strip()
    if not name or len(name) > 120:
        raise _invalid("validation_error", "A project needs a name of 1 to 120 characters.", {"name": ["1 to 120 characters."]})
    try:
        with transaction.atomic():
            return Project.objects.create(team=team, name=name)
    except IntegrityError:
        raise DomainError("project_exists", f"The team already has a project named {name!r}.", {"name": ["Already used."]}, status=409) from None


def project_set_archived(*, project: Project, archived: bool) -> Project:
    """Archive (hide from the switcher) or restore ``project``."""
    Project.objects.filter(pk=project.pk).update(archived=archived)
    project.archived = archived
    return project


def generation_set_starred(*, generation, starred: bool):
    """Star (keep) or unstar a take; a conditional UPDATE of that one column."""
    from generations.models import Generation

    Generation.objects.filter(pk=generation.pk).update(starred=starred)
    generation.starred = starred
    return generation


def parse_tags(raw) -> list[str]:
    """``"hero, Client OK"`` or a list → ``["client ok", "hero"]`` (lower case, unique, sorted).

    Raises ``DomainError`` 422 ``validation_error`` (field ``tags``) for a tag that is not 1 to
    40 letters, digits, spaces, ``-`` or ``_``, or more than :data:`MAX_TAGS`."""
    items = raw.split(",") if isinstance(raw, str) else list(raw or [])
    names = sorted({" ".join(str(i).split()).lower() for i in items if str(i).strip()})
    bad = [n for n in names if not TAG_RE.match(n)]
    if bad:
        raise _invalid("validation_error", f"Not a tag: {', '.join(bad)}.", {"tags": ["1 to 40 letters, digits, spaces, - or _."]})
    if len(names) > MAX_TAGS:
        raise _invalid("validation_error", f"At most {MAX_TAGS} tags.", {"tags": [f"At most {MAX_TAGS} tags."]})
    return names


def generation_set_tags(*, generation, names: list[str]) -> list[str]:
    """Replace the take's tags with ``names`` (from :func:`parse_tags`), creating the team's
    missing tags. A take without a team cannot be tagged (422 ``no_team``). Returns the names."""
    if generation.team_id is None:
        raise _invalid("no_team", "Only a team's takes can be tagged.", {"tags": ["This take has no team."]})
    with transaction.atomic():
        tags = []
        for name in names:
            tag, _ = Tag.objects.get_or_create(team_id=generation.team_id, name=name)
            tags.append(tag)
        generation.tags.set(tags)
    return names


def share_create(
    *, user, generation=None, project=None, days: int = SHARE_DEFAULT_DAYS, show_prompt: bool = True,
    show_parameters: bool = False, title: str = "",
) -> tuple[ShareLink, str]:
    """A share link to one take (its team's) or to a project's starred takes; returns the link
    and the raw token, shown once (only its SHA-256 is stored).

    ``days``: 1 to :data:`SHARE_MAX_DAYS`. Raises ``DomainError`` 422 ``validation_error``
    (bad ``days``, a take without a team or without a video, neither or both targets)."""
    if (generation is None) == (project is None):
        raise _invalid("validation_error", "Share one take or one project.", {"target": ["Exactly one of them."]})
    if not isinstance(days, int) or not 1 <= days <= SHARE_MAX_DAYS:
        raise _invalid("validation_error", f"A link lives 1 to {SHARE_MAX_DAYS} days.", {"days": [f"1 to {SHARE_MAX_DAYS}."]})
    if generation is not None:
        if generation.team_id is None:
            raise _invalid("validation_error", "Only a team's takes can be shared.", {"target": ["This take has no team."]})
        if not generation.has_video:
            raise _invalid("validation_error", "Only a saved video can be shared.", {"target": ["No video yet."]})
    raw = secrets.token_urlsafe(32)
    link = ShareLink.objects.create(
        team_id=generation.team_id if generation is not None else project.team_id, created_by=user,
        generation=generation, project=project, title=(title or "").strip()[:120], token_hash=hash_token(raw),
        show_prompt=show_prompt, show_parameters=show_parameters, expires_at=timezone.now() + timedelta(days=days),
    )
    return link, raw


def share_revoke(*, link: ShareLink) -> ShareLink:
    """Revoke ``link`` now (idempotent: a revoked link keeps its first revocation time)."""
    ShareLink.objects.filter(pk=link.pk, revoked_at__isnull=True).update(revoked_at=timezone.now())
    link.refresh_from_db()
    return link


def share_record_open(*, link: ShareLink) -> None:
    """Count one opening of ``link`` (atomic increment) and stamp its time (UTC)."""
    ShareLink.objects.filter(pk=link.pk).update(open_count=F("open_count") + 1, last_opened_at=timezone.now())


def shared_generations(link: ShareLink):
    """The takes ``link`` shows: its one take, or its project's starred takes with a video,
    newest first (only archived videos: nothing else can be played)."""
    from generations.models import ArchiveState, Generation

    if link.generation_id is not None:
        rows = Generation.objects.filter(pk=link.generation_id)
    else:
        rows = Generation.objects.filter(project_id=link.project_id, starred=True)
    return rows.filter(archive_state=ArchiveState.DONE).exclude(video="").order_by("-created_at", "-id")
