"""Logging helpers: JSON lines (``LOG_FORMAT=json``), Sentry (``SENTRY_DSN``) and one line per lifecycle step.

- :class:`JsonFormatter` renders each record as one JSON object per line, with the fields
  an aggregator (Loki, Elasticsearch, CloudWatch) indexes: ``ts`` (ISO 8601 UTC), ``level``,
  ``logger``, ``message``, plus every ``extra=`` field the caller passed, and ``exc`` with
  the traceback when there is one.
- :func:`log_step` logs one lifecycle step of a generation (submit, poll answer, state
  change, archive) with its id, provider, task id and state as fields, so one generation's
  whole story is a filter on ``generation_id``.
- :func:`init_sentry` turns on Sentry's Django integration (the ``sentry`` extra).
"""

from __future__ import annotations

import json
import logging
import traceback
from datetime import UTC, datetime
from typing import Any

#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_ATTRS = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "taskName"}

lifecycle_log = logging.getLogger("hailuo.lifecycle")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts``, ``level``, ``logger``, ``message``, the ``extra`` fields, ``exc``."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRS and not key.startswith("_"):
                data[key] = value
        if record.exc_info:
            data["exc"] = "".join(traceback.format_exception(*record.exc_info)).rstrip()
        return json.dumps(data, default=str, ensure_ascii=False)


def log_step(generation: Any, step: str, *, level: int = logging.INFO, **extra: Any) -> None:
    """Log one lifecycle step of ``generation`` as one line on the ``hailuo.lifecycle`` logger.

    ``generation``: a ``generations.models.Generation`` (or anything with ``pk``,
    ``provider_kind``, ``provider_task_id`` and ``state``). ``step``: a short verb such as
    ``"submitted"``, ``"polled"``, ``"state"``, ``"archived"``. ``extra``: more fields
    (e.g. ``http_status=429``, ``attempt=2``); they must not contain secrets (no API keys,
    no callback tokens); ``generation_id``, ``provider``, ``task_id`` or ``state`` given here
    replace the ones read from ``generation`` (which may then be None: a caller that only has
    the id at hand logs without a query). The record carries ``generation_id``, ``provider``, ``task_id``,
    ``state`` and ``step`` as fields (JSON keys under ``LOG_FORMAT=json``); the plain
    message repeats them so the plain format is just as searchable. Never raises.
    """
    if not lifecycle_log.isEnabledFor(level):  # e.g. the DEBUG lines of plain poll answers: free when off
        return
    fields = {
        "step": step,
        "generation_id": str(getattr(generation, "pk", "") or ""),
        "provider": str(getattr(generation, "provider_kind", "") or ""),
        "task_id": str(getattr(generation, "provider_task_id", "") or ""),
        "state": str(getattr(generation, "state", "") or ""),
    }
    fields.update({key: value for key, value in extra.items() if key not in _RECORD_ATTRS})
    message = " ".join(f"{key}={value}" for key, value in fields.items() if value not in ("", None))
    lifecycle_log.log(level, "%s", message, extra=fields)


def init_sentry(dsn: str, *, environment: str = "production", traces_sample_rate: float = 0.0) -> None:
    """Report unhandled errors (web requests, django-q2 tasks) and ERROR log lines to Sentry.

    Needs the optional extra: ``pip install ".[sentry]"`` (sentry-sdk). Raises
    ``django.core.exceptions.ImproperlyConfigured`` when ``SENTRY_DSN`` is set without it.
    ``send_default_pii`` stays off: no e-mail addresses or cookies leave for Sentry.
    """
    try:
        import sentry_sdk
        from sentry_sdk.integrations.django import DjangoIntegration
    except ImportError as exc:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured('SENTRY_DSN is set but sentry-sdk is missing: pip install ".[sentry]"') from exc
    sentry_sdk.init(
        dsn=dsn,
        environment=environment,
        integrations=[DjangoIntegration()],
        traces_sample_rate=traces_sample_rate,
        send_default_pii=False,
    )
