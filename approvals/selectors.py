"""Reads for approvals: which requests a user may decide, and how many wait."""

from __future__ import annotations

from django.db.models import QuerySet

from accounts.models import Membership
from approvals.models import ApprovalRequest
from generations.models import Generation, State


def admin_team_ids(user) -> list[int]:
    """The ids of the teams ``user`` is a team admin of (one query)."""
    return list(Membership.objects.filter(user=user, role=Membership.Role.TEAM_ADMIN).values_list("team_id", flat=True))


def pending_for(*, user) -> QuerySet[Generation]:
    """Generations waiting for approval that ``user`` may decide, oldest first (who waited
    longest comes first): those of the teams they are an admin of; every team's for staff.
    Member, provider account, team and the :class:`ApprovalRequest` are loaded with them."""
    rows = Generation.objects.filter(state=State.PENDING_APPROVAL)
    if not user.is_staff:
        rows = rows.filter(team_id__in=admin_team_ids(user))
    return rows.select_related("user", "provider_account", "team", "approval_request").order_by("created_at", "id")


def pending_count(*, user) -> int:
    """How many requests wait for ``user``'s decision (the Approvals badge); one query."""
    if not user.is_staff and not getattr(user, "admin_teams", None):
        return 0
    return pending_for(user=user).count()


def recent_decisions(*, user, limit: int = 20) -> QuerySet[ApprovalRequest]:
    """The latest decided requests of ``user``'s admin teams (every team's for staff), newest first."""
    rows = ApprovalRequest.objects.exclude(decision="")
    if not user.is_staff:
        rows = rows.filter(team_id__in=admin_team_ids(user))
    return rows.select_related("generation__user", "decided_by", "team").order_by("-decided_at", "-id")[:limit]
