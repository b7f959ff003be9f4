"""The lifecycle → webhooks seam: a ``post_save`` receiver on ``GenerationEvent``.

The lifecycle writes a ``GenerationEvent`` row for every state change, in the transaction
of the change; this receiver creates the webhook deliveries in that same transaction (in a
savepoint: a webhook problem never undoes a state change) and they are handed to the workers
when it commits.
"""

import logging

from django.db import transaction
from django.db.models.signals import post_save
from django.dispatch import receiver

from generations.models import GenerationEvent

log = logging.getLogger(__name__)


@receiver(post_save, sender=GenerationEvent, dispatch_uid="webhooks.generation_event")
def generation_event_saved(sender, instance: GenerationEvent, created: bool, raw: bool = False, **kwargs) -> None:
    """Create webhook deliveries for a new final/attention state event (``webhooks.services.on_generation_event``)."""
    if not created or raw:
        return
    from webhooks.services import GENERATION_EVENTS, on_generation_event

    if instance.state and instance.state not in GENERATION_EVENTS:
        return  # a step with nothing to deliver (e.g. queued): no savepoint round trips on every submit
    try:
        with transaction.atomic():
            on_generation_event(instance)
    except Exception:  # never let a webhook problem fail the lifecycle's transaction
        log.exception("webhooks: could not create deliveries for generation event %s", instance.pk)
