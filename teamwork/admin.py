from django.contrib import admin

from teamwork.models import NotificationPreference, NotificationSent, Project, PromptTemplate, ShareLink, Tag


@admin.register(Project)
class ProjectAdmin(admin.ModelAdmin):
    list_display = ["name", "team", "archived", "created_at"]
    list_filter = ["archived", "team"]
    search_fields = ["name"]


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ["name", "team"]
    list_filter = ["team"]
    search_fields = ["name"]
    raw_id_fields = ["generations"]


@admin.register(ShareLink)
class ShareLinkAdmin(admin.ModelAdmin):
    """Share links: the token is never stored, only its SHA-256; admins may revoke (set revoked_at)."""

    list_display = ["__str__", "team", "created_by", "expires_at", "revoked_at", "open_count", "last_opened_at"]
    list_filter = ["team", "revoked_at"]
    readonly_fields = ["token_hash", "open_count", "last_opened_at", "created_at"]
    raw_id_fields = ["generation", "project", "created_by"]


@admin.register(PromptTemplate)
class PromptTemplateAdmin(admin.ModelAdmin):
    """A team's prompt templates (the prompt library); placeholders are ``{name}``."""

    list_display = ["name", "team", "model", "mode", "duration", "resolution", "created_by", "updated_at"]
    list_filter = ["team"]
    search_fields = ["name", "prompt"]
    raw_id_fields = ["created_by", "provider_account"]


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(admin.ModelAdmin):
    list_display = ["user", "email_finished", "email_failed", "email_approval"]
    list_filter = ["email_finished", "email_failed", "email_approval"]
    search_fields = ["user__email"]
    raw_id_fields = ["user"]


@admin.register(NotificationSent)
class NotificationSentAdmin(admin.ModelAdmin):
    """The emails sent to members (read only: a record, one per event)."""

    list_display = ["sent_at", "user", "kind", "subject"]
    list_filter = ["kind"]
    search_fields = ["user__email", "subject", "key"]
    readonly_fields = ["key", "user", "kind", "generation", "subject", "sent_at"]

    def has_add_permission(self, request):
        return False
