"""Forms: a team's approval rule (team page and Django admin) and a rejection's reason."""

from __future__ import annotations

from decimal import Decimal

from django import forms

from approvals.models import ApprovalRule
from approvals.services import REASON_MAX
from billing.money import DECIMAL_PLACES, MAX_DIGITS


def resolution_choices() -> list[tuple[str, str]]:
    """Every canonical resolution some provider's model outputs ("720p", "768p", "1080p"), lowest first."""
    from providers.registry import ADAPTERS

    found = {r for cls in ADAPTERS.values() for m in cls.capabilities.models for mode in m.modes for r in mode.resolutions}
    return [(r, r) for r in sorted(found, key=lambda r: int(r.rstrip("p")))]


def model_choices() -> list[tuple[str, str]]:
    """(model id, "id — Human name (providers)"), as the budgets' allow-lists pick them."""
    from billing.admin import model_id_choices

    return model_id_choices()


class ApprovalRuleForm(forms.ModelForm):
    """The rule's three optional conditions, picked from lists (a saved value the registry no
    longer knows stays listed, so saving does not drop it silently)."""

    price_above = forms.DecimalField(
        required=False, min_value=Decimal("0"), max_digits=MAX_DIGITS, decimal_places=DECIMAL_PLACES,
        label="Price above (USD)", help_text="A submit quoted above this needs approval. Empty: any price.",
    )
    resolutions = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, label="Resolutions",
        help_text="A submit at one of these needs approval.",
    )
    model_ids = forms.MultipleChoiceField(
        required=False, widget=forms.SelectMultiple(attrs={"size": 8}), label="Models",
        help_text="A submit with one of these models needs approval. Ctrl/⌘-click to pick several.",
    )

    class Meta:
        model = ApprovalRule
        fields = ["price_above", "resolutions", "model_ids"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, choices in (("resolutions", resolution_choices()), ("model_ids", model_choices())):
            known = {value for value, _ in choices}
            saved = [v for v in (getattr(self.instance, name, None) or []) if v not in known]
            self.fields[name].choices = choices + [(v, f"{v} (unknown now)") for v in saved]

    def clean_resolutions(self) -> list[str]:
        return list(self.cleaned_data.get("resolutions") or [])

    def clean_model_ids(self) -> list[str]:
        return list(self.cleaned_data.get("model_ids") or [])


class ApprovalRuleAdminForm(ApprovalRuleForm):
    """The same form with the team, for Django admin."""

    class Meta(ApprovalRuleForm.Meta):
        fields = ["team", "price_above", "resolutions", "model_ids"]


class RejectForm(forms.Form):
    """A rejection needs a reason: the member sees it on their card."""

    reason = forms.CharField(
        max_length=REASON_MAX, widget=forms.Textarea(attrs={"rows": 2}), label="Reason",
        help_text="The member sees it on the card.",
    )
