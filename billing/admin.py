from decimal import Decimal

from django import forms
from django.contrib import admin, messages
from django.utils import timezone

from billing.models import Budget, BudgetAlert, LedgerEntry, PriceRule, SpendingPolicy, UnlimitedGrant
from billing.services import ledger_adjust, ledger_credit, price_rule_revise


class PriceRuleForm(forms.ModelForm):
    """New rules are typed in full; an existing rule is revised: a new version supersedes it."""

    new_unit_price = forms.DecimalField(
        required=False, max_digits=18, decimal_places=6, label="New unit price (USD)",
        help_text="Revising writes a new version from 'New version valid from'; this version is closed then, not edited.",
    )
    new_valid_from = forms.DateTimeField(required=False, label="New version valid from", help_text="Default: now.")
    new_source = forms.CharField(required=False, label="Source of the new price", widget=forms.Textarea(attrs={"rows": 2}))

    class Meta:
        model = PriceRule
        fields = ["provider_kind", "model", "mode", "resolution", "duration", "unit", "unit_price", "valid_from", "valid_to", "source"]


@admin.register(PriceRule)
class PriceRuleAdmin(admin.ModelAdmin):
    """Price rules with their history; a change is a new version (never an edit in place)."""

    form = PriceRuleForm
    list_display = ["provider_kind", "model", "mode", "resolution", "duration", "unit", "unit_price", "valid_from", "valid_to", "current"]
    list_filter = ["provider_kind", "model", "unit"]
    search_fields = ["model", "mode", "source"]
    readonly_fields = ["supersedes", "created_by", "created_at"]

    @admin.display(boolean=True)
    def current(self, obj):
        return obj.is_current

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return self.readonly_fields
        return [*PriceRule.PRICE_FIELDS, "valid_to", "source", *self.readonly_fields]

    def get_fields(self, request, obj=None):
        base = ["provider_kind", "model", "mode", "resolution", "duration", "unit", "unit_price", "valid_from", "valid_to", "source"]
        if obj is None:
            return base
        return [*base, "supersedes", "created_by", "created_at", "new_unit_price", "new_valid_from", "new_source"]

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
            super().save_model(request, obj, form, change)
            return
        new_price = form.cleaned_data.get("new_unit_price")
        if new_price is None:
            return
        try:
            revised = price_rule_revise(
                rule=obj, unit_price=Decimal(new_price), valid_from=form.cleaned_data.get("new_valid_from") or timezone.now(),
                source=form.cleaned_data.get("new_source") or "", created_by=request.user,
            )
        except ValueError as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, f"New version written: {revised}", messages.SUCCESS)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class LedgerEntryForm(forms.ModelForm):
    """Admins add only credits and adjustments; the reason is required and the author recorded."""

    kind = forms.ChoiceField(choices=[("adjustment", "Adjustment (signed)"), ("credit", "Credit (gives money back)")])
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}))

    class Meta:
        model = LedgerEntry
        fields = ["kind", "amount", "user", "team", "generation", "reason"]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin):
    """Read-only once written (append-only); new entries are credits or adjustments with a reason."""

    form = LedgerEntryForm
    list_display = ["created_at", "kind", "amount", "user", "team", "provider_account", "generation", "created_by"]
    list_filter = ["kind", "team", "provider_account"]
    search_fields = ["user__email", "reason"]
    date_hierarchy = "created_at"
    raw_id_fields = ["generation"]

    def get_readonly_fields(self, request, obj=None):
        if obj is None:
            return []
        return [f.name for f in LedgerEntry._meta.fields]

    def has_change_permission(self, request, obj=None) -> bool:
        return obj is None and super().has_change_permission(request, obj)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def save_model(self, request, obj, form, change):
        data = form.cleaned_data
        writer = ledger_credit if data["kind"] == "credit" else ledger_adjust
        entry = writer(
            user=data["user"], team=data.get("team"), amount=data["amount"], reason=data["reason"],
            created_by=request.user, generation=data.get("generation"),
        )
        obj.pk, obj.created_at = entry.pk, entry.created_at  # admin links and logs the entry written by the service
        obj._state.adding = False


def provider_kind_choices() -> list[tuple[str, str]]:
    """(kind, label) of every provider in ``providers.registry``."""
    from providers.registry import kind_choices

    return kind_choices()


def model_id_choices() -> list[tuple[str, str]]:
    """(model id, "id — Human name (providers)") of every model id in ``providers.registry``,
    one entry per id (an id two providers share lists both), sorted by human name then id."""
    from providers.registry import ADAPTERS

    seen: dict[str, tuple[str, list[str]]] = {}
    for cls in ADAPTERS.values():
        for model in cls.capabilities.models:
            label, providers = seen.setdefault(model.id, (model.label, []))
            if cls.label not in providers:
                providers.append(cls.label)
    ordered = sorted(seen.items(), key=lambda item: (item[1][0].lower(), item[0]))
    return [(mid, f"{mid} — {label} ({', '.join(providers)})") for mid, (label, providers) in ordered]


class BudgetAdminForm(forms.ModelForm):
    """Budget with its allowed providers and models picked from lists (the registry's provider
    kinds and model ids) instead of typed as JSON. Nothing picked: any. A value saved earlier
    that the registry no longer knows stays listed, so saving does not drop it silently."""

    allowed_providers = forms.MultipleChoiceField(
        required=False, widget=forms.SelectMultiple(attrs={"size": 6}),
        help_text="Provider kinds this budget may buy from; none selected: any. Ctrl/⌘-click to pick several.",
    )
    allowed_models = forms.MultipleChoiceField(
        required=False, widget=forms.SelectMultiple(attrs={"size": 12}),
        help_text="Model ids allowed; none selected: any. Ctrl/⌘-click to pick several.",
    )

    class Meta:
        model = Budget
        fields = ["user", "team", "project", "amount", "period", "hard", "allowed_providers", "allowed_models", "active", "created_at"]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, choices in (("allowed_providers", provider_kind_choices()), ("allowed_models", model_id_choices())):
            known = {value for value, _ in choices}
            saved = [v for v in (getattr(self.instance, name, None) or []) if v not in known]
            self.fields[name].choices = choices + [(v, f"{v} (unknown now)") for v in saved]

    def clean_allowed_providers(self) -> list[str]:
        return list(self.cleaned_data.get("allowed_providers") or [])

    def clean_allowed_models(self) -> list[str]:
        return list(self.cleaned_data.get("allowed_models") or [])


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    """Every budget layer; staff who add one are recorded as its author."""

    form = BudgetAdminForm
    list_display = ["__str__", "layer_name", "user", "team", "project", "amount", "period", "hard", "active", "created_by"]
    list_filter = ["period", "hard", "active"]
    readonly_fields = ["created_by", "created_at"]
    search_fields = ["user__email", "team__name", "project__name"]

    @admin.display(description="Layer")
    def layer_name(self, obj) -> str:
        return Budget.Layer(obj.layer).label

    def save_model(self, request, obj, form, change):
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(SpendingPolicy)
class SpendingPolicyAdmin(admin.ModelAdmin):
    """The one site-wide policy: default budget and alert thresholds (never added twice or deleted)."""

    list_display = ["__str__", "default_amount", "default_period", "default_hard", "alert_thresholds", "updated_at"]
    readonly_fields = ["updated_at"]

    def has_add_permission(self, request) -> bool:
        return not SpendingPolicy.objects.exists() and super().has_add_permission(request)

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


@admin.register(UnlimitedGrant)
class UnlimitedGrantAdmin(admin.ModelAdmin):
    """Staff exempt a user or a team from the default budget; the grant records who and why."""

    list_display = ["__str__", "user", "team", "reason", "granted_by", "created_at"]
    readonly_fields = ["granted_by", "created_at"]
    search_fields = ["user__email", "team__name", "reason"]

    def has_module_permission(self, request) -> bool:
        return request.user.is_active and request.user.is_staff and super().has_module_permission(request)

    def save_model(self, request, obj, form, change):
        obj.granted_by = request.user
        super().save_model(request, obj, form, change)


@admin.register(BudgetAlert)
class BudgetAlertAdmin(admin.ModelAdmin):
    """Threshold alerts sent (read-only)."""

    list_display = ["created_at", "threshold", "scope_key", "period_key", "user", "team", "committed", "amount"]
    list_filter = ["threshold"]
    search_fields = ["user__email", "scope_key"]

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
