"""Logging filters.

``QuietClientErrors``: Django logs a refused request (403 Forbidden, 404 Not Found) on
``django.request`` with the exception's traceback. Those refusals are expected (a member
opening /reports/), so the one warning line is kept and the traceback dropped.
"""

from __future__ import annotations

import logging


class QuietClientErrors(logging.Filter):
    """Drop ``exc_info`` from ``django.request`` records of 4xx responses (the line stays)."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if isinstance(status, int) and 400 <= status < 500:
            record.exc_info = None
            record.exc_text = None
        return True
