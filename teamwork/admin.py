from django.contrib import admin

from teamwork.models import Project, ShareLink, Tag


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
