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
    _event(generation.pk, "", f"Callback received ({hint.provider_state or 'no state'})")
    _log(generation.pk, "callback", generation=generation, provider_state=hint.provider_state)
    if generation.state in (State.SUBMITTED, State.RUNNING):
        Generation.objects.filter(pk=generation.pk).update(next_poll_at=timezone.now())
        transaction.on_commit(lambda: services.enqueue_poll([generation.pk]))
    return None
