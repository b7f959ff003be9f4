from django.contrib import admin

from billing.models import Budget, LedgerEntry, PriceRule


@admin.register(PriceRule)
class PriceRuleAdmin(admin.ModelAdmin):
    list_display = ["provider_kind", "model", "mode", "resolution", "duration", "unit", "unit_price", "valid_from", "valid_to"]
    list_filter = ["provider_kind", "model", "unit"]
    search_fields = ["model", "mode", "source"]


@admin.register(LedgerEntry)
class LedgerEntryAdmin(admin.ModelAdmin):
    """Read-only: the ledger is append-only; corrections are adjustment entries."""

    list_display = ["created_at", "kind", "amount", "user", "team", "provider_account", "generation"]
    list_filter = ["kind", "team", "provider_account"]
    search_fields = ["user__email", "reason"]
    date_hierarchy = "created_at"

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False

    def has_add_permission(self, request) -> bool:
        return False


@admin.register(Budget)
class BudgetAdmin(admin.ModelAdmin):
    list_display = ["__str__", "user", "team", "amount", "period", "hard", "active"]
    list_filter = ["period", "hard", "active"]
