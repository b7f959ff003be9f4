"""The Generation record and its timeline."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import models
from django.db.models import Q
from django.utils import timezone

from billing.money import DECIMAL_PLACES, MAX_DIGITS


class State(models.TextChoices):
    """The lifecycle (ARCHITECTURE.md, "The lifecycle"). Transitions only move forward."""

    QUEUED = "queued", "Queued"
    SUBMITTING = "submitting", "Submitting"
    SUBMITTED = "submitted", "Submitted"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    EXPIRED = "expired", "Expired"
    CANCELED = "canceled", "Canceled"
    NEEDS_RECONCILIATION = "needs_reconciliation", "Needs reconciliation"
    # Approvals (``approvals``): a submit the team's rule holds back until a team admin decides.
    PENDING_APPROVAL = "pending_approval", "Waiting for approval"
    REJECTED = "rejected", "Rejected"


FINAL_STATES = frozenset({State.SUCCEEDED, State.FAILED, State.EXPIRED, State.CANCELED, State.REJECTED})
IN_FLIGHT_STATES = frozenset({State.SUBMITTED, State.RUNNING})

#: Which states each state may be entered from; anything else is a late or duplicate update.
ALLOWED_FROM: dict[str, frozenset[str]] = {
    State.SUBMITTING: frozenset({State.QUEUED}),
    # A retry after an error before the request left; or a team admin's approval.
    State.QUEUED: frozenset({State.SUBMITTING, State.PENDING_APPROVAL}),
    State.SUBMITTED: frozenset({State.SUBMITTING, State.NEEDS_RECONCILIATION}),
    State.RUNNING: frozenset({State.SUBMITTED}),
    # From expired: a late success our own status read confirmed (captured late, issue 11).
    State.SUCCEEDED: frozenset({State.SUBMITTED, State.RUNNING, State.EXPIRED}),
    State.FAILED: frozenset({State.QUEUED, State.SUBMITTING, State.SUBMITTED, State.RUNNING, State.NEEDS_RECONCILIATION}),
    State.EXPIRED: frozenset({State.SUBMITTED, State.RUNNING}),
    State.CANCELED: frozenset({State.QUEUED, State.PENDING_APPROVAL, State.SUBMITTED, State.RUNNING}),
    State.NEEDS_RECONCILIATION: frozenset({State.SUBMITTING}),
    # Only at creation, in the create transaction (``approvals.services.approval_or_submit``):
    # nobody ever sees such a row queued, and no submit was enqueued for it.
    State.PENDING_APPROVAL: frozenset({State.QUEUED}),
    # A team admin's rejection, or nobody decided within HAILUO_APPROVAL_TTL: the hold is released.
    State.REJECTED: frozenset({State.PENDING_APPROVAL}),
}


class ArchiveState(models.TextChoices):
    NONE = "", "—"
    PENDING = "pending", "Archive pending"
    DONE = "done", "Archived"
    FAILED = "failed", "Archive failed"


class Generation(models.Model):
    """One video generation: who asked for what, where it runs, what it costs, where the video is.

    ``quoted_amount`` (USD) and ``price_rule`` are the snapshot taken at hold time;
    ``provider_task_id`` is written right after the provider accepted the submit.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # user, team, state: no single-column index; the composite indexes in Meta lead with them
    # (issue 16: six redundant indexes cost every INSERT, a submit's included).
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="generations", db_index=False)
    team = models.ForeignKey(
        "accounts.Team", null=True, blank=True, on_delete=models.PROTECT, related_name="generations", db_index=False
    )
    provider_account = models.ForeignKey("providers.ProviderAccount", on_delete=models.PROTECT, related_name="generations")
    fallback_from = models.ForeignKey(
        "providers.ProviderAccount", null=True, blank=True, on_delete=models.PROTECT, related_name="+",
        help_text="The account first chosen, when failover moved this generation to provider_account.",
    )
    provider_kind = models.CharField(max_length=20)
    model = models.CharField(max_length=60)
    mode = models.CharField(max_length=60)
    prompt = models.TextField()
    duration = models.PositiveIntegerField(help_text="Seconds of output.")
    resolution = models.CharField(max_length=10)
    image_url = models.URLField(max_length=2000, blank=True)
    options = models.JSONField(default=dict, blank=True)
    project = models.ForeignKey(
        "teamwork.Project", null=True, blank=True, on_delete=models.PROTECT, related_name="generations",
        help_text="The team's campaign or client this take belongs to (cost reports group by it).",
    )
    starred = models.BooleanField(default=False, help_text="A kept take (the team's favourites).")
    batch = models.ForeignKey(
        "generations.Batch", null=True, blank=True, on_delete=models.PROTECT, related_name="generations",
        help_text="The variants or batch this generation was made in (one submit, all held or none).",
    )
    batch_index = models.PositiveSmallIntegerField(null=True, blank=True, help_text="Its position in the batch, from 1.")

    state = models.CharField(max_length=24, choices=State.choices, default=State.QUEUED)
    provider_state = models.CharField(max_length=40, blank=True)
    progress = models.PositiveSmallIntegerField(null=True, blank=True)
    # Found by (account, task id): the unique constraint's index; no query reads it alone.
    provider_task_id = models.CharField(max_length=200, blank=True)
    fail_code = models.CharField(max_length=100, blank=True)
    fail_message = models.TextField(blank=True)
    reconciliation_note = models.TextField(blank=True)
    needs_reconciliation_at = models.DateTimeField(
        null=True, blank=True, help_text="When it entered needs_reconciliation (its age is counted from here)."
    )
    callback_task_id = models.CharField(
        max_length=200, blank=True,
        help_text="The task id a callback named before we knew ours; checked by our own status read, never trusted.",
    )
    late_poll_until = models.DateTimeField(
        null=True, blank=True, help_text="An expired task is still polled slowly until then (HAILUO_LATE_RESULT_GRACE).",
    )
    late = models.BooleanField(default=False, help_text="Succeeded at the provider after we had expired it; captured late.")

    quoted_amount = models.DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES)
    charged_amount = models.DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES, null=True, blank=True)
    price_rule = models.JSONField(default=dict, blank=True)
    provider_cost = models.JSONField(
        null=True, blank=True, encoder=DjangoJSONEncoder, help_text="Cost as the provider reports it, if it does."
    )

    result_urls = models.JSONField(default=list, blank=True)
    video = models.FileField(upload_to="videos/%Y/%m/", blank=True, max_length=300)
    video_bytes = models.BigIntegerField(null=True, blank=True)
    video_seconds = models.DecimalField(
        max_digits=8, decimal_places=3, null=True, blank=True,
        help_text="The archived video's measured duration (ffmpeg), seconds.",
    )
    poster = models.FileField(upload_to="posters/%Y/%m/", blank=True, max_length=300, help_text="A JPEG frame for the gallery.")
    archive_state = models.CharField(max_length=10, choices=ArchiveState.choices, blank=True, default="")
    archive_attempts = models.PositiveSmallIntegerField(default=0)
    archive_error = models.TextField(blank=True)
    next_archive_at = models.DateTimeField(null=True, blank=True)
    hidden_at = models.DateTimeField(
        null=True, blank=True, help_text="Hidden from the gallery (by its owner or a team admin); the ledger is untouched.",
    )

    # The API's Idempotency-Key (IETF draft "The Idempotency-Key HTTP Header Field"): at most
    # 255 characters, bound to the request it came with by ``request_fingerprint`` (SHA-256 of
    # the canonical JSON body); ``idempotent_response`` is the first answer, replayed as is.
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001 (NULL: no key, unique otherwise)
    request_fingerprint = models.CharField(max_length=64, blank=True)
    idempotent_response = models.JSONField(null=True, blank=True, help_text="{status, body} of the first answer to the key.")
    callback_token_hash = models.CharField(max_length=64, blank=True)
    submit_attempts = models.PositiveSmallIntegerField(default=0)
    next_submit_at = models.DateTimeField(null=True, blank=True)
    next_poll_at = models.DateTimeField(null=True, blank=True)
    poll_lease_until = models.DateTimeField(null=True, blank=True)
    poll_count = models.PositiveIntegerField(default=0)
    poll_interval = models.FloatField(default=12.0, help_text="Seconds between polls (documented cadence).")

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="generation_unique_idempotency_key_per_user",
            ),
            models.UniqueConstraint(
                fields=["provider_account", "provider_task_id"],
                condition=~Q(provider_task_id=""),
                name="generation_unique_provider_task",
            ),
            models.CheckConstraint(condition=Q(quoted_amount__gte=0), name="generation_quote_nonnegative"),
        ]
        indexes = [
            models.Index(fields=["state", "next_poll_at"], name="generation_due_poll"),
            # The sweep's claim (services/window.py): one account's due polls, oldest first, read
            # without sorting or scanning the rest of what it has in flight.
            models.Index(
                fields=["provider_account", "next_poll_at"], name="generation_account_due_poll",
                condition=Q(state__in=["submitted", "running", "expired"]) & ~Q(provider_task_id=""),
            ),
            models.Index(fields=["user", "-created_at"], name="generation_user_recent"),
            models.Index(fields=["team", "-created_at"], name="generation_team_recent"),
        ]

    def __str__(self) -> str:
        return f"{self.model} {self.mode} {self.duration}s ({self.state})"

    @property
    def cancel_offered(self) -> bool:
        """Whether cancel is offered: before it was sent (a local cancel), or in flight where the
        provider documents a cancel for the task's current provider state (qingbo: queued only,
        providers.md "Cancel Task")."""
        if self.state in (State.QUEUED, State.PENDING_APPROVAL):
            return True
        if self.state not in IN_FLIGHT_STATES:
            return False
        from providers.registry import ADAPTERS

        cls = ADAPTERS.get(self.provider_kind)
        return cls is not None and cls.can_cancel_in(self.provider_state)

    #: (words in the provider's fail code or message, the sentence a member is shown).
    FAIL_SENTENCES = (
        (("sensitive", "moderation", "content policy", "nsfw", "safety", "1026", "1027"),
         "The provider's safety check refused this prompt or image. Try different wording or another image."),
        (("insufficient", "credit", "balance", "402", "1008", "quota"),
         "The company's account at this provider is out of credit; admins have been told. Nothing was charged."),
        (("401", "1004", "unauthor", "api key", "invalid key", "authentication"),
         "The company's account at this provider was refused (its key); admins have been told. Nothing was charged."),
        (("timeout", "timed out", "expired"),
         "The provider did not finish in time. Retry it; nothing was charged."),
    )

    @property
    def fail_summary(self) -> str:
        """The failure in a plain sentence for members (the provider's own code and message stay
        in ``fail_code``/``fail_message``, shown as detail); "" when nothing failed."""
        if self.state not in (State.FAILED, State.EXPIRED):
            return ""
        text = f"{self.fail_code} {self.fail_message}".lower()
        for words, sentence in self.FAIL_SENTENCES:
            if any(word in text for word in words):
                return sentence
        if self.state == State.EXPIRED:
            return "The provider did not finish in time. Retry it; nothing was charged."
        return "The provider could not make this video. Retry it, or change the prompt; nothing was charged."

    @property
    def retry_offered(self) -> bool:
        """Whether retry (a new generation with the same parameters) is offered: failed or expired."""
        return self.state in (State.FAILED, State.EXPIRED)

    @property
    def save_retry_offered(self) -> bool:
        """Whether "try saving again" is offered: succeeded, its download failed for good, and the
        provider's result URL may still be valid (``services.archive_retry_offered``)."""
        from generations.services.archive import archive_retry_offered

        return archive_retry_offered(self)

    @property
    def model_label(self) -> str:
        """The model's human name ("Hailuo 2.3 Fast"); ``model`` keeps the provider's id."""
        from providers.registry import model_label

        return model_label(self.provider_kind, self.model)

    @property
    def mode_label(self) -> str:
        """The mode's human name ("Text-to-video"); the raw id when unknown."""
        from providers.registry import ADAPTERS

        cls = ADAPTERS.get(self.provider_kind)
        model = cls.capabilities.model(self.model) if cls is not None else None
        mode = model.mode(self.mode) if model is not None else None
        return mode.label if mode is not None else self.mode

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def has_video(self) -> bool:
        return bool(self.video) and self.archive_state == ArchiveState.DONE

    @property
    def elapsed_seconds(self) -> float | None:
        end = self.completed_at or (None if self.is_final else timezone.now())
        return (end - self.created_at).total_seconds() if end else None


class GenerationEvent(models.Model):
    """One step in a generation's timeline: a state change or a notable fact, with its time."""

    generation = models.ForeignKey(Generation, on_delete=models.CASCADE, related_name="events")
    at = models.DateTimeField(default=timezone.now)
    state = models.CharField(max_length=24, blank=True)
    message = models.TextField(blank=True)
    data = models.JSONField(null=True, blank=True)

    class Meta:
        ordering = ["at", "id"]

    def __str__(self) -> str:
        return f"{self.at:%H:%M:%S} {self.state} {self.message}"


def _upload_path(instance, filename: str) -> str:
    return f"uploads/{instance.created_at:%Y/%m}/{instance.pk}.{instance.format or 'bin'}"


class InputImage(models.Model):
    """An image a member uploaded as a first frame (or other input image).

    Providers fetch it by URL: it is served publicly under an unguessable id at
    ``/u/<id>.<ext>`` below ``HAILUO_PUBLIC_BASE_URL``. Format and dimensions are read at
    upload time so the provider's image rules are checked without fetching it back.
    """

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="input_images")
    file = models.FileField(upload_to=_upload_path, max_length=300)
    format = models.CharField(max_length=10)
    width = models.PositiveIntegerField()
    height = models.PositiveIntegerField()
    size = models.PositiveIntegerField()
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.pk}.{self.format} {self.width}×{self.height}"


class SweepLease(models.Model):
    """A slot for one running poll sweep (at most ``HAILUO_POLL_SWEEPERS`` at once).

    Sweeps run for about a minute each; without slots, a backlog of scheduled runs could
    occupy every django-q2 worker and starve submits and archives. A slot is claimed with a
    conditional UPDATE, renewed every pass and expires by itself when a worker dies.
    """

    slot = models.PositiveSmallIntegerField(primary_key=True)
    holder = models.CharField(max_length=100, blank=True)
    expires_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"sweep slot {self.slot} ({self.holder or 'free'} until {self.expires_at:%H:%M:%S})"


class Batch(models.Model):
    """Generations made by one submit: N variants of one request, or a batch of many prompts.

    Every generation of a batch is written, and every hold placed, in one transaction
    (``generations.services.batch.batch_create``): all or none. ``quoted_total`` (USD) is the
    sum of its generations' quotes, i.e. of their holds. The API's ``Idempotency-Key`` is bound
    to the whole body by ``request_fingerprint``; ``idempotent_response`` is the first answer.
    """

    class Kind(models.TextChoices):
        VARIANTS = "variants", "Variants"
        BATCH = "batch", "Batch"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="batches")
    team = models.ForeignKey("accounts.Team", null=True, blank=True, on_delete=models.PROTECT, related_name="batches")
    project = models.ForeignKey("teamwork.Project", null=True, blank=True, on_delete=models.PROTECT, related_name="batches")
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.BATCH)
    title = models.CharField(max_length=200, blank=True)
    size = models.PositiveSmallIntegerField(help_text="How many generations it made.")
    quoted_total = models.DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES)
    shared = models.JSONField(default=dict, blank=True, help_text="The settings shared by every item.")
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001 (NULL: no key, unique otherwise)
    request_fingerprint = models.CharField(max_length=64, blank=True)
    idempotent_response = models.JSONField(null=True, blank=True, help_text="{status, body} of the first answer to the key.")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        verbose_name_plural = "batches"
        constraints = [
            models.UniqueConstraint(
                fields=["user", "idempotency_key"],
                condition=Q(idempotency_key__isnull=False),
                name="batch_unique_idempotency_key_per_user",
            ),
            models.CheckConstraint(condition=Q(quoted_total__gte=0), name="batch_total_nonnegative"),
        ]

    def __str__(self) -> str:
        return self.title or f"{self.get_kind_display()} of {self.size}"
