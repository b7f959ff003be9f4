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
    # user and team: no single-column index; (user, effective_at) and (team, effective_at) in
    # Meta.indexes lead with them and serve every lookup by either (issue 16: one index fewer
    # to write per entry, each).
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="ledger_entries", db_index=False
    )
    team = models.ForeignKey(
        "accounts.Team", null=True, blank=True, on_delete=models.PROTECT, related_name="+", db_index=False
    )
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
    """A spending limit over a calendar period: one layer of the budget rules.

    Layers, told apart by which of ``user``/``team`` is set (all that apply are checked; the
    most restrictive wins, README "Money"):

    - member's own (``user`` only, set by staff): all of the member's spend;
    - member-in-team (``user`` and ``team``, set by that team's admins or staff): the member's
      spend booked to that team;
    - team (``team`` only, set by staff): all spend booked to the team;
    - project (``project`` and its ``team``, set by staff or that team's admins): all spend
      booked to the project (generations of the project), any member.

    ``period``: day, week (Monday first), month, or none (a lifetime cap), aligned in the
    team's time zone (the member's primary team's for an own budget; UTC without a team).
    ``hard``: refuse a submit that would exceed it; soft: warn and allow. ``created_by``: who
    set it (a team admin may replace only member-in-team budgets set by their team's admins).
    """

    class Period(models.TextChoices):
        DAY = "day", "per day"
        WEEK = "week", "per week"
        MONTH = "month", "per month"
        NONE = "none", "no period (lifetime)"

    class Layer(models.TextChoices):
        MEMBER = "member", "member's own"
        MEMBER_IN_TEAM = "member_in_team", "member in team"
        TEAM = "team", "team"
        PROJECT = "project", "project"
        DEFAULT = "default", "site-wide default"

    #: Periods from shortest to longest (for "fits inside": same period or shorter).
    PERIOD_ORDER = ("day", "week", "month", "none")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="budgets"
    )
    team = models.ForeignKey("accounts.Team", null=True, blank=True, on_delete=models.CASCADE, related_name="budgets")
    project = models.ForeignKey(
        "teamwork.Project", null=True, blank=True, on_delete=models.CASCADE, related_name="budgets",
        help_text="A project budget: all spend booked to this project, any member (team = the project's team).",
    )
    amount = _money_field(help_text="USD per period.")
    period = models.CharField(max_length=10, choices=Period.choices, default=Period.MONTH)
    hard = models.BooleanField(default=True, help_text="Hard: refuse submits beyond it. Soft: warn and allow.")
    allowed_providers = models.JSONField(
        default=list, blank=True, help_text='Provider kinds this budget may buy from, e.g. ["apixo", "piapi"]; empty: any.'
    )
    allowed_models = models.JSONField(default=list, blank=True, help_text='Model ids allowed, e.g. ["hailuo-2-3"]; empty: any.')
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+",
        help_text="Who set this budget (staff in the admin, or a team admin on the team's budget page).",
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False) | Q(team__isnull=False),
                name="budget_user_or_team",
            ),
            models.CheckConstraint(condition=Q(amount__gte=0), name="budget_amount_nonnegative"),
            models.CheckConstraint(
                condition=Q(project__isnull=True) | Q(user__isnull=True, team__isnull=False),
                name="budget_project_is_teams_not_users",
            ),
        ]

    #: Set on the unsaved Budget that stands for the site-wide default (see ``SpendingPolicy``).
    is_default = False

    def __str__(self) -> str:
        return f"{self.owner_label}: {self.amount} USD {self.get_period_display()}"

    def clean(self):
        if not self.user_id and not self.team_id and not self.project_id:
            raise ValidationError("A budget belongs to a user, a team, a member in a team, or a project.")
        if self.project_id:
            if self.user_id:
                raise ValidationError("A project budget caps the whole project: leave the user empty.")
            if self.team_id and self.team_id != self.project.team_id:
                raise ValidationError({"project": "This project belongs to another team."})
            self.team_id = self.project.team_id

    @property
    def layer(self) -> str:
        """The :class:`Budget.Layer` this budget is."""
        if self.is_default:
            return self.Layer.DEFAULT
        if self.project_id:
            return self.Layer.PROJECT
        if self.user_id and self.team_id:
            return self.Layer.MEMBER_IN_TEAM
        return self.Layer.MEMBER if self.user_id else self.Layer.TEAM

    def get_layer_display(self) -> str:
        return self.Layer(self.layer).label

    @property
    def owner_label(self) -> str:
        layer = self.layer
        if layer == self.Layer.DEFAULT:
            return f"{self.user} (site-wide default)"
        if layer == self.Layer.PROJECT:
            return f"project {self.project.name} ({self.team})"
        if layer == self.Layer.MEMBER_IN_TEAM:
            return f"{self.user} in {self.team}"
        return str(self.user or self.team)

    @property
    def scope_label(self) -> str:
        """Who the budget is, for a member's eyes: "your", "your team X", "team X's", "the default"."""
        layer = self.layer
        if layer == self.Layer.DEFAULT:
            return "the site-wide default"
        if layer == self.Layer.PROJECT:
            return f"project {self.project.name}'s"
        if layer == self.Layer.MEMBER_IN_TEAM:
            return f"your in-team {self.team.name}"
        return "your" if self.user_id else f"team {self.team.name}'s"

    def allows(self, *, provider_kind: str, model: str) -> bool:
        """False when an allow-list excludes this provider or model."""
        if self.allowed_providers and provider_kind not in self.allowed_providers:
            return False
        return not (self.allowed_models and model not in self.allowed_models)


def default_thresholds() -> list[int]:
    """Alert thresholds of a fresh policy: percentages of a budget."""
    return [50, 80, 100]


class SpendingPolicy(models.Model):
    """The site-wide spending policy (one row, ``pk=1``; edit it in Django admin).

    ``default_amount`` USD per ``default_period`` (hard or soft) is the budget of every member
    who has no active budget of their own (a member-in-team or team budget does not count):
    it caps all their spend. Empty ``default_amount``: no default (members without a budget
    are unlimited). ``alert_thresholds``: percentages of any budget at which the member and the
    budget's owner are alerted, once per budget per period. A fresh install ships $50 per month,
    hard, alerts at 50/80/100 (migration ``billing.0008``).
    """

    default_amount = _money_field(null=True, blank=True, help_text="USD per period; empty: no default budget.")
    default_period = models.CharField(max_length=10, choices=Budget.Period.choices, default=Budget.Period.MONTH)
    default_hard = models.BooleanField(default=True, help_text="Hard: refuse submits beyond it.")
    alert_thresholds = models.JSONField(
        default=default_thresholds, blank=True, help_text="Percentages of a budget that send an alert, e.g. [50, 80, 100]."
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = verbose_name_plural = "spending policy"
        constraints = [
            models.CheckConstraint(condition=Q(pk=1), name="spending_policy_singleton"),
            models.CheckConstraint(
                condition=Q(default_amount__isnull=True) | Q(default_amount__gte=0), name="spending_policy_amount_nonnegative"
            ),
        ]

    def __str__(self) -> str:
        if self.default_amount is None:
            return "Spending policy: no default budget"
        return f"Spending policy: {self.default_amount} USD {self.get_default_period_display()} by default"

    def save(self, *args, **kwargs):
        self.pk = 1
        self.updated_at = timezone.now()
        super().save(*args, **kwargs)

    def clean(self):
        thresholds = self.alert_thresholds or []
        if not isinstance(thresholds, list) or not all(isinstance(t, int) and 0 < t <= 1000 for t in thresholds):
            raise ValidationError({"alert_thresholds": "A list of whole percentages, e.g. [50, 80, 100]."})

    @classmethod
    def current(cls) -> SpendingPolicy:
        """The policy row (created with no default budget if a database lacks it)."""
        policy = cls.objects.filter(pk=1).first()
        return policy if policy is not None else cls(pk=1, default_amount=None)

    def thresholds(self) -> list[int]:
        """The alert thresholds, sorted, as ints."""
        return sorted({int(t) for t in (self.alert_thresholds or [])})


class UnlimitedGrant(models.Model):
    """Staff exempt one user or one team from the site-wide default budget.

    A granted user is not capped by the default; a granted team's spend is not either (for
    submits booked to it). Explicit budgets (own, member-in-team, team) still apply. Only
    staff can grant (Django admin); ``granted_by`` and ``reason`` record it.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="unlimited_grant"
    )
    team = models.OneToOneField("accounts.Team", null=True, blank=True, on_delete=models.CASCADE, related_name="unlimited_grant")
    reason = models.TextField()
    granted_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=(Q(user__isnull=False) & Q(team__isnull=True)) | (Q(user__isnull=True) & Q(team__isnull=False)),
                name="unlimited_grant_user_xor_team",
            ),
            models.CheckConstraint(condition=~Q(reason=""), name="unlimited_grant_has_reason"),
        ]

    def __str__(self) -> str:
        return f"Unlimited: {self.user or self.team}"

    def clean(self):
        if bool(self.user_id) == bool(self.team_id):
            raise ValidationError("An unlimited grant is for exactly one user or one team.")


class BudgetAlert(models.Model):
    """A threshold alert sent: at most one per budget (``scope_key``), period and threshold.

    ``scope_key``: ``budget:<id>`` for a budget row, ``default:user:<id>`` for the site-wide
    default of one member; ``period_key``: the period's start (ISO, UTC) or ``lifetime``;
    ``threshold``: percent. ``committed``/``amount`` (USD) are what was seen when sent.
    """

    scope_key = models.CharField(max_length=60)
    period_key = models.CharField(max_length=40)
    threshold = models.PositiveIntegerField()
    budget = models.ForeignKey(Budget, null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="budget_alerts")
    team = models.ForeignKey("accounts.Team", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    committed = _money_field()
    amount = _money_field()
    recipients = models.JSONField(default=list)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(fields=["scope_key", "period_key", "threshold"], name="budget_alert_once_per_period"),
        ]

    def __str__(self) -> str:
        return f"{self.threshold}% of {self.scope_key} ({self.period_key})"


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


from billing.usage_models import BudgetUsage, ConfigVersion  # noqa: E402,F401  (running totals; cache version)
