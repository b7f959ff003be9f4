"""Emails to a member about their own requests, only those they asked for.

A member opts in per kind on ``/settings/notifications/`` (:class:`NotificationPreference`;
all off by default). :func:`notify_member` is the one entry point: it checks the preference
and sends after the current transaction commits, at most once per ``key``
(:class:`NotificationSent`, a unique key). Final states reach it from the lifecycle's
``GenerationEvent`` rows (:func:`on_generation_event`, connected in ``teamwork.apps``):
succeeded → ``finished``; failed or expired → ``failed``. The approvals flow calls it with
``approval`` for its decisions.
"""

from __future__ import annotations

import hashlib
import logging
import uuid

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction

from teamwork.models import NotificationPreference, NotificationSent

log = logging.getLogger(__name__)

#: A kind → the preference field that allows it.
KINDS = {"finished": "email_finished", "failed": "email_failed", "approval": "email_approval"}
#: A generation's final state → the kind of email about it.
STATE_KINDS = {"succeeded": "finished", "failed": "failed", "expired": "failed"}


def preference_of(user) -> NotificationPreference:
    """``user``'s preferences (created, all off, on first read)."""
    preference, _ = NotificationPreference.objects.get_or_create(user=user)
    return preference


def wants(user, kind: str) -> bool:
    """True when ``user`` opted in to emails of ``kind`` (one query; no row means all off)."""
    if kind not in KINDS:
        raise ValueError(f"unknown notification kind {kind!r}; one of {', '.join(KINDS)}")
    return NotificationPreference.objects.filter(user=user, **{KINDS[kind]: True}).exists()


def notify_member(user, kind: str, subject: str, body: str, generation=None, *, key: str | None = None) -> bool:
    """Email ``user`` about ``kind`` ("finished", "failed" or "approval") if they opted in.

    Sent when the current transaction commits (at once outside one), to ``user.email`` from
    ``DEFAULT_FROM_EMAIL``; ``generation`` (optional) is recorded with it and its page linked
    under the body. ``key`` (at most 200 characters) makes it idempotent: a second call with a
    key already sent sends nothing (default with ``generation``: its kind, id and subject, so
    the same email about the same generation goes once; without: no de-duplication). Returns True when an email was scheduled; False when the member did not
    opt in or has no address. Raises ``ValueError`` for an unknown kind. A failing mail server
    is logged, never raised."""
    if not wants(user, kind) or not user.email:
        return False
    if key is None and generation is not None:
        key = f"{kind}:{generation.pk}:{hashlib.sha256(subject.encode()).hexdigest()[:16]}"
    if generation is not None:
        from webhooks.services import public_url

        body = f"{body}\n\n{public_url(f'/g/{generation.pk}/')}\n"
    body += "\nYou get this because you asked for it: change it in Hailuo Studio, Settings → Notifications.\n"
    subject = f"[Hailuo Studio] {subject}"[:200]

    def send() -> None:
        try:
            with transaction.atomic():
                NotificationSent.objects.create(
                    key=key or f"once:{uuid.uuid4()}", user=user, kind=kind, generation_id=getattr(generation, "pk", None),
                    subject=subject,
                )
        except IntegrityError:
            return  # already sent for this key
        try:
            send_mail(subject, body, settings.DEFAULT_FROM_EMAIL, [user.email])
        except Exception:
            log.exception("could not email %s about %s", user.pk, kind)

    transaction.on_commit(send)
    return True


def on_generation_event(event) -> bool:
    """A new ``GenerationEvent``: for a final state (:data:`STATE_KINDS`) email the generation's
    member if they opted in, once for this event (key ``event:<id>``). Returns what
    :func:`notify_member` returned (False for any other event)."""
    kind = STATE_KINDS.get(event.state)
    if kind is None:
        return False
    from generations.models import Generation

    generation = Generation.objects.select_related("user").get(pk=event.generation_id)
    prompt = " ".join(generation.prompt.split())
    short = prompt if len(prompt) <= 60 else prompt[:59] + "…"
    if kind == "finished":
        subject = f"Your video is ready: “{short}”"
        body = f"Your video “{prompt}” ({generation.model_label}, {generation.duration} s, {generation.resolution}) is ready."
    else:
        subject = f"Your video {generation.get_state_display().lower()}: “{short}”"
        reason = generation.fail_summary or generation.fail_message or generation.fail_code or event.message
        body = (f"Your video “{prompt}” {generation.get_state_display().lower()}"
                + (f": {reason}" if reason else ".") + "\nNothing was charged for it.")
    return notify_member(generation.user, kind, subject, body, generation, key=f"event:{event.pk}")


def generation_event_saved(sender, instance, created: bool, raw: bool = False, **kwargs) -> None:
    """The ``post_save`` receiver on ``GenerationEvent`` (see ``teamwork.apps``): a savepoint, so a
    notification problem never undoes the lifecycle's state change."""
    if not created or raw or instance.state not in STATE_KINDS:
        return  # nothing to email (e.g. queued): no savepoint round trips on every submit
    try:
        with transaction.atomic():
            on_generation_event(instance)
    except Exception:
        log.exception("notifications: could not handle generation event %s", instance.pk)
