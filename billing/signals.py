"""Keep the budgets' running totals aligned when a zone moves period boundaries (``billing.usage``).

A team's ``time_zone`` aligns the periods of its team, member-in-team and project layers, and
of the ``user:`` layer of every member whose primary (first) team it is; a member's first
membership decides their ``user:`` layer's zone. When either changes, the affected totals are
recomputed from the ledger once the change commits (:func:`billing.usage.usage_rebuild`).
"""

from __future__ import annotations

from django.db import transaction
from django.db.models.signals import post_delete, post_save, pre_save
from django.dispatch import receiver

from accounts.models import Membership, Team


def _rebuild_later(layer_keys: list[str] | None) -> None:
    from billing.usage import usage_rebuild

    transaction.on_commit(lambda: usage_rebuild(layer_keys=layer_keys))


@receiver(pre_save, sender=Team, dispatch_uid="billing_usage_team_zone_before")
def _remember_zone(sender, instance: Team, **kwargs):
    instance._zone_before = Team.objects.filter(pk=instance.pk).values_list("time_zone", flat=True).first() if instance.pk else None


@receiver(post_save, sender=Team, dispatch_uid="billing_usage_team_zone_after")
def _team_zone_changed(sender, instance: Team, created: bool, **kwargs):
    before = getattr(instance, "_zone_before", None)
    if created or before is None or before == instance.time_zone:
        return
    from billing.models import LedgerEntry

    if LedgerEntry.objects.filter(team=instance).exists() or Membership.objects.filter(team=instance).exists():
        _rebuild_later(None)  # rare (an admin's edit): every layer the zone may align


def _user_layer_changed(membership: Membership) -> None:
    from billing.models import LedgerEntry

    if LedgerEntry.objects.filter(user_id=membership.user_id).exists():
        _rebuild_later([f"user:{membership.user_id}"])


@receiver(post_save, sender=Membership, dispatch_uid="billing_usage_membership_added")
def _membership_added(sender, instance: Membership, created: bool, **kwargs):
    first = Membership.objects.filter(user_id=instance.user_id).order_by("id").values_list("pk", flat=True).first()
    if created and first == instance.pk:  # a first team: the member's zone may change
        _user_layer_changed(instance)


@receiver(post_delete, sender=Membership, dispatch_uid="billing_usage_membership_removed")
def _membership_removed(sender, instance: Membership, **kwargs):
    _user_layer_changed(instance)
