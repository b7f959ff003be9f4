"""Outbound webhooks (Standard Webhooks): endpoints, signed deliveries with backoff, the attempt log.

:func:`emit` is the entry point for event sources other than the generation lifecycle
(which is observed through ``GenerationEvent`` rows, see ``webhooks.signals``).
"""


def emit(event_type: str, *, user=None, team=None, payload: dict, generation=None):
    """Send ``event_type`` with ``payload`` (the message's ``data``) to the subscribed endpoints
    of ``user`` and ``team``; see :func:`webhooks.services.emit` (deliveries are created in the
    caller's transaction and sent after it commits; raises ``ValueError`` for an unknown type)."""
    from webhooks.services import emit as _emit

    return _emit(event_type, user=user, team=team, payload=payload, generation=generation)
