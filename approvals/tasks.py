"""django-q2 entry points for approvals (schedule ``hailuo:approvals-expire``, hourly)."""

from approvals.services import expire_pending as _expire_pending


def expire_pending() -> int:
    """Reject the requests nobody decided within ``HAILUO_APPROVAL_TTL``; returns how many."""
    return _expire_pending()
