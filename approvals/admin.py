from django.contrib import admin

from approvals.forms import ApprovalRuleAdminForm
from approvals.models import ApprovalRequest, ApprovalRule


@admin.register(ApprovalRule)
class ApprovalRuleAdmin(admin.ModelAdmin):
    """Each team's rule (team admins edit their own at /approvals/rules/<team id>/)."""

    form = ApprovalRuleAdminForm
    list_display = ["team", "price_above", "resolutions", "model_ids", "updated_by", "updated_at"]
    search_fields = ["team__name"]

    def save_model(self, request, obj, form, change):
        from django.utils import timezone

        obj.updated_by, obj.updated_at = request.user, timezone.now()
        super().save_model(request, obj, form, change)


@admin.register(ApprovalRequest)
class ApprovalRequestAdmin(admin.ModelAdmin):
    """The record of every request and its decision. Read-only: decide in the approvals queue
    (/approvals/) or the API, which move the generation and the ledger together."""

    list_display = ["generation", "team", "requested_at", "expires_at", "decision", "decided_by", "decided_at", "reason"]
    list_filter = ["decision", "team"]
    search_fields = ["generation__prompt", "generation__user__email", "reason"]
    readonly_fields = [f.name for f in ApprovalRequest._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
