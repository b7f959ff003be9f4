"""How a team works: projects (a campaign, a client), tags, and share links.

A generation belongs to at most one :class:`Project` (``Generation.project``), carries any
number of its team's :class:`Tag` s and may be starred (``Generation.starred``: a kept take).
A :class:`ShareLink` shows one take, or a project's starred takes, to people without a login.
A :class:`PromptTemplate` is a team's saved prompt with placeholders and settings (the prompt
library, ``teamwork.library``); :class:`NotificationPreference` says which emails a member
wants (``teamwork.notifications``), and :class:`NotificationSent` records each one sent so
that no event is ever emailed twice.
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


class PromptTemplate(models.Model):
    """A team's saved prompt with its settings: the prompt library.

    ``prompt`` may hold placeholders such as ``{product}`` (a name of letters, digits and
    ``_``), filled in at use (``teamwork.library.render_prompt``); ``{{`` and ``}}`` stand for
    literal braces. The settings are those of a create request (provider account, model, mode,
    duration in seconds, resolution, provider options, an optional first-frame URL); they are
    checked against the account's capabilities when saved and again by the create itself.
    """

    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="prompt_templates")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="prompt_templates")
    name = models.CharField(max_length=120)
    prompt = models.TextField()
    provider_account = models.ForeignKey(
        "providers.ProviderAccount", null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Empty when the account was deleted: the studio then offers its first account.",
    )
    model = models.CharField(max_length=60)
    mode = models.CharField(max_length=60)
    duration = models.PositiveIntegerField(help_text="Seconds of output.")
    resolution = models.CharField(max_length=10)
    options = models.JSONField(default=dict, blank=True)
    image_url = models.URLField(max_length=2000, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name", "id"]
        constraints = [models.UniqueConstraint(fields=["team", "name"], name="prompttemplate_unique_name_per_team")]

    def __str__(self) -> str:
        return f"{self.name} ({self.team})"


class NotificationPreference(models.Model):
    """Which emails a member wants; every one is off until they turn it on (``/settings/notifications/``).

    ``email_finished``: one of their videos succeeded; ``email_failed``: one failed or expired;
    ``email_approval``: an approval decision about one of their requests."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_preference")
    email_finished = models.BooleanField(default=False, verbose_name="Email me when a video of mine is ready")
    email_failed = models.BooleanField(default=False, verbose_name="Email me when a video of mine fails")
    email_approval = models.BooleanField(default=False, verbose_name="Email me about approvals of my requests")

    def __str__(self) -> str:
        return f"notifications of {self.user}"


class NotificationSent(models.Model):
    """One email sent to a member; ``key`` (unique) names what it was about (e.g.
    ``event:<GenerationEvent id>``), so the same event is never emailed twice."""

    key = models.CharField(max_length=200, unique=True)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=20)
    generation = models.ForeignKey("generations.Generation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    subject = models.CharField(max_length=200)
    sent_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-sent_at"]

    def __str__(self) -> str:
        return f"{self.kind} to {self.user} ({self.sent_at:%Y-%m-%d %H:%M})"
