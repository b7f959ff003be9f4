"""Outbound webhooks: endpoints (where to send which events), deliveries (one message to one
endpoint) and attempts (one HTTP POST of a delivery, logged).

A delivery's ``id`` is the Standard Webhooks ``webhook-id``: the same for every attempt and
every manual redelivery of that message, so a receiver can deduplicate on it.
"""

from __future__ import annotations

import base64
import secrets
import uuid

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from providers import crypto


class EventType(models.TextChoices):
    """The events an endpoint can subscribe to (``webhook.test`` is sent by a test ping only)."""

    GENERATION_SUCCEEDED = "generation.succeeded", "Generation succeeded"
    GENERATION_FAILED = "generation.failed", "Generation failed (or expired)"
    GENERATION_CANCELED = "generation.canceled", "Generation canceled"
    GENERATION_NEEDS_RECONCILIATION = "generation.needs_reconciliation", "Generation needs reconciliation"
    BUDGET_THRESHOLD_REACHED = "budget.threshold_reached", "Budget threshold reached"


TEST_EVENT = "webhook.test"
SECRET_PREFIX = "whsec_"


def new_secret() -> str:
    """A new signing secret: ``whsec_`` + base64 of 32 random bytes (the Standard Webhooks form)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def new_message_id() -> str:
    """A new ``webhook-id``: ``msg_`` + 32 hex characters."""
    return "msg_" + uuid.uuid4().hex


class Endpoint(models.Model):
    """A URL that receives the chosen events of one owner: a user (``user``) or a team (``team``).

    ``secret_encrypted`` is the ``whsec_`` secret, Fernet-encrypted (``providers.crypto``):
    it must be readable to sign, so it is not hashed; it is shown to the owner once, at
    creation and at rotation. ``failing_since`` is the time of the first failed attempt of
    the current run of failures (None after any success); past
    ``HAILUO_WEBHOOK_DISABLE_AFTER`` seconds of it the endpoint is disabled and its owner emailed.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="webhook_endpoints")
    team = models.ForeignKey("accounts.Team", null=True, blank=True, on_delete=models.CASCADE, related_name="webhook_endpoints")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    url = models.URLField(max_length=2000)
    description = models.CharField(max_length=200, blank=True)
    events = models.JSONField(default=list, help_text="Event type names, e.g. [\"generation.succeeded\"].")
    enabled = models.BooleanField(default=True)
    disabled_reason = models.TextField(blank=True)
    secret_encrypted = models.TextField(editable=False)
    secret_last4 = models.CharField(max_length=4, editable=False)
    failing_since = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(user__isnull=False) & Q(team__isnull=True)) | (Q(user__isnull=True) & Q(team__isnull=False)),
                name="webhook_endpoint_one_owner",
            ),
        ]

    def __str__(self) -> str:
        return self.url

    @property
    def secret(self) -> str:
        """The ``whsec_…`` signing secret (decrypted)."""
        return crypto.decrypt(self.secret_encrypted)

    def set_secret(self, raw: str) -> None:
        """Store ``raw`` (a ``whsec_`` secret) encrypted; the caller saves."""
        self.secret_encrypted = crypto.encrypt(raw)
        self.secret_last4 = raw[-4:]

    @property
    def owner_label(self) -> str:
        return f"team {self.team}" if self.team_id else str(self.user)

    def owner_emails(self) -> list[str]:
        """Who is told when the endpoint is disabled: the user, or the team's admins."""
        if self.user_id:
            return [self.user.email]
        from accounts.models import Membership

        return sorted(
            Membership.objects.filter(team_id=self.team_id, role=Membership.Role.TEAM_ADMIN, user__is_active=True)
            .values_list("user__email", flat=True)
        )


class Delivery(models.Model):
    """One event message for one endpoint, attempted until it succeeds or its retries run out.

    ``body`` is the exact JSON text sent (the same bytes on every attempt); it is empty while
    the delivery is ``held`` (a success waiting for its video to be archived, so the
    ``video_url`` in the payload works when the receiver follows it). ``attempts`` counts
    every attempt made (automatic and manual) and is the claim counter: an attempt is claimed
    by a conditional UPDATE on it, so no two workers ever send the same attempt.
    ``auto_failures`` counts failed automatic attempts (the backoff position).
    """

    class Status(models.TextChoices):
        HELD = "held", "Held (waiting for the video)"
        PENDING = "pending", "Pending"
        SUCCEEDED = "succeeded", "Delivered"
        FAILED = "failed", "Failed"

    id = models.CharField(primary_key=True, max_length=40, default=new_message_id, editable=False)
    endpoint = models.ForeignKey(Endpoint, on_delete=models.CASCADE, related_name="deliveries")
    event_type = models.CharField(max_length=60)
    generation = models.ForeignKey("generations.Generation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    body = models.TextField(blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING, db_index=True)
    attempts = models.PositiveIntegerField(default=0)
    auto_failures = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        indexes = [models.Index(fields=["status", "next_attempt_at"], name="webhook_delivery_due")]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.endpoint} ({self.status})"


class Attempt(models.Model):
    """One HTTP POST of a delivery: when, the answer's status (None: no answer), latency in
    milliseconds, the first 1,000 characters of the answer, the transport error if any,
    and whether it was automatic or a manual redelivery."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    manual = models.BooleanField(default=False)
    started_at = models.DateTimeField()
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    response_excerpt = models.TextField(blank=True)
    error = models.TextField(blank=True)
    ok = models.BooleanField(default=False)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="webhook_attempt_unique_number")]

    def __str__(self) -> str:
        return f"attempt {self.number} of {self.delivery_id}: {self.status_code or self.error[:40]}"
