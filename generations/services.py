"""The generation lifecycle: create (hold), submit, poll, callback, archive, expire.

Record before send: the row and its hold commit before the provider is called; the
provider's task id is stored right after it answers. Every state change is a conditional
UPDATE from the states it may come from (``models.ALLOWED_FROM``), so a late or duplicate
update changes nothing, and every ledger entry is written in the same transaction as the
state change that causes it (ARCHITECTURE.md, "The lifecycle" and "Money").
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
import re
import secrets
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.files.base import ContentFile
from django.db import models, transaction
from django.db.models import Case, F, Q, Value, When
from django.urls import reverse
from django.utils import timezone

from billing import services as billing_services
from billing.pricing import NoPriceRule, Quote, quote
from billing.selectors import price_rules_for
from config.errors import DomainError
from generations.models import (
    ALLOWED_FROM,
    ArchiveState,
    Generation,
    GenerationEvent,
    InputImage,
    State,
    SweepLease,
)
from providers.base import GenerationRequest, RequestRefused, RuleViolation, TaskState, TaskUpdate
from providers.http import ProviderError, ProviderHttp, Sent, Timeouts, make_poll_client, make_submit_client
from providers.images import ImageInfo, ImageUnavailable, check_image, fetch_image, identify
from providers.models import ProviderAccount

log = logging.getLogger(__name__)


class GenerationRefused(DomainError):
    """A create request refused before any money moved.

    ``code`` is a stable machine code (``validation_error``, ``budget_exceeded``,
    ``budget_not_allowed``, ``no_price_rule``, ``provider_unavailable``,
    ``idempotency_conflict``); ``fields`` maps a form field to its messages; ``status`` is
    the HTTP status the API answers with (``STATUS_BY_CODE``, else 422).
    """

    status = 422
    STATUS_BY_CODE = {
        "validation_error": 422,
        "no_price_rule": 422,
        "provider_unavailable": 422,
        "budget_exceeded": 402,
        "budget_not_allowed": 403,
        "idempotency_conflict": 409,
    }


@dataclass
class CreateParams:
    """What a member asks for (form or API), before validation."""

    provider_account_id: int
    model: str
    mode: str
    prompt: str
    duration: int
    resolution: str
    image_url: str = ""
    options: dict[str, Any] = field(default_factory=dict)

    def to_request(self) -> GenerationRequest:
        return GenerationRequest(
            model=self.model,
            mode=self.mode,
            prompt=self.prompt,
            duration=int(self.duration),
            resolution=self.resolution,
            image_url=self.image_url or "",
            options=dict(self.options),
        )


def _time_scale() -> float:
    return max(float(settings.HAILUO_POLL_TIME_SCALE), 0.0)


def _event(generation_id, state: str = "", message: str = "", data: dict | None = None) -> None:
    GenerationEvent.objects.create(generation_id=generation_id, state=state, message=message, data=data)


def _transition(generation_id, to: str, *, message: str = "", data: dict | None = None, **fields) -> bool:
    """Move a generation to ``to`` if it is in a state allowed to move there. Returns True if it moved."""
    moved = Generation.objects.filter(pk=generation_id, state__in=ALLOWED_FROM[to]).update(
        state=to, updated_at=timezone.now(), **fields
    )
    if moved:
        _event(generation_id, to, message, data)
    return bool(moved)


# --- quote and create ---------------------------------------------------------------------
def generation_quote(*, params: CreateParams, account: ProviderAccount | None = None) -> Quote:
    """Validate ``params`` against the provider's rules and price them. No writes.

    Raises :class:`GenerationRefused` (``validation_error``, ``no_price_rule``,
    ``provider_unavailable``).
    """
    if account is None:
        account = ProviderAccount.objects.filter(pk=params.provider_account_id).first()
    if account is None or not account.enabled:
        raise GenerationRefused(
            "provider_unavailable", "This provider account does not exist or is disabled.", {"provider_account": ["Unavailable."]}
        )
    adapter_cls = account.adapter_cls
    adapter = adapter_cls(api_key="", base_url=account.base_url, options=account.options)
    request = params.to_request()
    try:
        adapter.validate(request)
    except RequestRefused as refused:
        fields: dict[str, list[str]] = defaultdict(list)
        for violation in refused.violations:
            fields[violation.field].append(violation.message)
        raise GenerationRefused("validation_error", str(refused), dict(fields)) from refused
    image_violations = check_request_images(adapter_cls=adapter_cls, request=request)
    if image_violations:
        fields = defaultdict(list)
        for violation in image_violations:
            fields[violation.field].append(violation.message)
        raise GenerationRefused("validation_error", "; ".join(v.message for v in image_violations), dict(fields))
    facts = adapter.billing_facts(request)
    try:
        return quote(facts=facts, rules=price_rules_for(provider_kind=facts.provider_kind, model=facts.model), at=timezone.now())
    except NoPriceRule as exc:
        raise GenerationRefused("no_price_rule", str(exc), {"model": [str(exc)]}) from exc


# --- input images ------------------------------------------------------------------------
_UPLOAD_PATH = re.compile(r"/u/(?P<id>[0-9a-f-]{36})\.(?P<ext>[a-z0-9]+)$")
MAX_UPLOAD_BYTES = 20 * 1024 * 1024


def input_image_create(*, user, uploaded_file) -> InputImage:
    """Store an uploaded image after reading its format and dimensions.

    Raises :class:`GenerationRefused` (``validation_error`` on field ``image_file``) when it
    is too large, not an image, or uploads cannot be offered to providers because
    ``HAILUO_PUBLIC_BASE_URL`` is not set.
    """
    if not settings.HAILUO_PUBLIC_BASE_URL:
        message = "Uploads need HAILUO_PUBLIC_BASE_URL (providers fetch images by URL): give an image URL instead."
        raise GenerationRefused("validation_error", message, {"image_file": [message]})
    data = uploaded_file.read(MAX_UPLOAD_BYTES + 1)
    if len(data) > MAX_UPLOAD_BYTES:
        message = f"The image is larger than {MAX_UPLOAD_BYTES // (1024 * 1024)} MB."
        raise GenerationRefused("validation_error", message, {"image_file": [message]})
    try:
        info = identify(data)
    except ImageUnavailable as exc:
        raise GenerationRefused("validation_error", str(exc), {"image_file": [f"The upload: {exc}."]}) from exc
    image = InputImage(user=user, format=info.format, width=info.width, height=info.height, size=info.size)
    image.file.save(f"{image.pk}.{info.format}", ContentFile(data), save=False)
    image.save()
    return image


def input_image_url(image: InputImage) -> str:
    """The public URL providers fetch an uploaded image from."""
    return settings.HAILUO_PUBLIC_BASE_URL + reverse("input_image", kwargs={"image_id": image.pk, "ext": image.format})


def _image_info(url: str) -> ImageInfo:
    """Our own upload is looked up; any other URL is fetched under limits and identified."""
    base = settings.HAILUO_PUBLIC_BASE_URL
    if base and url.startswith(base + "/"):
        match = _UPLOAD_PATH.search(url[len(base):])
        image = InputImage.objects.filter(pk=match.group("id")).first() if match else None
        if image is not None:
            return ImageInfo(format=image.format, width=image.width, height=image.height, size=image.size)
    data = fetch_image(url, allowed_private_hosts=set(settings.HAILUO_ALLOWED_PRIVATE_HOSTS))
    return identify(data)


def check_request_images(*, adapter_cls, request: GenerationRequest) -> list[RuleViolation]:
    """Check every image of ``request`` (first frame and image options) against the model's image rules.

    Images are fetched under limits (``providers.images.fetch_image``); an unreachable or
    unreadable image is refused too, since the provider could not read it either.
    """
    model = adapter_cls.capabilities.model(request.model)
    mode = model.mode(request.mode) if model else None
    if model is None or mode is None:
        return []
    targets = [("image_url", request.image_url)] if request.image_url else []
    for spec in mode.options:
        value = (request.options or {}).get(spec.name)
        if spec.kind == "image_url" and value:
            targets.append((spec.name, str(value)))
    out: list[RuleViolation] = []
    for field_name, url in targets:
        try:
            info = _image_info(url)
        except ImageUnavailable as exc:
            out.append(RuleViolation(field_name, f"{adapter_cls.label}: {exc}"))
            continue
        if model.image_rules is not None:
            out.extend(check_image(info, model.image_rules, provider=adapter_cls.label, field=field_name))
    return out


def generation_create(
    *, user, params: CreateParams, idempotency_key: str | None = None, team=None, fingerprint: str = ""
) -> Generation:
    """Validate, quote, check budgets, write the generation and its hold, and enqueue the submit.

    With an ``idempotency_key`` already used by this user, returns that generation (marked
    ``replayed``) when the request matches and raises ``idempotency_conflict`` when it differs:
    "matches" is the same ``fingerprint`` (the API's SHA-256 of the whole body, stored with the
    generation) when both have one, else the same parameters, ``options`` included. Raises
    :class:`GenerationRefused` for anything refused; nothing is written then.
    """
    if idempotency_key:
        existing = Generation.objects.filter(user=user, idempotency_key=idempotency_key).first()
        if existing is not None:
            return _same_or_conflict(existing, params, fingerprint)
    account = ProviderAccount.objects.filter(pk=params.provider_account_id).first()
    priced = generation_quote(params=params, account=account)
    team = team if team is not None else user.primary_team
    try:
        with transaction.atomic():
            generation = Generation.objects.create(
                user=user,
                team=team,
                provider_account=account,
                provider_kind=account.kind,
                model=params.model,
                mode=params.mode,
                prompt=params.prompt,
                duration=int(params.duration),
                resolution=params.resolution,
                image_url=params.image_url or "",
                options=dict(params.options),
                quoted_amount=priced.amount,
                price_rule=priced.snapshot,
                idempotency_key=idempotency_key or None,
                request_fingerprint=fingerprint if idempotency_key else "",
            )
            _event(generation.pk, State.QUEUED, f"Quoted {priced.display}; hold placed")
            _, warnings = billing_services.ledger_hold(generation=generation, quote=priced)
            for warning in warnings:
                _event(generation.pk, "", warning)
            transaction.on_commit(lambda: enqueue_submit(generation.pk))
    except billing_services.BudgetExceeded as exc:
        raise GenerationRefused("budget_exceeded", str(exc), {"__all__": [str(exc)]}) from exc
    except billing_services.BudgetNotAllowed as exc:
        raise GenerationRefused("budget_not_allowed", str(exc), {"__all__": [str(exc)]}) from exc
    except Exception as exc:  # an idempotency race: the unique constraint caught a twin
        from django.db import IntegrityError

        if isinstance(exc, IntegrityError) and idempotency_key:
            existing = Generation.objects.filter(user=user, idempotency_key=idempotency_key).first()
            if existing is not None:
                return _same_or_conflict(existing, params, fingerprint)
        raise
    generation.warnings = warnings
    return generation


def _same_or_conflict(existing: Generation, params: CreateParams, fingerprint: str = "") -> Generation:
    if fingerprint and existing.request_fingerprint:
        same = fingerprint == existing.request_fingerprint
    else:
        same = (
            existing.options == dict(params.options) and existing.provider_account_id == params.provider_account_id
            and existing.model == params.model
            and existing.mode == params.mode
            and existing.prompt == params.prompt
            and existing.duration == int(params.duration)
            and existing.resolution == params.resolution
            and existing.image_url == (params.image_url or "")
        )
    if not same:
        raise GenerationRefused(
            "idempotency_conflict", "This idempotency key was already used with different parameters."
        )
    existing.replayed = True
    return existing


def enqueue_submit(generation_id) -> None:
    """Queue the submit of a generation on django-q2."""
    from django_q.tasks import async_task

    async_task("generations.tasks.submit_generation", str(generation_id), task_name=f"submit {generation_id}"[:100])


def enqueue_poll(generation_ids: list) -> None:
    """Queue an immediate poll of these generations on django-q2 (a callback's wake-up)."""
    from django_q.tasks import async_task

    async_task("generations.tasks.poll_generations", [str(g) for g in generation_ids], task_name="poll now")


def enqueue_archive(generation_id, attempt: int | None = None) -> None:
    """Queue the download of a succeeded generation's video (``attempt``: already claimed, see generation_archive)."""
    from django_q.tasks import async_task

    async_task(
        "generations.tasks.archive_generation", str(generation_id), attempt, task_name=f"archive {generation_id}"[:100]
    )


# --- submit ---------------------------------------------------------------------------------
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


def _timeouts() -> Timeouts:
    return Timeouts(connect=settings.HAILUO_PROVIDER_CONNECT_TIMEOUT, read=settings.HAILUO_PROVIDER_READ_TIMEOUT)


def generation_submit(*, generation_id) -> str:
    """Send a queued generation to its provider. Returns the state it ends in.

    Claims the row (``queued`` → ``submitting``) so only one worker ever sends it. Outcomes:
    accepted → ``submitted`` with the task id; permanent error → ``failed`` and the hold
    released; error before the request left (connection refused, 429, 5xx) → back to
    ``queued`` with a backoff, up to ``HAILUO_SUBMIT_MAX_ATTEMPTS``; the request may have
    arrived (read timeout, dropped connection, unexpected error) → ``needs_reconciliation``,
    never resent automatically.
    """
    now = timezone.now()
    paused_until = (
        ProviderAccount.objects.filter(generations__pk=generation_id, paused_until__gt=now)
        .values_list("paused_until", flat=True)
        .first()
    )
    if paused_until is not None:  # the account is in a provider's Retry-After: wait, no attempt counted
        Generation.objects.filter(pk=generation_id, state=State.QUEUED).update(next_submit_at=paused_until, updated_at=now)
        return Generation.objects.filter(pk=generation_id).values_list("state", flat=True).first() or "missing"
    token = secrets.token_urlsafe(24)
    claimed = Generation.objects.filter(
        Q(next_submit_at__isnull=True) | Q(next_submit_at__lte=now), pk=generation_id, state=State.QUEUED
    ).update(
        state=State.SUBMITTING,
        submit_attempts=F("submit_attempts") + 1,
        callback_token_hash=_hash_token(token),
        updated_at=now,
    )
    if not claimed:
        return Generation.objects.filter(pk=generation_id).values_list("state", flat=True).first() or "missing"
    generation = Generation.objects.select_related("provider_account__fallback").get(pk=generation_id)
    account = generation.provider_account
    if account.down or not account.enabled:
        if _failover(generation, f"{account} is marked down or disabled"):
            return State.QUEUED
        return _submit_failed(
            generation, ProviderError(f"{account} is marked down or disabled", code="account_down", permanent=True, sent=Sent.NO)
        )
    _event(generation.pk, State.SUBMITTING, f"Submit attempt {generation.submit_attempts}")
    request = GenerationRequest(
        model=generation.model,
        mode=generation.mode,
        prompt=generation.prompt,
        duration=generation.duration,
        resolution=generation.resolution,
        image_url=generation.image_url,
        options=generation.options,
    )
    try:
        adapter = account.adapter()
    except ValueError as exc:  # the stored key cannot be decrypted: nothing was sent
        return _submit_failed(generation, ProviderError(str(exc), code="key_unreadable", permanent=True, sent=Sent.NO))
    try:
        result = asyncio.run(_submit(adapter, request, _callback_url(generation, token), callback_secret(generation.pk)))
    except ProviderError as exc:
        return _submit_failed(generation, exc)
    except Exception as exc:  # a bug after the request may have left: never resend blindly
        log.exception("unexpected error submitting %s", generation.pk)
        with transaction.atomic():
            _transition(
                generation.pk,
                State.NEEDS_RECONCILIATION,
                message="Unexpected error during submit; the provider may have received it",
                data={"error": repr(exc)},
                reconciliation_note=f"Unexpected error during submit: {exc!r}",
            )
        return State.NEEDS_RECONCILIATION
    cadence = adapter.poll_cadence(request)
    with transaction.atomic():
        _transition(
            generation.pk,
            State.SUBMITTED,
            message=f"Accepted by {account.get_kind_display()}: task {result.task_id}",
            provider_task_id=result.task_id,
            submitted_at=timezone.now(),
            next_poll_at=timezone.now() + timedelta(seconds=cadence.first_delay * _time_scale()),
            poll_interval=cadence.interval,
        )
    return State.SUBMITTED


async def _submit(adapter, request, callback_url, secret):
    async with make_submit_client() as client:
        http = ProviderHttp(client, timeouts=_timeouts(), provider=adapter.label)
        return await adapter.submit(http, request, callback_url=callback_url, callback_secret=secret if callback_url else "")


def _failover(generation: Generation, reason: str) -> bool:
    """Move a generation that was never created at the provider to its account's fallback, once.

    Only to an enabled account of the same provider (it offers the same models), and only
    when the first account answered 402 (no balance) or is marked down: the request cannot
    have created a task, so sending it elsewhere is no double submit.
    """
    account = generation.provider_account
    fallback = account.fallback
    if generation.fallback_from_id or fallback is None or not fallback.enabled or fallback.kind != account.kind:
        return False
    with transaction.atomic():
        moved = _transition(
            generation.pk, State.QUEUED,
            message=f"{reason}: failover from {account} to {fallback}",
            provider_account=fallback, fallback_from=account, next_submit_at=None,
        )
        if moved:
            transaction.on_commit(lambda: enqueue_submit(generation.pk))
    return moved


def _may_have_created_a_task(exc: ProviderError) -> bool:
    """True when a failed submit may still have created a task at the provider (so: never resend).

    Either the request may have arrived (``Sent.MAYBE``: read timeout, connection dropped), or
    the provider answered 2xx without a documented error but we could not read a task id from
    it (not JSON, truncated, no id): a 2xx means it took the request. A documented error under
    HTTP 200 (APIXO's body ``code``, MiniMax's ``base_resp.status_code``) carries the provider's
    own code, which differs from the HTTP status, and is a definite refusal.
    """
    if exc.sent == Sent.MAYBE:
        return True
    status = exc.http_status or 0
    return 200 <= status < 300 and exc.code == str(status)


def _pause_account(account_id: int, retry_after: float | None) -> datetime:
    """A 429 is about the key, not one request: pause the whole account's submits and polls.

    For ``retry_after`` seconds (the provider's Retry-After), 5 s when it gave none; an
    existing longer pause is kept. Returns the end of the pause.
    """
    until = timezone.now() + timedelta(seconds=retry_after if retry_after is not None else 5.0)
    ProviderAccount.objects.filter(pk=account_id).filter(Q(paused_until__isnull=True) | Q(paused_until__lt=until)).update(
        paused_until=until
    )
    return until


def _submit_failed(generation: Generation, exc: ProviderError) -> str:
    evidence = {"code": exc.code, "http_status": exc.http_status, "message": exc.message, "sent": exc.sent}
    if exc.http_status == 402 and _failover(generation, f"{generation.provider_account} has no balance (402)"):
        return State.QUEUED
    if _may_have_created_a_task(exc):
        with transaction.atomic():
            _transition(
                generation.pk,
                State.NEEDS_RECONCILIATION,
                message="The submit may have reached the provider; not resent",
                data=evidence,
                reconciliation_note=exc.message,
            )
        return State.NEEDS_RECONCILIATION
    if exc.permanent or generation.submit_attempts >= settings.HAILUO_SUBMIT_MAX_ATTEMPTS:
        message = exc.message if exc.permanent else f"{exc.message} (gave up after {generation.submit_attempts} attempts)"
        with transaction.atomic():
            if _transition(
                generation.pk, State.FAILED, message=message, data=evidence,
                fail_code=exc.code, fail_message=message, completed_at=timezone.now(),
            ):
                billing_services.ledger_release(generation=generation, reason=f"submit failed: {exc.code}")
        return State.FAILED
    delay = exc.retry_after if exc.retry_after is not None else min(2 ** generation.submit_attempts, 300)
    if exc.http_status == 429:
        _pause_account(generation.provider_account_id, exc.retry_after)
    with transaction.atomic():
        _transition(
            generation.pk,
            State.QUEUED,
            message=f"Will retry in {delay:g} s: {exc.message}",
            data=evidence,
            next_submit_at=timezone.now() + timedelta(seconds=delay),
        )
    return State.QUEUED


# --- poll --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _PollJob:
    """One claimed poll: what the status request needs, and what applying a plain
    "still in progress" answer needs without reading the row again."""

    generation_id: Any
    account_id: int
    task_id: str
    model: str
    state: str = ""
    poll_interval: float = 12.5
    started_at: datetime | None = None  # submitted_at, else created_at: the task's age


def poll_lease_seconds() -> float:
    """How long a claimed poll is leased to its sweep, in seconds.

    A sweep claims at most ``HAILUO_POLL_CONCURRENCY_PER_ACCOUNT`` generations per provider
    account at a time and sends all their status requests at once, so a lease only has to
    outlast one request (connect timeout + twice the read timeout, for an answer that
    trickles in) and the apply, with a margin. No sweep holds a claim it is not working on.
    """
    return settings.HAILUO_PROVIDER_CONNECT_TIMEOUT + 2 * settings.HAILUO_PROVIDER_READ_TIMEOUT + 30


def _claimable(*, ids: list | None, exclude: set | None, now: datetime):
    """In-flight generations with a task id and no live lease: exactly ``ids``, or the due ones."""
    rows = Generation.objects.filter(
        Q(poll_lease_until__isnull=True) | Q(poll_lease_until__lt=now),
        state__in=[State.SUBMITTED, State.RUNNING],
    ).exclude(provider_task_id="")
    rows = rows.filter(pk__in=ids) if ids is not None else rows.filter(next_poll_at__lte=now)
    return rows.exclude(pk__in=exclude) if exclude else rows


def _accounts_with_due_polls(*, ids: list | None = None) -> list[int]:
    """The provider accounts that have something to poll now (one query)."""
    now = timezone.now()
    return list(_claimable(ids=ids, exclude=None, now=now).values_list("provider_account_id", flat=True).order_by().distinct())


def _claim_due(
    *,
    ids: list | None = None,
    per_account: int | None = None,
    limit: int,
    exclude: set | None = None,
    accounts: list[int] | None = None,
) -> list[_PollJob]:
    """Lease one round of due in-flight generations (``SELECT ... FOR UPDATE SKIP LOCKED``).

    At most ``per_account`` per provider account (the concurrency cap) and ``limit`` in all;
    accounts in a 429 pause are skipped. With ``ids``: exactly those (if in flight), due or not.
    ``per_account`` defaults to ``HAILUO_POLL_CONCURRENCY_PER_ACCOUNT``; ``exclude``: ids
    already polled in this sweep (a zero poll interval must not poll them again at once);
    ``accounts``: the accounts to claim for (default: :func:`_accounts_with_due_polls`).
    """
    per_account = per_account or max(1, settings.HAILUO_POLL_CONCURRENCY_PER_ACCOUNT)
    now = timezone.now()
    lease = now + timedelta(seconds=poll_lease_seconds())
    rows = _claimable(ids=ids, exclude=exclude, now=now)
    if accounts is None:
        accounts = _accounts_with_due_polls(ids=ids)
    paused = set(ProviderAccount.objects.filter(paused_until__gt=now).values_list("pk", flat=True))
    accounts = [a for a in accounts if a not in paused]
    jobs: list[_PollJob] = []
    with transaction.atomic():
        for account_id in accounts:
            if len(jobs) >= limit:
                break
            mine = rows.filter(provider_account_id=account_id).select_for_update(skip_locked=True, of=("self",))
            if ids is None:
                mine = mine.order_by("next_poll_at")
            fields = ("id", "provider_account_id", "provider_task_id", "model", "state", "poll_interval", "submitted_at", "created_at")
            jobs.extend(
                _PollJob(r["id"], r["provider_account_id"], r["provider_task_id"], r["model"], r["state"],
                         r["poll_interval"], r["submitted_at"] or r["created_at"])
                for r in mine.values(*fields)[: min(per_account, limit - len(jobs))]
            )
        if jobs:
            Generation.objects.filter(pk__in=[j.generation_id for j in jobs]).update(
                poll_lease_until=lease, poll_count=F("poll_count") + 1
            )
    return jobs


async def _fetch_all(
    jobs: list[_PollJob], adapters: dict, client=None
) -> list[tuple[_PollJob, TaskUpdate | ProviderError]]:
    """Fetch every job's status concurrently (one round: the claim already capped it per account).

    ``client``: an open poll client to reuse across rounds; without one a client is made and
    closed here. Returns ``(job, TaskUpdate or ProviderError)`` pairs; never raises.
    """
    limit = max(1, settings.HAILUO_POLL_CONCURRENCY_PER_ACCOUNT)
    if client is None:
        async with make_poll_client(max_connections=limit * max(1, len(adapters))) as own:
            return await _fetch_all(jobs, adapters, own)
    https = {
        account_id: ProviderHttp(client, timeouts=_timeouts(), provider=adapter.label)
        for account_id, adapter in adapters.items()
    }
    # The claim already caps a round per account; this keeps the cap for any other caller.
    semaphores = {account_id: asyncio.Semaphore(limit) for account_id in adapters}

    async def one(job: _PollJob):
        adapter = adapters[job.account_id]
        async with semaphores[job.account_id]:
            try:
                return job, await adapter.fetch_status(https[job.account_id], task_id=job.task_id, model=job.model)
            except ProviderError as exc:
                return job, exc
            except Exception as exc:  # a parsing bug must not stop the sweep
                log.exception("status of %s failed", job.generation_id)
                return job, ProviderError(f"unexpected error: {exc!r}", code="unexpected")

    return await asyncio.gather(*(one(job) for job in jobs))


def generations_poll(*, ids: list | None = None, limit: int | None = None) -> dict[str, int]:
    """Poll due in-flight generations (or exactly ``ids``) and apply the answers.

    Works in rounds: claim at most ``HAILUO_POLL_CONCURRENCY_PER_ACCOUNT`` per provider
    account, send all their status requests at once over one shared client, apply the
    answers, claim the next round; until nothing is due or ``limit`` (default
    ``HAILUO_POLL_BATCH``) generations were polled. Each claim's lease covers one request
    (:func:`poll_lease_seconds`), so a slow provider never outlives it.

    Returns counts by outcome, e.g. ``{"polled": 40, "succeeded": 3, "errors": 1}``.
    """
    budget = limit or settings.HAILUO_POLL_BATCH
    per_account = max(1, settings.HAILUO_POLL_CONCURRENCY_PER_ACCOUNT)
    counts: dict[str, int] = defaultdict(int)
    adapters: dict = {}
    unusable: set = set()
    polled: set = set()
    accounts = _accounts_with_due_polls(ids=ids)
    connections = per_account * max(1, len(accounts))  # one round's requests, at most, at once
    loop = client = None
    try:
        while budget > 0 and accounts:
            jobs = _claim_due(ids=ids, per_account=per_account, limit=budget, exclude=polled, accounts=accounts)
            if not jobs:
                break
            # An account that gave fewer than a full round has nothing more due: stop asking.
            per = defaultdict(int)
            for job in jobs:
                per[job.account_id] += 1
            accounts = [a for a in accounts if per[a] >= per_account]
            budget -= len(jobs)
            polled.update(j.generation_id for j in jobs)
            new = {j.account_id for j in jobs} - adapters.keys() - unusable
            for account_id, account in ProviderAccount.objects.in_bulk(new).items():
                try:
                    adapters[account_id] = account.adapter()
                except ValueError as exc:  # the key cannot be decrypted: its claims lapse, polled later
                    unusable.add(account_id)
                    log.error("provider account %s unusable: %s", account_id, exc)
            runnable = [j for j in jobs if j.account_id in adapters]
            if not runnable:
                continue
            if loop is None:
                loop = asyncio.new_event_loop()
                client = make_poll_client(max_connections=connections)
            results = loop.run_until_complete(_fetch_all(runnable, adapters, client))
            plain: list[tuple[_PollJob, TaskUpdate]] = []
            for job, outcome in results:
                counts["polled"] += 1
                if isinstance(outcome, ProviderError):
                    counts["errors"] += 1
                    _poll_failed(job, outcome)
                elif _is_plain_progress(job, outcome):
                    plain.append((job, outcome))
                else:
                    counts[generation_apply_update(generation_id=job.generation_id, update=outcome)] += 1
            if plain:
                _apply_progress(plain)
                counts["in_progress"] += len(plain)
    finally:
        if loop is not None:
            loop.run_until_complete(client.aclose())
            loop.close()
    return dict(counts)


def _is_plain_progress(job: _PollJob, update: TaskUpdate) -> bool:
    """An answer that changes no state: still in progress (or an undocumented state), in the
    state the row was claimed in, no provider cost to record. Most answers are like this."""
    if update.provider_cost is not None:
        return False
    if update.state is TaskState.UNKNOWN:
        return True
    return update.state is TaskState.QUEUED or (update.state is TaskState.RUNNING and job.state == State.RUNNING)


def _apply_progress(answers: list[tuple[_PollJob, TaskUpdate]]) -> None:
    """Apply a round's "still in progress" answers in one UPDATE: next poll time, provider
    state and progress, lease cleared. Rows that became final meanwhile are left alone."""
    next_at, states, progress = [], [], []
    for job, update in answers:
        if update.state is TaskState.UNKNOWN:
            log.warning("generation %s: undocumented provider state %r; polling again", job.generation_id, update.provider_state)
        pk = job.generation_id
        next_at.append(When(pk=pk, then=Value(_next_poll_at(job.poll_interval, job.started_at))))
        states.append(When(pk=pk, then=Value(update.provider_state[:40])))
        if update.progress is not None:
            progress.append(When(pk=pk, then=Value(max(0, min(100, int(update.progress))))))
    fields = {
        "poll_lease_until": None,
        "next_poll_at": Case(*next_at, output_field=models.DateTimeField()),
        "provider_state": Case(*states, output_field=models.CharField()),
    }
    if progress:
        fields["progress"] = Case(*progress, default=F("progress"), output_field=models.IntegerField())
    Generation.objects.filter(
        pk__in=[job.generation_id for job, _ in answers], state__in=[State.SUBMITTED, State.RUNNING]
    ).update(**fields)


def _next_poll(generation: Generation, retry_after: float | None = None) -> datetime:
    """Next poll time of ``generation`` (see :func:`_next_poll_at`)."""
    return _next_poll_at(generation.poll_interval, generation.submitted_at or generation.created_at, retry_after)


def _next_poll_at(interval: float, started_at: datetime | None, retry_after: float | None = None) -> datetime:
    """Next poll time: ``interval`` s (the provider's documented cadence) with ±20 % jitter,
    twice as slow after 10 min and four times after 30 min of age, never before Retry-After."""
    age = (timezone.now() - started_at).total_seconds() if started_at else 0.0
    if age > 1800:
        interval *= 4
    elif age > 600:
        interval *= 2
    interval *= _time_scale() * random.uniform(0.8, 1.2)
    if retry_after:
        interval = max(interval, retry_after)
    return timezone.now() + timedelta(seconds=interval)


def _poll_failed(job: _PollJob, exc: ProviderError) -> None:
    """Poll this generation later; a 429 pauses its whole provider account for the Retry-After."""
    generation = Generation.objects.get(pk=job.generation_id)
    if exc.http_status == 429:
        _pause_account(job.account_id, exc.retry_after)
    Generation.objects.filter(pk=job.generation_id).update(
        poll_lease_until=None, next_poll_at=_next_poll(generation, exc.retry_after)
    )
    log.warning("poll of %s failed: %r", job.generation_id, exc)


def generation_apply_update(*, generation_id, update: TaskUpdate) -> str:
    """Apply a provider's TaskUpdate to a generation; returns the outcome name.

    Success captures exactly once and queues the archive; failure and cancel release the
    hold; an unknown provider state is logged and polled again, never taken as success.
    """
    generation = Generation.objects.get(pk=generation_id)
    now = timezone.now()
    common = {"poll_lease_until": None, "provider_state": update.provider_state[:40]}
    if update.provider_cost is not None:
        common["provider_cost"] = dict(update.provider_cost)
    if update.state is TaskState.SUCCEEDED:
        with transaction.atomic():
            moved = _transition(
                generation_id,
                State.SUCCEEDED,
                message=f"Succeeded at the provider ({update.provider_state})",
                data={"result_urls": list(update.result_urls)},
                result_urls=list(update.result_urls),
                completed_at=update.completed_at or now,
                progress=100,
                archive_state=ArchiveState.PENDING,
                next_archive_at=now,
                charged_amount=generation.quoted_amount,
                **common,
            )
            if moved:
                billing_services.ledger_capture(generation=generation)
                transaction.on_commit(lambda: enqueue_archive(generation_id))
        return "succeeded" if moved else "ignored"
    if update.state in (TaskState.FAILED, TaskState.CANCELED):
        to = State.FAILED if update.state is TaskState.FAILED else State.CANCELED
        with transaction.atomic():
            moved = _transition(
                generation_id,
                to,
                message=f"{update.fail_code or update.provider_state}: {update.fail_message}".strip(": "),
                data={"fail_code": update.fail_code, "fail_message": update.fail_message},
                fail_code=update.fail_code[:100],
                fail_message=update.fail_message,
                completed_at=update.completed_at or now,
                **common,
            )
            if moved:
                billing_services.ledger_release(generation=generation, reason=f"{to}: {update.fail_code}")
        return to.value if moved else "ignored"
    # Still in progress (or an unknown state): record progress, poll again.
    fields = dict(common, next_poll_at=_next_poll(generation))
    if update.progress is not None:
        fields["progress"] = max(0, min(100, int(update.progress)))
    if update.state is TaskState.UNKNOWN:
        log.warning("generation %s: undocumented provider state %r; polling again", generation_id, update.provider_state)
    moved = update.state is TaskState.RUNNING and _transition(
        generation_id, State.RUNNING, message=f"Running ({update.provider_state})", **fields
    )
    if not moved:
        Generation.objects.filter(pk=generation_id, state__in=[State.SUBMITTED, State.RUNNING]).update(**fields)
    return "in_progress"


def generations_expire(*, now: datetime | None = None) -> int:
    """Mark in-flight generations older than ``HAILUO_MAX_TASK_LIFETIME`` expired and release their holds."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.HAILUO_MAX_TASK_LIFETIME)
    count = 0
    for generation in Generation.objects.filter(state__in=[State.SUBMITTED, State.RUNNING], created_at__lt=cutoff):
        with transaction.atomic():
            if _transition(
                generation.pk,
                State.EXPIRED,
                message=f"No final answer after {settings.HAILUO_MAX_TASK_LIFETIME} s",
                completed_at=now,
            ):
                billing_services.ledger_release(generation=generation, reason="expired")
                count += 1
    return count


def generations_stuck_submitting(*, older_than: float = 600.0) -> int:
    """A submit whose worker died mid-flight: move to needs_reconciliation (never resent blindly)."""
    cutoff = timezone.now() - timedelta(seconds=older_than)
    count = 0
    for generation_id in Generation.objects.filter(state=State.SUBMITTING, updated_at__lt=cutoff).values_list("pk", flat=True):
        with transaction.atomic():
            count += _transition(
                generation_id,
                State.NEEDS_RECONCILIATION,
                message="The submit never finished (worker stopped?); the provider may have the task",
                reconciliation_note="Submit interrupted: check the provider's dashboard for this prompt",
            )
    return count


#: A queued generation handed to the workers whose submit has not started after this many
#: seconds (its django-q2 task was lost: a broker wiped, a cluster killed) is handed over again.
#: Harmless if it was merely slow: the submit claims the row, so only one worker ever sends it.
SUBMIT_REQUEUE_AFTER = 600


def submits_enqueue_due() -> int:
    """Hand queued generations whose retry time has come to the workers; returns how many.

    Also those whose first hand-over looks lost (queued, no retry time, untouched for
    ``SUBMIT_REQUEUE_AFTER`` s). Skips accounts in a 429 pause. Each is marked handed over
    (no retry time) before it is enqueued, so the next sweep does not enqueue it again. The
    sweep never submits inline: one slow provider must not hold up every poll.
    """
    now = timezone.now()
    with transaction.atomic():
        ids = list(
            Generation.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(state=State.QUEUED)
            .filter(
                Q(next_submit_at__lte=now)
                | Q(next_submit_at__isnull=True, updated_at__lt=now - timedelta(seconds=SUBMIT_REQUEUE_AFTER))
            )
            .exclude(provider_account__paused_until__gt=now)
            .values_list("pk", flat=True)[:500]
        )
        if ids:
            Generation.objects.filter(pk__in=ids).update(next_submit_at=None, updated_at=now)
    for generation_id in ids:
        enqueue_submit(generation_id)
    return len(ids)


# --- callbacks -----------------------------------------------------------------------------------
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
    if generation.state in (State.SUBMITTED, State.RUNNING):
        Generation.objects.filter(pk=generation.pk).update(next_poll_at=timezone.now())
        transaction.on_commit(lambda: enqueue_poll([generation.pk]))
    return None


# --- archive -------------------------------------------------------------------------------------------
def _archive_lease() -> datetime:
    """Until when a claimed download is left alone: its deadline plus a margin (a dead worker's is retried after)."""
    return timezone.now() + timedelta(seconds=settings.HAILUO_DOWNLOAD_TIMEOUT + 300)


def generation_archive(*, generation_id, attempt: int | None = None) -> str:
    """Download a succeeded generation's video into MEDIA storage. Returns the archive state.

    Claims the download first (``archive_attempts`` + 1, conditional on the count read), so
    two workers never download one video at once; with ``attempt`` the caller (the sweep)
    already claimed that attempt. Retries later (``next_archive_at``) on failure until
    ``ARCHIVE_MAX_ATTEMPTS``; then ``failed`` ("succeeded, archive failed").
    """
    from generations.archive import ArchiveError, download_video

    generation = Generation.objects.get(pk=generation_id)
    if generation.state != State.SUCCEEDED or generation.archive_state != ArchiveState.PENDING:
        return generation.archive_state
    if attempt is not None:
        if generation.archive_attempts != attempt:  # another attempt has started since: not ours
            return generation.archive_state
        attempts = attempt
    else:
        now = timezone.now()
        claimed = Generation.objects.filter(
            Q(next_archive_at__isnull=True) | Q(next_archive_at__lte=now),
            pk=generation_id, archive_state=ArchiveState.PENDING, archive_attempts=generation.archive_attempts,
        ).update(archive_attempts=F("archive_attempts") + 1, next_archive_at=_archive_lease())
        if not claimed:
            return generation.archive_state
        attempts = generation.archive_attempts + 1
    try:
        name, size, poster = download_video(generation)
    except ArchiveError as exc:
        final = attempts >= ARCHIVE_MAX_ATTEMPTS
        delay = min(30 * 2 ** attempts, 1800) * max(_time_scale(), 0.01)
        Generation.objects.filter(pk=generation_id).update(
            archive_state=ArchiveState.FAILED if final else ArchiveState.PENDING,
            archive_error=str(exc),
            next_archive_at=None if final else timezone.now() + timedelta(seconds=delay),
        )
        _event(generation_id, "", f"Archive attempt {attempts} failed: {exc}")
        return ArchiveState.FAILED if final else ArchiveState.PENDING
    Generation.objects.filter(pk=generation_id).update(
        video=name, video_bytes=size, poster=poster, archive_state=ArchiveState.DONE, archive_error="", next_archive_at=None
    )
    _event(generation_id, "", f"Video archived ({size:,} bytes)")
    return ArchiveState.DONE


ARCHIVE_MAX_ATTEMPTS = 8


def archives_enqueue_due() -> int:
    """Claim the downloads whose retry time has come and hand each to a worker; returns how many.

    Each claim counts the attempt and leases it (:func:`_archive_lease`) before it is
    enqueued with its attempt number, so no other worker or sweep starts it meanwhile. The
    sweep never downloads inline: one slow download must not hold up every poll.
    """
    now = timezone.now()
    with transaction.atomic():
        due = list(
            Generation.objects.select_for_update(skip_locked=True, of=("self",))
            .filter(state=State.SUCCEEDED, archive_state=ArchiveState.PENDING, next_archive_at__lte=now)
            .values_list("pk", "archive_attempts")[:100]
        )
        if due:
            Generation.objects.filter(pk__in=[pk for pk, _ in due]).update(
                archive_attempts=F("archive_attempts") + 1, next_archive_at=_archive_lease()
            )
    for generation_id, attempts in due:
        enqueue_archive(generation_id, attempt=attempts + 1)
    return len(due)


__all__ = [
    "CreateParams",
    "GenerationRefused",
    "RuleViolation",
    "generation_create",
    "generation_quote",
    "generation_submit",
    "generations_poll",
    "generation_apply_update",
    "generation_callback",
    "generation_archive",
]


# --- reconciliation (admin) ------------------------------------------------------------------------
def generation_reconcile_failed(*, generation_id, admin) -> bool:
    """needs_reconciliation → failed, releasing the hold (the admin found no task at the provider)."""
    generation = Generation.objects.get(pk=generation_id)
    with transaction.atomic():
        moved = _transition(
            generation_id, State.FAILED, message=f"Resolved by {admin}: no task at the provider; hold released",
            fail_code="reconciled", fail_message="No task was found at the provider", completed_at=timezone.now(),
        )
        if moved:
            billing_services.ledger_release(generation=generation, reason=f"reconciled by {admin}")
    return moved


def generation_reconcile_attach(*, generation_id, provider_task_id: str, admin) -> bool:
    """needs_reconciliation → submitted with the provider's task id (the admin found it); polling resumes."""
    with transaction.atomic():
        return _transition(
            generation_id, State.SUBMITTED, message=f"Resolved by {admin}: task {provider_task_id} attached",
            provider_task_id=provider_task_id.strip(), submitted_at=timezone.now(), next_poll_at=timezone.now(),
        )


# --- cancel ------------------------------------------------------------------------------------------------
def generation_cancel(*, generation_id, user) -> str:
    """Cancel a generation: before it was sent, locally; at the provider where it documents a
    cancel (qingbo, while queued). Returns the resulting state; releases the hold.

    Raises :class:`GenerationRefused` (``cannot_cancel``) when the provider documents no
    cancel, or refuses it (e.g. the task already started).
    """
    generation = Generation.objects.select_related("provider_account").get(pk=generation_id)
    if generation.state == State.QUEUED:
        with transaction.atomic():
            if _transition(generation.pk, State.CANCELED, message=f"Canceled by {user} before it was sent", completed_at=timezone.now()):
                billing_services.ledger_release(generation=generation, reason="canceled before submit")
                return State.CANCELED
    generation.refresh_from_db()
    if generation.state not in (State.SUBMITTED, State.RUNNING):
        raise GenerationRefused("cannot_cancel", f"A {generation.get_state_display().lower()} generation cannot be canceled.")
    account = generation.provider_account
    if not account.adapter_cls.capabilities.cancel:
        raise GenerationRefused("cannot_cancel", f"{account.adapter_cls.label} documents no way to cancel a task.")

    async def go(adapter):
        async with make_submit_client() as client:
            await adapter.cancel(ProviderHttp(client, timeouts=_timeouts(), provider=adapter.label), task_id=generation.provider_task_id, model=generation.model)

    try:
        asyncio.run(go(account.adapter()))
    except ProviderError as exc:
        raise GenerationRefused("cannot_cancel", exc.message) from exc
    with transaction.atomic():
        if _transition(generation.pk, State.CANCELED, message=f"Canceled at the provider by {user}", completed_at=timezone.now()):
            billing_services.ledger_release(generation=generation, reason="canceled")
    return Generation.objects.get(pk=generation.pk).state


# --- sweep slots ---------------------------------------------------------------------------------------------
def sweep_slot_claim(*, seconds: float) -> tuple[int, str] | None:
    """Claim a free poll-sweep slot for ``seconds``; returns ``(slot, holder token)`` or None when all are taken."""
    now = timezone.now()
    holder = secrets.token_hex(8)
    for slot in range(max(1, settings.HAILUO_POLL_SWEEPERS)):
        SweepLease.objects.get_or_create(slot=slot, defaults={"expires_at": now - timedelta(seconds=1)})
        claimed = SweepLease.objects.filter(slot=slot, expires_at__lte=now).update(
            holder=holder, expires_at=now + timedelta(seconds=seconds)
        )
        if claimed:
            return slot, holder
    return None


def sweep_slot_release(*, slot: tuple[int, str]) -> None:
    """Free a slot claimed by :func:`sweep_slot_claim` (only if still ours)."""
    number, holder = slot
    SweepLease.objects.filter(slot=number, holder=holder).update(expires_at=timezone.now(), holder="")
