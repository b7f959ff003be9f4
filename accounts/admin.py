from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.utils import timezone

from accounts.models import ApiToken, Membership, Team, User
from billing.models import Budget


class BudgetInline(admin.TabularInline):
    """Budgets edited where they belong: on the user or the team."""

    model = Budget
    extra = 0
    fields = ["amount", "period", "hard", "allowed_providers", "allowed_models", "active"]


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "first_name", "last_name", "is_staff", "is_active"]
    search_fields = ["email", "first_name", "last_name"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)
    inlines = [MembershipInline, BudgetInline]


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "time_zone", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline, BudgetInline]


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Every member's tokens: staff see them all and revoke them (the action or the field)."""

    list_display = ["user", "name", "scope", "last4", "created_at", "expires_at", "last_used_at", "revoked_at"]
    readonly_fields = ["user", "token_hash", "last4", "scope", "created_at", "last_used_at"]
    list_filter = ["scope", ("revoked_at", admin.EmptyFieldListFilter), ("expires_at", admin.EmptyFieldListFilter)]
    search_fields = ["user__email", "name", "last4"]
    list_select_related = ["user"]
    actions = ["revoke"]

    def has_add_permission(self, request) -> bool:
        # A raw token must be shown exactly once: the studio's token page, /api/v1/tokens
        # or `manage.py create_api_token EMAIL`.
        return False

    @admin.action(description="Revoke selected tokens")
    def revoke(self, request, queryset):
        count = queryset.filter(revoked_at__isnull=True).update(revoked_at=timezone.now())
        self.message_user(request, f"Revoked {count} token(s).")
