"""The poll engine: leased claims per provider account, concurrent status reads (the sweep's
sliding window in ``window.py``; rounds over one client for exact ids), and the application of
each answer; plus expiry and dead-submit detection.

A claim is ``SELECT ... FOR UPDATE SKIP LOCKED`` with a lease sized for one request, so
overlapping sweeps never poll one task twice at once; every answer is applied with a
conditional state move, so a late or duplicate one changes nothing (ARCHITECTURE.md,
"Polling"; providers.md, each provider's status section and poll cadence).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, models, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from billing import services as billing_services
from generations import services  # the queue and apply-update are looked up there (see its docstring)
from generations.models import ArchiveState, Generation, State
from generations.services.lifecycle import _event, _log, _pause_account, _time_scale, _timeouts, _transition
from providers.base import TaskState, TaskUpdate
from providers.http import ProviderError, ProviderHttp, make_poll_client
from providers.models import ProviderAccount

log = logging.getLogger(__name__)


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

    The sweep's window (``window.py``) sends a claimed generation once at most ``cap`` reads
    ahead of it have answered, and only while its lease still covers a whole request, so a
    lease has to outlast one request of waiting plus its own (connect timeout + twice the read
    timeout, for an answer that trickles in) and the apply, with a margin.
    """
    return settings.HAILUO_PROVIDER_CONNECT_TIMEOUT + 2 * settings.HAILUO_PROVIDER_READ_TIMEOUT + 30


def _round_size() -> int:
    """Claims per account and round on the rounds path (callback wake-ups; every poll on SQLite):
    ``HAILUO_POLL_CONCURRENCY_PER_ACCOUNT``, else the providers' default ``poll_concurrency``."""
    from providers.base import ProviderAdapter

    return max(1, settings.HAILUO_POLL_CONCURRENCY_PER_ACCOUNT or ProviderAdapter.poll_concurrency)


def _claimable(*, ids: list | None, exclude: set | None, now: datetime):
    """In-flight generations with a task id and no live lease: exactly ``ids``, or the due ones.

    Also expired ones still in their late-result grace (``late_poll_until``, polled slowly).
    """
    rows = Generation.objects.filter(
        Q(poll_lease_until__isnull=True) | Q(poll_lease_until__lt=now),
        Q(state__in=[State.SUBMITTED, State.RUNNING]) | Q(state=State.EXPIRED, late_poll_until__gt=now),
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
    per_account = per_account or _round_size()
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
    limit = _round_size()
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

    Due ones on PostgreSQL: one pass of the sliding window (``window.sweep_due``): each
    account's ``poll_concurrency`` reads kept in flight while claims and applies run beside
    them, until nothing due at the start is left or ``limit`` (default ``HAILUO_POLL_BATCH``)
    were polled. Exactly ``ids`` (a callback's wake-up, admin), and everything on SQLite:
    rounds: claim at most the concurrency per provider account, send their status requests at
    once over one shared client, apply the answers, claim the next round. Each claim's lease covers one request
    (:func:`poll_lease_seconds`), so a slow provider never outlives it. First, needs_reconciliation
    generations whose task id a callback reported are checked (:func:`generations_resolve_reported`).

    Returns counts by outcome, e.g. ``{"polled": 40, "succeeded": 3, "errors": 1}``.
    """
    budget = limit or settings.HAILUO_POLL_BATCH
    per_account = _round_size()
    from generations.services.resolve import generations_resolve_reported

    counts: dict[str, int] = defaultdict(int, generations_resolve_reported(ids=ids))
    if ids is None and connection.vendor == "postgresql":  # the sweep: a sliding window (window.py)
        from generations.services.window import sweep_due

        for key, value in sweep_due(budget=budget, clock=lambda: timezone.now()).items():
            counts[key] += value
        return dict(counts)
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
                _log_answer(job, adapters[job.account_id].kind, outcome)
                if isinstance(outcome, ProviderError):
                    counts["errors"] += 1
                    _poll_failed(job, outcome)
                elif _is_plain_progress(job, outcome):
                    plain.append((job, outcome))
                else:
                    counts[services.generation_apply_update(generation_id=job.generation_id, update=outcome)] += 1
            if plain:
                _apply_progress(plain)
                counts["in_progress"] += len(plain)
    finally:
        if loop is not None:
            loop.run_until_complete(client.aclose())
            loop.close()
    return dict(counts)


def _log_answer(job: _PollJob, provider: str, outcome: TaskUpdate | ProviderError) -> None:
    """The lifecycle line of one poll answer (step ``polled``), from the claim: no query.

    A failed poll is INFO with its ``error`` code and ``http_status`` (:func:`_poll_failed`
    also logs the error itself as a WARNING); an answer is DEBUG (a line per poll of every
    task in flight would flood the log; the state moves it causes have their own INFO lines).
    """
    if isinstance(outcome, ProviderError):
        _log(job.generation_id, "polled", provider=provider, task_id=job.task_id, state=job.state,
             error=outcome.code, http_status=outcome.http_status)
    else:
        _log(job.generation_id, "polled", level=logging.DEBUG, provider=provider, task_id=job.task_id, state=job.state,
             provider_state=outcome.provider_state, progress=outcome.progress)


def _is_plain_progress(job: _PollJob, update: TaskUpdate) -> bool:
    """An answer that changes no state: still in progress (or an undocumented state), in the
    state the row was claimed in, no provider cost to record. Most answers are like this."""
    if update.provider_cost is not None:
        return False
    if update.state is TaskState.UNKNOWN:
        return True
    if job.state == State.EXPIRED:  # a late task still running: poll again, slowly
        return update.state in (TaskState.QUEUED, TaskState.RUNNING)
    return update.state is TaskState.QUEUED or (update.state is TaskState.RUNNING and job.state == State.RUNNING)


def _apply_progress(answers: list[tuple[_PollJob, TaskUpdate]]) -> None:
    """Apply a round's "still in progress" answers in one UPDATE: next poll time, provider
    state and progress, lease cleared. Rows that became final meanwhile are left alone."""
    next_at, states, progress = [], [], []
    for job, update in answers:
        if update.state is TaskState.UNKNOWN:
            log.warning("generation %s: undocumented provider state %r; polling again", job.generation_id, update.provider_state)
        pk = job.generation_id
        when = _late_poll_at() if job.state == State.EXPIRED else _next_poll_at(job.poll_interval, job.started_at)
        next_at.append(When(pk=pk, then=Value(when)))
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
        pk__in=[job.generation_id for job, _ in answers], state__in=[State.SUBMITTED, State.RUNNING, State.EXPIRED]
    ).update(**fields)


def _next_poll(generation: Generation, retry_after: float | None = None) -> datetime:
    """Next poll time of ``generation`` (see :func:`_next_poll_at`; an expired one: :func:`_late_poll_at`)."""
    if generation.state == State.EXPIRED:
        return _late_poll_at(retry_after)
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


def _late_poll_at(retry_after: float | None = None) -> datetime:
    """Next slow poll of an expired task in its grace: ``HAILUO_LATE_POLL_INTERVAL`` s (time-scaled,
    ±20 % jitter), never before Retry-After."""
    interval = settings.HAILUO_LATE_POLL_INTERVAL * _time_scale() * random.uniform(0.8, 1.2)
    return timezone.now() + timedelta(seconds=max(interval, retry_after or 0.0))


def _poll_failed(job: _PollJob, exc: ProviderError) -> None:
    """Poll this generation later; a 429 pauses its whole provider account for the Retry-After."""
    generation = Generation.objects.get(pk=job.generation_id)
    if exc.http_status == 429:
        _pause_account(job.account_id, exc.retry_after)
    if exc.http_status in (401, 402):
        # An account-level problem (bad key, no credit): staff are emailed, at most hourly per account.
        from providers.alerts import account_problem_notify

        account_problem_notify(account=generation.provider_account, status=exc.http_status, detail=exc.message)
    Generation.objects.filter(pk=job.generation_id).update(
        poll_lease_until=None, next_poll_at=_next_poll(generation, exc.retry_after)
    )
    log.warning("poll of %s failed: %r", job.generation_id, exc)


def generation_apply_update(*, generation_id, update: TaskUpdate) -> str:
    """Apply a provider's TaskUpdate to a generation; returns the outcome name.

    Success captures exactly once and queues the archive; failure and cancel release the
    hold; an unknown provider state is logged and polled again, never taken as success.

    An expired generation in its late-result grace (issue 11, "Late results never lost"): a
    success moves it ``expired → succeeded`` marked ``late`` with a late capture (its hold
    was released at expiry; ``billing.services.ledger_capture_late``) and queues the archive;
    a failure or cancel changes nothing but ends the grace; anything else polls again slowly.
    Outcomes: ``succeeded``, ``late_succeeded``, ``failed``, ``canceled``, ``in_progress``,
    ``ignored``.
    """
    generation = Generation.objects.get(pk=generation_id)
    now = timezone.now()
    common = {"poll_lease_until": None, "provider_state": update.provider_state[:40]}
    if update.provider_cost is not None:
        common["provider_cost"] = dict(update.provider_cost)
    if update.state is TaskState.SUCCEEDED:
        success = dict(
            data={"result_urls": list(update.result_urls)},
            result_urls=list(update.result_urls),
            completed_at=update.completed_at or now,
            progress=100,
            archive_state=ArchiveState.PENDING,
            next_archive_at=now,
            charged_amount=generation.quoted_amount,
            **common,
        )
        late = False
        with transaction.atomic():
            moved = _transition(
                generation_id, State.SUCCEEDED, from_states={State.SUBMITTED, State.RUNNING}, generation=generation,
                message=f"Succeeded at the provider ({update.provider_state})", **success,
            )
            if moved:
                billing_services.ledger_capture(generation=generation)
            else:
                moved = late = _transition(
                    generation_id, State.SUCCEEDED, from_states={State.EXPIRED},
                    message=f"Late success at the provider ({update.provider_state}) after expiry: charged late",
                    late=True, late_poll_until=None, **success,
                )
                if late:
                    billing_services.ledger_capture_late(generation=generation)
            if moved:
                transaction.on_commit(lambda: services.enqueue_archive(generation_id))
        if not moved:
            return "ignored"
        return "late_succeeded" if late else "succeeded"
    if generation.state == State.EXPIRED and update.state in (TaskState.FAILED, TaskState.CANCELED):
        # A late failure changes nothing (the hold was released at expiry); stop polling it.
        if Generation.objects.filter(pk=generation_id, state=State.EXPIRED, late_poll_until__isnull=False).update(
            late_poll_until=None, next_poll_at=None, **common
        ):
            _event(generation_id, "", f"Late answer after expiry: {update.provider_state} {update.fail_code}".strip()
                   + "; nothing changes")
        return "ignored"
    if update.state in (TaskState.FAILED, TaskState.CANCELED):
        to = State.FAILED if update.state is TaskState.FAILED else State.CANCELED
        with transaction.atomic():
            moved = _transition(
                generation_id,
                to,
                generation=generation,
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
        generation_id, State.RUNNING, generation=generation, message=f"Running ({update.provider_state})", **fields
    )
    if not moved:
        Generation.objects.filter(pk=generation_id, state__in=[State.SUBMITTED, State.RUNNING, State.EXPIRED]).update(**fields)
    return "in_progress"


def generations_expire(*, now: datetime | None = None) -> int:
    """Give up on in-flight generations older than ``HAILUO_MAX_TASK_LIFETIME``; returns how many.

    Where the provider documents a cancel for the task's state (``capabilities.cancel``,
    qingbo while queued: providers.md "Cancel Task"), it is sent first with our key: accepted
    → ``canceled`` and the hold released (the provider refunds it too). Otherwise, or when
    refused → ``expired`` and the hold released; a task whose id we know is then still polled
    slowly for ``HAILUO_LATE_RESULT_GRACE`` s (``late_poll_until``), so a late success is
    captured (marked late) and archived, not lost while the provider bills it.
    """
    from generations.services.reconcile import cancel_at_provider

    now = now or timezone.now()
    cutoff = now - timedelta(seconds=settings.HAILUO_MAX_TASK_LIFETIME)
    count = 0
    # The task's age counts from its submit: a request that waited for approval starts late (approvals).
    rows = Generation.objects.filter(
        Q(submitted_at__lt=cutoff) | Q(submitted_at__isnull=True, created_at__lt=cutoff), state__in=[State.SUBMITTED, State.RUNNING]
    ).select_related("provider_account")
    for generation in rows:
        note = f"No final answer after {settings.HAILUO_MAX_TASK_LIFETIME} s"
        account = generation.provider_account
        if generation.provider_task_id and account.adapter_cls.can_cancel_in(generation.provider_state):
            try:
                cancel_at_provider(generation)
            except (ProviderError, ValueError) as exc:
                note += f"; the provider's cancel was refused ({exc})"
            else:
                with transaction.atomic():
                    if _transition(generation.pk, State.CANCELED, message=f"{note}: canceled at the provider", completed_at=now):
                        billing_services.ledger_release(generation=generation, reason="expired: canceled at the provider")
                        count += 1
                continue
        late = {}
        if generation.provider_task_id and settings.HAILUO_LATE_RESULT_GRACE > 0:
            late = {"late_poll_until": now + timedelta(seconds=settings.HAILUO_LATE_RESULT_GRACE), "next_poll_at": _late_poll_at()}
            note += f"; still polled slowly for {settings.HAILUO_LATE_RESULT_GRACE} s in case it succeeds late"
        with transaction.atomic():
            if _transition(generation.pk, State.EXPIRED, generation=generation, message=note, completed_at=now, poll_lease_until=None, **late):
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
                next_poll_at=timezone.now(),  # a task id a callback reported is checked at once
            )
    return count
