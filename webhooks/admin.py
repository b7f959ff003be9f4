"""Staff see and manage every endpoint and its delivery log; redeliver from the admin."""

from django.contrib import admin, messages

from config.errors import DomainError
from webhooks import services
from webhooks.models import Attempt, Delivery, Endpoint


@admin.register(Endpoint)
class EndpointAdmin(admin.ModelAdmin):
    list_display = ["url", "user", "team", "enabled", "failing_since", "created_at"]
    list_filter = ["enabled", "team"]
    search_fields = ["url", "description", "user__email", "team__name"]
    readonly_fields = ["secret_last4", "failing_since", "created_at", "updated_at", "created_by"]
    exclude = ["secret_encrypted"]

    def has_add_permission(self, request) -> bool:
        return False  # registered by their owners (studio or API): the secret is shown to them once


class AttemptInline(admin.TabularInline):
    model = Attempt
    extra = 0
    can_delete = False
    readonly_fields = ["number", "manual", "started_at", "status_code", "latency_ms", "ok", "error", "response_excerpt"]

    def has_add_permission(self, request, obj=None) -> bool:
        return False


@admin.register(Delivery)
class DeliveryAdmin(admin.ModelAdmin):
    list_display = ["id", "event_type", "endpoint", "status", "attempts", "next_attempt_at", "created_at"]
    list_filter = ["status", "event_type"]
    search_fields = ["id", "endpoint__url", "generation__id"]
    list_select_related = ["endpoint"]
    readonly_fields = [f.name for f in Delivery._meta.fields]
    inlines = [AttemptInline]
    actions = ["redeliver"]

    def has_add_permission(self, request) -> bool:
        return False

    @admin.action(description="Redeliver now")
    def redeliver(self, request, queryset):
        sent = 0
        for delivery in queryset:
            try:
                services.redeliver(delivery)
                sent += 1
            except DomainError as exc:
                messages.warning(request, f"{delivery.pk}: {exc.message}")
        messages.success(request, f"{sent} redelivery(ies) queued.")
