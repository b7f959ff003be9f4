"""What a member may do to one generation after it was made: retry, cancel, hide.

One place for the rules the studio (``generations.views``) and the API
(``generations.api``) share:

- :func:`may_act_on`: who may retry or cancel: the generation's owner and the admins of
  its team (staff too); teammates may only look.
- :func:`generation_retry`: a new generation with the same parameters, from a failed or
  expired one (budgets apply as usual).
- :func:`generation_cancel`: ``services.generation_cancel`` (locally before the submit, at
  the provider where it documents a cancel) after the permission check.
- :func:`generation_set_hidden`: hide a generation from the gallery or show it again
  (``hidden_at``); nothing else changes, the ledger least of all.
"""

from __future__ import annotations

from django.utils import timezone

from accounts.models import Membership
from config.errors import Forbidden
from generations import services
from generations.models import Generation, State

#: States a member may retry from (a new generation with the same parameters).
RETRYABLE_STATES = frozenset({State.FAILED, State.EXPIRED})


def may_act_on(*, user, generation: Generation) -> bool:
    """True when ``user`` may retry, cancel or hide ``generation``: its owner, an admin of its team
    (``Membership.Role.TEAM_ADMIN``), or staff. One query at most."""
    if generation.user_id == user.pk or user.is_staff:
        return True
    if generation.team_id is None:
        return False
    return Membership.objects.filter(user=user, team_id=generation.team_id, role=Membership.Role.TEAM_ADMIN).exists()


def require_may_act_on(*, user, generation: Generation) -> None:
    """Raise :class:`Forbidden` (403 ``forbidden``) unless :func:`may_act_on`."""
    if not may_act_on(user=user, generation=generation):
        raise Forbidden("Only the generation's owner or an admin of its team may do this.")


def can_cancel(generation: Generation) -> bool:
    """Whether a cancel can be tried now: queued (a local cancel), or in flight where the provider
    documents a cancel for the task's current provider state (``Generation.cancel_offered``)."""
    return generation.cancel_offered


def generation_retry(*, user, generation: Generation, idempotency_key: str | None = None) -> Generation:
    """Create a new generation with ``generation``'s parameters, booked to ``user``.

    Raises :class:`Forbidden` (see :func:`may_act_on`), ``services.GenerationRefused``
    ``cannot_retry`` (409) when the generation is not failed or expired, and any refusal of
    ``services.generation_create`` (budget, price, validation).
    """
    require_may_act_on(user=user, generation=generation)
    if generation.state not in RETRYABLE_STATES:
        raise services.GenerationRefused(
            "cannot_retry", f"A {generation.get_state_display().lower()} generation cannot be retried.", status=409
        )
    params = services.CreateParams(
        provider_account_id=generation.provider_account_id, model=generation.model, mode=generation.mode,
        prompt=generation.prompt, duration=generation.duration, resolution=generation.resolution,
        image_url=generation.image_url, options=dict(generation.options or {}),
    )
    return services.generation_create(user=user, params=params, idempotency_key=idempotency_key)


def generation_cancel(*, user, generation: Generation) -> str:
    """Cancel ``generation``; returns its resulting state.

    Raises :class:`Forbidden` (see :func:`may_act_on`) and ``services.GenerationRefused``
    ``cannot_cancel`` (409) when the state or the provider allows no cancel, or the provider
    refused it.
    """
    require_may_act_on(user=user, generation=generation)
    try:
        return services.generation_cancel(generation_id=generation.pk, user=user)
    except services.GenerationRefused as refused:
        if refused.code == "cannot_cancel":
            refused.status = 409
        raise


def generation_set_hidden(*, user, generation: Generation, hidden: bool) -> Generation:
    """Hide ``generation`` from the gallery (``hidden=True``: ``hidden_at`` = now, unless it is
    hidden already) or show it again (``hidden=False``: ``hidden_at`` = None); returns it.

    Only ``hidden_at`` is written (one UPDATE): the generation, its video and its ledger
    entries stay as they are, so reports and budgets are unchanged. Any state may be hidden.
    Raises :class:`Forbidden` (see :func:`may_act_on`).
    """
    require_may_act_on(user=user, generation=generation)
    if hidden and generation.hidden_at is None:
        generation.hidden_at = timezone.now()
    elif not hidden:
        generation.hidden_at = None
    Generation.objects.filter(pk=generation.pk).update(hidden_at=generation.hidden_at)
    return generation
