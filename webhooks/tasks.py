"""django-q2 task functions for webhooks: thin wrappers over ``webhooks.services``."""

from webhooks import services


def deliver(delivery_id: str, attempt: int | None = None, manual: bool = False) -> str:
    """Make one attempt of a delivery (see ``services.delivery_attempt``); returns its status after."""
    return services.delivery_attempt(delivery_id=delivery_id, attempt=attempt, manual=manual)


def deliveries_sweep() -> dict:
    """Scheduled every minute (``manage.py setup_schedules``): hand due retries to the workers."""
    return services.deliveries_sweep()
