from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.utils import timezone

from accounts.models import ApiToken, Membership, Team, User
from billing.models import Budget


class BudgetInline(admin.TabularInline):
    """Budgets edited where they belong: on the user (own, or member-in-team with a team) or the team.

    Staff set them here; ``created_by`` records who (the inline's formset sets it)."""

    model = Budget
    extra = 0
    fields = ["team", "amount", "period", "hard", "allowed_providers", "allowed_models", "active", "created_by"]
    readonly_fields = ["created_by"]
    fk_name = "user"


class TeamBudgetInline(BudgetInline):
    """On a team: its team budget, its members' in-team budgets and its projects' budgets."""

    fields = ["user", "project", "amount", "period", "hard", "allowed_providers", "allowed_models", "active", "created_by"]
    fk_name = "team"


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    ordering = ["email"]
    list_display = ["email", "first_name", "last_name", "is_staff", "is_active", "effective_budgets", "unlimited"]
    search_fields = ["email", "first_name", "last_name"]
    fieldsets = (
        (None, {"fields": ("email", "password")}),
        ("Personal info", {"fields": ("first_name", "last_name")}),
        ("Permissions", {"fields": ("is_active", "is_staff", "is_superuser", "groups", "user_permissions")}),
        ("Important dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)
    inlines = [MembershipInline, BudgetInline]

    @admin.display(description="Effective budgets")
    def effective_budgets(self, obj) -> str:
        """Every layer that caps this person (own, in-team, team, default), "; "-separated."""
        from billing.selectors import effective_budget_labels

        return "; ".join(effective_budget_labels(user=obj)) or "none (unlimited)"

    @admin.display(description="Unlimited grant", boolean=True)
    def unlimited(self, obj) -> bool:
        from billing.models import UnlimitedGrant

        return UnlimitedGrant.objects.filter(user=obj).exists()

    def save_formset(self, request, form, formset, change):
        _save_budgets_with_author(request, formset)


def _save_budgets_with_author(request, formset):
    """Save an inline formset; new budgets get ``created_by`` = the staff member saving."""
    instances = formset.save(commit=False)
    for obj in formset.deleted_objects:
        obj.delete()
    for instance in instances:
        if isinstance(instance, Budget) and instance.pk is None:
            instance.created_by = request.user
        instance.save()
    formset.save_m2m()


@admin.register(Team)
class TeamAdmin(admin.ModelAdmin):
    list_display = ["name", "time_zone", "created_at"]
    search_fields = ["name"]
    inlines = [MembershipInline, TeamBudgetInline]

    def save_formset(self, request, form, formset, change):
        _save_budgets_with_author(request, formset)


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
