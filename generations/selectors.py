"""Reads about generations, scoped to what a user may see."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from generations.models import Generation


def generations_visible_to(*, user) -> QuerySet[Generation]:
    """Generations ``user`` may see: their own and those of the teams they belong to.

    Another team's generation is simply absent (views answer 404, not 403).
    """
    team_ids = list(user.memberships.values_list("team_id", flat=True))
    return Generation.objects.filter(Q(user=user) | Q(team_id__in=team_ids)).select_related(
        "provider_account", "user"
    )


def generation_for(*, user, generation_id) -> Generation | None:
    """One visible generation, or None."""
    return generations_visible_to(user=user).filter(pk=generation_id).first()
