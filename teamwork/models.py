"""How a team works: projects (a campaign, a client), tags, and share links.

A generation belongs to at most one :class:`Project` (``Generation.project``), carries any
number of its team's :class:`Tag` s and may be starred (``Generation.starred``: a kept take).
A :class:`ShareLink` shows one take, or a project's starred takes, to people without a login.
"""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Project(models.Model):
    """A team's campaign or client; generations may belong to one. Archived projects are
    hidden from the studio's switcher but keep their generations and their cost history."""

    team = models.ForeignKey("accounts.Team", on_delete=models.PROTECT, related_name="projects")
    name = models.CharField(max_length=120)
    archived = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "id"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="project_unique_name_per_team")]

    def __str__(self) -> str:
        return f"{self.name} ({self.team})"


class Tag(models.Model):
    """A team's label for takes ("hero", "client-ok"); lower case, at most 40 characters."""

    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="tags")
    name = models.CharField(max_length=40)
    generations = models.ManyToManyField("generations.Generation", related_name="tags", blank=True)

    class Meta:
        ordering = ["name"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="tag_unique_name_per_team")]

    def __str__(self) -> str:
        return self.name


def hash_token(raw: str) -> str:
    """SHA-256 hex of a share token (only the hash is stored)."""
    return hashlib.sha256(raw.encode()).hexdigest()


class ShareLink(models.Model):
    """A read-only, expiring, revocable link to one take or to a project's starred takes.

    The token (``secrets.token_urlsafe(32)``, 256 bits) is shown once; only its SHA-256 is
    stored. ``show_prompt``/``show_parameters`` are what the sharer chose to show; prices and
    members' emails are never shown. Opening it counts ``open_count`` and ``last_opened_at``.
    """

    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="share_links")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="share_links")
    generation = models.ForeignKey("generations.Generation", null=True, blank=True, on_delete=models.CASCADE, related_name="share_links")
    project = models.ForeignKey(Project, null=True, blank=True, on_delete=models.CASCADE, related_name="share_links")
    title = models.CharField(max_length=120, blank=True)
    token_hash = models.CharField(max_length=64, unique=True)
    show_prompt = models.BooleanField(default=True)
    show_parameters = models.BooleanField(default=False, help_text="Model, duration and resolution.")
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    open_count = models.PositiveIntegerField(default=0)
    last_opened_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(generation__isnull=False, project__isnull=True) | Q(generation__isnull=True, project__isnull=False)),
                name="sharelink_one_target",
            ),
        ]

    def __str__(self) -> str:
        return f"share of {self.generation_id or self.project} until {self.expires_at:%Y-%m-%d %H:%M}"

    @property
    def is_active(self) -> bool:
        """Neither revoked nor expired."""
        return self.revoked_at is None and self.expires_at > timezone.now()
