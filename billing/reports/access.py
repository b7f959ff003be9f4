"""Who may read the reports: superusers, staff, and users with a ``finance`` membership in
any team (finance sees every team)."""

from __future__ import annotations


def can_view_reports(user) -> bool:
    """True for an active superuser or staff member, or a user with a finance membership (any team)."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if user.is_superuser or user.is_staff:
        return True
    from accounts.models import Membership

    return Membership.objects.filter(user=user, role=Membership.Role.FINANCE).exists()

