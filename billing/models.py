"""Price rules, the append-only ledger, and budgets."""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone

from billing.money import DECIMAL_PLACES, MAX_DIGITS


def _money_field(**kwargs):
    return models.DecimalField(max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES, **kwargs)


class PriceRule(models.Model):
    """One price of one provider's model, valid over a time range.

    ``mode``/``resolution`` blank and ``duration`` null mean "any". ``unit`` says how
    ``unit_price`` applies: per second of output, or per task. The most specific rule
    valid at the quote's time wins (:func:`billing.pricing.quote`). Rules are data: a
    price change is a new row with a later ``valid_from`` (the old row gets ``valid_to``).
    """

    class Unit(models.TextChoices):
        PER_SECOND = "per_second", "per second of output"
        PER_TASK = "per_task", "per task"

    provider_kind = models.CharField(max_length=20)
    model = models.CharField(max_length=60)
    mode = models.CharField(max_length=60, blank=True, help_text="Blank: any mode.")
    resolution = models.CharField(max_length=10, blank=True, help_text="Blank: any resolution.")
    duration = models.PositiveIntegerField(null=True, blank=True, help_text="Seconds; blank: any duration.")
    unit = models.CharField(max_length=20, choices=Unit.choices)
    unit_price = _money_field()
    currency = models.CharField(max_length=3, default="USD", editable=False)
    valid_from = models.DateTimeField(default=timezone.now)
    valid_to = models.DateTimeField(null=True, blank=True)
    source = models.TextField(blank=True, help_text="Where the price comes from: a link or a note.")
    supersedes = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="superseded_by",
        help_text="The version this rule replaced.",
    )
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    #: Fields that define a price; once saved they never change (a new version is written instead).
    PRICE_FIELDS = ("provider_kind", "model", "mode", "resolution", "duration", "unit", "unit_price", "valid_from")

    class Meta:
        ordering = ["provider_kind", "model", "mode", "resolution", "duration", "-valid_from"]
        constraints = [
            models.CheckConstraint(condition=Q(unit_price__gte=0), name="price_rule_unit_price_nonnegative"),
            models.CheckConstraint(condition=Q(currency="USD"), name="price_rule_currency_usd"),
            models.CheckConstraint(
                condition=Q(valid_to__isnull=True) | Q(valid_to__gt=models.F("valid_from")),
                name="price_rule_valid_range",
            ),
        ]

    def __str__(self) -> str:
        parts = [self.provider_kind, self.model, self.mode or "any mode", self.resolution or "any res"]
        parts.append(f"{self.duration}s" if self.duration else "any duration")
        return " · ".join(parts) + f" = {self.unit_price} USD {self.get_unit_display()}"

    def save(self, *args, **kwargs):
        """Insert, or close a version by setting ``valid_to``; any other change is refused."""
        if self.pk is not None and not self._state.adding:
            stored = PriceRule.objects.filter(pk=self.pk).values(*self.PRICE_FIELDS).first()
            if stored and any(stored[f] != getattr(self, f) for f in self.PRICE_FIELDS):
                raise PermissionError("price rules are never edited in place: write a new version (billing.services.price_rule_revise)")
        super().save(*args, **kwargs)

    @property
    def is_current(self) -> bool:
        now = timezone.now()
        return self.valid_from <= now and (self.valid_to is None or now < self.valid_to)

    def snapshot(self) -> dict:
        """The rule as plain data, stored with a hold so later price changes never rewrite history."""
        return {
            "id": self.pk,
            "provider_kind": self.provider_kind,
            "model": self.model,
            "mode": self.mode,
            "resolution": self.resolution,
            "duration": self.duration,
            "unit": self.unit,
            "unit_price": str(self.unit_price),
            "currency": self.currency,
            "valid_from": self.valid_from.isoformat(),
            "source": self.source,
        }


class LedgerQuerySet(models.QuerySet):
    def update(self, **kwargs):  # noqa: D102
        raise PermissionError("the ledger is append-only: write an adjustment entry instead")

    def delete(self):  # noqa: D102
        raise PermissionError("the ledger is append-only: write an adjustment entry instead")


class LedgerEntry(models.Model):
    """An append-only money movement in USD.

    Kinds: ``hold`` (reserve a quote at submit), ``capture`` (charge on success; carries
    ``hold_amount``, the hold it settles), ``release`` (free the hold on failure, expiry
    or cancel), ``adjustment`` (signed correction by an admin, with a reason), ``credit``
    (money given back). Per generation there is at most one hold, at most one capture, and
    at most one release; a capture and a release together only when the capture is
    ``late`` (database constraints). A late capture charges a success the provider reported
    after we had expired the task and released its hold: ``hold_amount`` 0 (no hold left to
    settle), so committed spend grows by its full amount, once. Rows are never updated or
    deleted (the queryset refuses; on PostgreSQL a trigger refuses too).

    ``effective_at`` dates the entry for budgets: a capture or release carries its hold's
    date, so a generation's cost stays in the period it was submitted in.
    """

    class Kind(models.TextChoices):
        HOLD = "hold", "Hold"
        CAPTURE = "capture", "Capture"
        RELEASE = "release", "Release"
        ADJUSTMENT = "adjustment", "Adjustment"
        CREDIT = "credit", "Credit"

    kind = models.CharField(max_length=12, choices=Kind.choices)
    amount = _money_field(help_text="USD; positive except for adjustments, which are signed.")
    hold_amount = _money_field(null=True, blank=True, help_text="For a capture: the amount of the hold it settles.")
    currency = models.CharField(max_length=3, default="USD", editable=False)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="ledger_entries")
    team = models.ForeignKey("accounts.Team", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    provider_account = models.ForeignKey(
        "providers.ProviderAccount", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    generation = models.ForeignKey(
        "generations.Generation", null=True, blank=True, on_delete=models.PROTECT, related_name="ledger_entries"
    )
    price_rule = models.JSONField(null=True, blank=True, help_text="Snapshot of the price rule applied.")
    reason = models.TextField(blank=True)
    late = models.BooleanField(
        default=False, help_text="A capture of a success reported after expiry released the hold (hold_amount 0)."
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    effective_at = models.DateTimeField(default=timezone.now, db_index=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    objects = LedgerQuerySet.as_manager()

    class Meta:
        ordering = ["created_at", "id"]
        verbose_name_plural = "ledger entries"
        constraints = [
            models.UniqueConstraint(
                fields=["generation", "kind"],
                condition=Q(kind__in=["hold", "capture", "release"]),
                name="ledger_one_hold_capture_release_per_generation",
            ),
            models.UniqueConstraint(
                fields=["generation"],
                condition=Q(kind__in=["capture", "release"], late=False),
                name="ledger_capture_xor_release_per_generation",
            ),
            models.CheckConstraint(
                condition=Q(late=False) | (Q(kind="capture") & Q(hold_amount=0)),
                name="ledger_late_is_a_capture_without_hold",
            ),
            models.CheckConstraint(
                condition=Q(kind="adjustment") | Q(amount__gte=0), name="ledger_amount_nonnegative"
            ),
            models.CheckConstraint(
                condition=~Q(kind__in=["hold", "capture", "release"]) | Q(generation__isnull=False),
                name="ledger_generation_entries_have_generation",
            ),
            models.CheckConstraint(
                condition=~Q(kind="adjustment") | ~Q(reason=""), name="ledger_adjustment_has_reason"
            ),
        ]
        indexes = [models.Index(fields=["user", "effective_at"]), models.Index(fields=["team", "effective_at"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount} USD ({self.user})"

    def save(self, *args, **kwargs):
        if self.pk is not None and not self._state.adding:
            raise PermissionError("the ledger is append-only: write an adjustment entry instead")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("the ledger is append-only: write an adjustment entry instead")


class Budget(models.Model):
    """A spending limit for one user or one team over a calendar period.

    ``period``: day, week (Monday first), month, or none (a lifetime cap), aligned in the
    team's time zone (UTC for a user without a team). ``hard``: refuse a submit that would
    exceed it; soft: warn and allow.
    """

    class Period(models.TextChoices):
        DAY = "day", "per day"
        WEEK = "week", "per week"
        MONTH = "month", "per month"
        NONE = "none", "no period (lifetime)"

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    team = models.ForeignKey("accounts.Team", null=True, blank=True, on_delete=models.CASCADE, related_name="budgets")
    amount = _money_field(help_text="USD per period.")
    period = models.CharField(max_length=10, choices=Period.choices, default=Period.MONTH)
    hard = models.BooleanField(default=True, help_text="Hard: refuse submits beyond it. Soft: warn and allow.")
    allowed_providers = models.JSONField(
        default=list, blank=True, help_text='Provider kinds this budget may buy from, e.g. ["apixo", "piapi"]; empty: any.'
    )
    allowed_models = models.JSONField(default=list, blank=True, help_text='Model ids allowed, e.g. ["hailuo-2-3"]; empty: any.')
    active = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(user__isnull=False) & Q(team__isnull=True)) | (Q(user__isnull=True) & Q(team__isnull=False)),
                name="budget_user_xor_team",
            ),
            models.CheckConstraint(condition=Q(amount__gte=0), name="budget_amount_nonnegative"),
        ]

    def __str__(self) -> str:
        owner = self.user or self.team
        return f"{owner}: {self.amount} USD {self.get_period_display()}"

    def clean(self):
        if bool(self.user_id) == bool(self.team_id):
            raise ValidationError("A budget belongs to exactly one user or one team.")

    @property
    def scope_label(self) -> str:
        return "your" if self.user_id else f"team {self.team}'s"

    def allows(self, *, provider_kind: str, model: str) -> bool:
        """False when an allow-list excludes this provider or model."""
        if self.allowed_providers and provider_kind not in self.allowed_providers:
            return False
        return not (self.allowed_models and model not in self.allowed_models)


class BalanceSnapshot(models.Model):
    """A provider account's balance as its balance endpoint reported it at ``taken_at``.

    Taken periodically (``billing.tasks.snapshot_balances``) so reconciliation can compare
    the change in balance over a period with what we captured. ``balance`` is in the
    provider's own ``unit``: ``USD`` (APIXO, PiAPI) or ``credits`` (PoYo, 1 credit = 0.005 USD).
    Rows are only ever added.
    """

    provider_account = models.ForeignKey(
        "providers.ProviderAccount", on_delete=models.CASCADE, related_name="balance_snapshots"
    )
    balance = _money_field(help_text="In the provider's unit (see unit).")
    unit = models.CharField(max_length=12, default="USD", help_text="USD, or the provider's own unit (PoYo: credits).")
    taken_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["provider_account", "taken_at", "id"]
        indexes = [models.Index(fields=["provider_account", "taken_at"], name="balance_snapshot_account_time")]

    def __str__(self) -> str:
        return f"{self.provider_account}: {self.balance} {self.unit} at {self.taken_at:%Y-%m-%d %H:%M}"
