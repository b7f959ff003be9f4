"""A team's approval rule, and the requests it held back for a team admin's decision.

The rule: "a submit booked to this team needs a team admin's approval when its quoted price is
above ``price_above`` (USD), or its resolution is one of ``resolutions``, or its model is one
of ``model_ids``"; each condition optional, none set means no approval is ever needed. A
matching submit places its hold and waits in ``pending_approval`` (``generations.models.State``);
its :class:`ApprovalRequest` records why it matched and who decided what, when.
"""

from __future__ import annotations

from decimal import Decimal

from django.conf import settings
from django.db import models
from django.utils import timezone

from billing.money import DECIMAL_PLACES, MAX_DIGITS, format_usd


class ApprovalRule(models.Model):
    """One team's rule. ``resolutions`` are canonical spellings ("1080p", compared without
    case); ``model_ids`` are provider model ids ("hailuo-2-3", "MiniMax-Hailuo-2.3")."""

    team = models.OneToOneField("accounts.Team", on_delete=models.CASCADE, related_name="approval_rule")
    price_above = models.DecimalField(
        max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES, null=True, blank=True,
        help_text="USD. A submit quoted above this needs approval; empty: no price condition.",
    )
    resolutions = models.JSONField(
        default=list, blank=True, help_text='Resolutions that need approval, e.g. ["1080p"]; empty: none.'
    )
    model_ids = models.JSONField(
        default=list, blank=True, help_text='Model ids that need approval, e.g. ["hailuo-2-3"]; empty: none.'
    )
    updated_at = models.DateTimeField(default=timezone.now)
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=models.Q(price_above__isnull=True) | models.Q(price_above__gte=0), name="approval_rule_price_nonnegative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.team}: {self.describe()}"

    @property
    def is_empty(self) -> bool:
        return self.price_above is None and not self.resolutions and not self.model_ids

    def describe(self) -> str:
        """The rule in words ("above $0.40, or 1080p, or model hailuo-2-3"), "never" when empty."""
        parts = []
        if self.price_above is not None:
            parts.append(f"above {format_usd(self.price_above)}")
        if self.resolutions:
            parts.append(" or ".join(self.resolutions))
        if self.model_ids:
            parts.append("model " + " or ".join(self.model_ids))
        return ", or ".join(parts) if parts else "never"

    def reasons_for(self, *, amount: Decimal, resolution: str, model: str) -> list[str]:
        """Why a submit of ``amount`` USD at ``resolution`` with ``model`` needs approval: one
        sentence per matching condition; [] when none matches (it is submitted at once).

        Price: strictly above ``price_above`` (a quote equal to it passes). Resolution: one
        of ``resolutions``, case-insensitive. Model: one of ``model_ids``, exact id.
        """
        out = []
        if self.price_above is not None and amount > self.price_above:
            out.append(f"price {format_usd(amount)} is above {format_usd(self.price_above)}")
        if resolution.lower() in {r.lower() for r in self.resolutions or []}:
            out.append(f"resolution {resolution}")
        if model in set(self.model_ids or []):
            out.append(f"model {model}")
        return out


class ApprovalRequest(models.Model):
    """A submit held back by its team's rule: why (``reasons``), until when (``expires_at``,
    ``HAILUO_APPROVAL_TTL`` after the request), and the decision. The generation's own state
    (``pending_approval`` → ``queued`` | ``rejected`` | ``canceled``) is the authority;
    ``decision`` stays empty when the member canceled it themselves."""

    class Decision(models.TextChoices):
        NONE = "", "—"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        EXPIRED = "expired", "Expired (nobody decided in time)"

    generation = models.OneToOneField("generations.Generation", on_delete=models.CASCADE, related_name="approval_request")
    team = models.ForeignKey("accounts.Team", on_delete=models.PROTECT, related_name="approval_requests")
    reasons = models.JSONField(default=list, blank=True, help_text="Which conditions of the rule matched.")
    requested_at = models.DateTimeField(default=timezone.now, db_index=True)
    expires_at = models.DateTimeField(db_index=True)
    decision = models.CharField(max_length=10, choices=Decision.choices, blank=True, default="")
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="approval_decisions"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    reason = models.TextField(blank=True, help_text="The rejection's reason, shown to the member.")

    class Meta:
        ordering = ["-requested_at", "-id"]

    def __str__(self) -> str:
        return f"approval of {self.generation_id} ({self.get_decision_display()})"
