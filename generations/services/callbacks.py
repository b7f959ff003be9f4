"""Provider callbacks: the per-generation callback URL and token, the shared secret, and the
authentication of an incoming callback, which only wakes the generation's poll.

A callback never changes state itself: the poll that it wakes reads the provider's answer
(ARCHITECTURE.md, "Callbacks"; providers.md, each provider's callback section).
"""

from __future__ import annotations

import hashlib
import hmac

from django.conf import settings
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from generations import services  # the queue is called through the package (see its docstring)
from generations.models import Generation, State
from generations.services.callback_read import callback_status_read
from generations.services.lifecycle import _event, _log


def _callback_url(generation: Generation, token: str) -> str:
    base = settings.HAILUO_PUBLIC_BASE_URL
    if not base:
        return ""
    path = reverse("provider_callback", kwargs={"kind": generation.provider_kind, "generation_id": generation.pk, "token": token})
    return base + path


def _hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def callback_secret(generation_id) -> str:
    """The shared secret handed to providers that echo one in callbacks (PiAPI's ``x-webhook-secret``).

    Derived from ``SECRET_KEY`` and the generation id (HMAC-SHA256), so it is never stored.
    """
    return hmac.new(settings.SECRET_KEY.encode(), f"callback-secret:{generation_id}".encode(), hashlib.sha256).hexdigest()


class CallbackRejected(Exception):
    """A callback we refuse; ``status`` is the HTTP status to answer (4xx)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def generation_callback(*, kind: str, generation_id, token: str, headers, body: bytes) -> dict | None:
    """Authenticate a provider callback and wake its generation's poll. Changes no state itself.

The woken poll is our own status read, done in this request with short timeouts
(:func:`~generations.services.callback_read.callback_status_read`; queued on django-q2 on
any error, or with ``HAILUO_CALLBACK_STATUS_READ = "queue"``); the callback's body never
moves the state, whatever it says.

    While our own task id is unknown (``submitting``, or ``needs_reconciliation`` after a lost
    answer) the task id it names is recorded in ``callback_task_id``, never trusted: the poll
    reads that task's status with our key before anything moves. An expired generation in its
    late-result grace is woken like an in-flight one.

    Returns the body to answer with when the provider requires a specific one (MiniMax's
    challenge echo), else None. Raises :class:`CallbackRejected` (404 unknown generation,
    403 bad token or secret, 400 malformed or for another task).
    """
    generation = Generation.objects.filter(pk=generation_id, provider_kind=kind).select_related("provider_account").first()
    if generation is None or not generation.callback_token_hash:
        raise CallbackRejected(404, "unknown generation")
    if not hmac.compare_digest(generation.callback_token_hash, _hash_token(token)):
        raise CallbackRejected(403, "bad callback token")
    adapter = generation.provider_account.adapter_cls(api_key="", base_url=generation.provider_account.base_url)
    challenge = adapter.callback_challenge(headers, body)
    if challenge is not None:
        return challenge
    try:
        adapter.verify_callback(headers, body, secret=callback_secret(generation.pk))
    except ValueError as exc:
        raise CallbackRejected(403, str(exc)) from exc
    try:
        hint = adapter.parse_callback(headers, body)
    except ValueError as exc:
        raise CallbackRejected(400, str(exc)) from exc
    if generation.provider_task_id and hint.task_id != generation.provider_task_id:
        raise CallbackRejected(400, "the callback names another task")
    if generation.callback_task_id and hint.task_id and hint.task_id != generation.callback_task_id:
        raise CallbackRejected(400, "the callback names another task than an earlier one")
    _event(generation.pk, "", f"Callback received ({hint.provider_state or 'no state'})")
    _log(generation.pk, "callback", generation=generation, provider_state=hint.provider_state)
    now = timezone.now()
    early = (State.SUBMITTING, State.NEEDS_RECONCILIATION)
    if not generation.provider_task_id and hint.task_id and generation.state in early:
        # Before we know our task id (the submit's answer pending, or lost): keep the one the
        # callback names, to be checked with our own status read (poll.generations_resolve_reported).
        recorded = Generation.objects.filter(pk=generation.pk, provider_task_id="", state__in=early).update(
            callback_task_id=hint.task_id[:200], next_poll_at=now
        )
        if recorded:
            _event(generation.pk, "", f"The callback names task {hint.task_id}; checked with our own status read")
        if recorded and generation.state == State.NEEDS_RECONCILIATION:
            transaction.on_commit(lambda: services.enqueue_poll([generation.pk]))
        return None
    late = generation.state == State.EXPIRED and generation.late_poll_until and generation.late_poll_until > now
    if generation.state in (State.SUBMITTED, State.RUNNING) or late:
        # Our own status read, at once in this request (or queued): callback_read.callback_status_read.
        transaction.on_commit(lambda: callback_status_read(generation.pk, generation=generation))
    return None
