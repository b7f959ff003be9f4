"""The poll sweep's sliding window (issue 16): ``cap`` status reads kept in flight per provider
account, while the claims of the next due generations and the applies of the answers run beside them.

Two threads share the work of one pass (:func:`sweep_due`):

- the caller's thread does every database step: it claims due generations per account
  (one ``UPDATE … FROM (SELECT … FOR UPDATE SKIP LOCKED)``, which leases them), hands them
  to the I/O thread, and applies the answers as they come back (plain "still in progress"
  answers in one set-based ``UPDATE … FROM unnest(…)`` per batch; every other answer through
  ``services.generation_apply_update``, i.e. the lifecycle's guarded transitions and the
  ledger: capture exactly once, release never twice);
- :class:`SweepIO`'s thread runs an event loop with one aiohttp client per provider account
  (:func:`providers.aio.make_sweep_session`, long-lived: one per sweep run, not per call) and
  keeps at most ``cap`` reads of that account in flight, starting the next claimed one the
  moment one answers. The adapters build each request and parse each answer
  (``fetch_status`` over :class:`providers.aio.AioProviderHttp`).

Leases: a claimed generation waits in the I/O thread's queue at most while ``cap`` reads
ahead of it answer. It is sent only while its lease still covers a whole request (connect +
read timeout, with a margin); otherwise it is dropped unsent and polled by a later claim, so
no generation is ever polled by two sweeps at once. A generation is claimed at most once per
pass: only those due when the pass started are claimed (a poll moves ``next_poll_at`` past it).

PostgreSQL only (raw SQL); on SQLite ``generations_poll`` keeps its rounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection
from django.db.models import F
from django.utils import timezone

from generations import services  # generation_apply_update is looked up there (tests replace it)
from generations.models import Generation, State
from generations.services import poll
from generations.services.lifecycle import _timeouts
from providers.aio import AioProviderHttp, make_sweep_session
from providers.base import TaskState, TaskUpdate
from providers.http import ProviderError, Sent
from providers.models import ProviderAccount

log = logging.getLogger(__name__)

#: The outcome of a claimed generation the I/O thread did not send (its lease no longer covered
#: a request, or its account was paused by a 429 meanwhile).
DROPPED = "dropped"
#: Seconds of lease a claimed generation must have left, beyond connect + read timeout, to be sent.
LEASE_MARGIN = 5.0


def poll_concurrency(adapter_cls) -> int:
    """Status reads kept in flight for one account of ``adapter_cls``'s provider.

    ``HAILUO_POLL_CONCURRENCY_PER_ACCOUNT`` when set above 0, else the provider's documented
    default ``adapter_cls.poll_concurrency`` (README, "Poll concurrency per provider").
    """
    return max(1, settings.HAILUO_POLL_CONCURRENCY_PER_ACCOUNT or adapter_cls.poll_concurrency)


@dataclass
class _Account:
    """One provider account's side of the window, owned by the I/O thread (``buffer``, ``inflight``)."""

    adapter: object
    cap: int
    http: AioProviderHttp | None = None
    inflight: int = 0
    paused: bool = False
    buffer: deque = field(default_factory=deque)  # (job, lease_until) claimed, not yet sent


class SweepIO:
    """An event loop in its own thread keeping each account's status reads in flight.

    ``feed()`` (from the database thread) queues claimed jobs; answers come back on
    ``results`` (a ``queue.SimpleQueue`` of ``(job, lease_until, TaskUpdate | ProviderError |
    DROPPED)``). ``clock()`` is the clock the claims' leases were computed with (aware UTC).
    ``close()`` cancels what is in flight and closes the clients; use it once.
    """

    def __init__(self, *, clock: Callable[[], datetime]):
        self.clock = clock
        self.results: queue.SimpleQueue = queue.SimpleQueue()
        self._accounts: dict[int, _Account] = {}
        self._tasks: set[asyncio.Task] = set()
        self._closing = False
        self._timeouts = _timeouts()
        self._send_margin = timedelta(seconds=self._timeouts.connect + self._timeouts.read + LEASE_MARGIN)
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="poll-sweep-io", daemon=True)
        self._thread.start()

    def alive(self) -> bool:
        """True while the I/O thread runs."""
        return self._thread.is_alive()

    def feed(self, account_id: int, adapter, cap: int, jobs: list, lease_until: datetime) -> None:
        """Queue claimed ``jobs`` (``poll._PollJob``) of one account; ``adapter`` reads their status."""
        self.loop.call_soon_threadsafe(self._feed, account_id, adapter, cap, jobs, lease_until)

    def pause(self, account_id: int) -> None:
        """Send nothing more for this account in this pass: its queued jobs come back DROPPED."""
        self.loop.call_soon_threadsafe(self._pause, account_id)

    def resume_all(self) -> None:
        """A new pass: accounts paused in the previous one may be claimed (and sent) again."""
        self.loop.call_soon_threadsafe(self._resume_all)

    def close(self) -> None:
        """Cancel the reads in flight, close every client, stop the loop and its thread."""
        if not self._thread.is_alive():
            return
        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=30)
        if not self._thread.is_alive():
            self.loop.close()

    # --- inside the loop ---------------------------------------------------------------------
    def _feed(self, account_id, adapter, cap, jobs, lease_until) -> None:
        account = self._accounts.get(account_id)
        if account is None:
            try:
                session = make_sweep_session(cap)
            except Exception as exc:  # every job must come back, or the pass would wait for it forever
                log.exception("no poll client for provider account %s", account_id)
                for job in jobs:
                    self.results.put((job, lease_until, ProviderError(f"no client: {exc!r}", code="unexpected", sent=Sent.NO)))
                return
            account = self._accounts[account_id] = _Account(adapter, cap)
            account.http = AioProviderHttp(session, timeouts=self._timeouts, provider=adapter.label)
        if cap != account.cap and not account.inflight:  # a new pass with another concurrency: a pool of that size
            old, account.http = account.http.session, AioProviderHttp(make_sweep_session(cap), timeouts=self._timeouts,
                                                                      provider=adapter.label)
            closing = self.loop.create_task(old.close())
            self._tasks.add(closing)
            closing.add_done_callback(self._tasks.discard)
        account.adapter, account.cap = adapter, cap  # a new pass may bring a new key or base URL
        account.buffer.extend((job, lease_until) for job in jobs)
        self._pump(account)

    def _pause(self, account_id) -> None:
        account = self._accounts.get(account_id)
        if account is not None:
            account.paused = True
            while account.buffer:
                job, lease_until = account.buffer.popleft()
                self.results.put((job, lease_until, DROPPED))

    def _resume_all(self) -> None:
        for account in self._accounts.values():
            account.paused = False

    def _pump(self, account: _Account) -> None:
        """Start queued reads while the account has fewer than ``cap`` in flight."""
        while account.buffer and account.inflight < account.cap and not self._closing:
            job, lease_until = account.buffer.popleft()
            if account.paused or self.clock() + self._send_margin >= lease_until:
                self.results.put((job, lease_until, DROPPED))  # no longer ours to send: a later claim polls it
                continue
            account.inflight += 1
            task = self.loop.create_task(self._read(account, job, lease_until))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _read(self, account: _Account, job, lease_until) -> None:
        outcome: object = DROPPED
        try:
            outcome = await account.adapter.fetch_status(account.http, task_id=job.task_id, model=job.model)
        except ProviderError as exc:
            outcome = exc
        except Exception as exc:  # a parsing bug must not stop the sweep
            log.exception("status of %s failed", job.generation_id)
            outcome = ProviderError(f"unexpected error: {exc!r}", code="unexpected")
        finally:
            account.inflight -= 1
            self.results.put((job, lease_until, outcome))
            if isinstance(outcome, ProviderError) and outcome.http_status == 429:
                self._pause(job.account_id)  # at once: the account's next reads must not go out meanwhile
            self._pump(account)

    async def _shutdown(self) -> None:
        self._closing = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for account in self._accounts.values():
            if account.http is not None:
                await account.http.session.close()
        self._accounts.clear()


_current = threading.local()


@contextlib.contextmanager
def sweep_io() -> Iterator[SweepIO | None]:
    """Keep one :class:`SweepIO` (its thread and its clients) for every pass in the block.

    ``tasks.poll_sweep`` wraps its ~minute of passes in it, so the clients and their
    connections live for the whole run; without it each pass makes and closes its own.
    Yields None (and starts nothing) on SQLite, where the sweep polls in rounds.
    """
    if connection.vendor != "postgresql":
        yield None
        return
    io = SweepIO(clock=timezone.now)
    _current.io = io
    try:
        yield io
    finally:
        _current.io = None
        io.close()


def _table(model) -> str:
    return connection.ops.quote_name(model._meta.db_table)


def _claim(account_id: int, n: int, *, now: datetime, horizon: datetime, lease_until: datetime) -> list:
    """Lease up to ``n`` generations of one account due at ``horizon`` (one statement, SKIP LOCKED).

    The same rows as ``poll._claimable`` (in flight with a task id and no live lease, or
    expired in their late-result grace), oldest due first, none while the account is paused.
    Counts the poll (``poll_count``). Returns ``poll._PollJob`` rows.
    """
    generations, accounts = _table(Generation), _table(ProviderAccount)
    sql = f"""
        WITH due AS (
            SELECT id FROM {generations}
            WHERE provider_account_id = %(account)s AND provider_task_id <> ''
              AND state IN (%(submitted)s, %(running)s, %(expired)s)
              AND (poll_lease_until IS NULL OR poll_lease_until < %(now)s)
              AND (state IN (%(submitted)s, %(running)s) OR (state = %(expired)s AND late_poll_until > %(now)s))
              AND next_poll_at <= %(horizon)s
              AND NOT EXISTS (SELECT 1 FROM {accounts} a WHERE a.id = %(account)s AND a.paused_until > %(now)s)
            ORDER BY next_poll_at
            LIMIT %(n)s
            FOR UPDATE SKIP LOCKED
        )
        UPDATE {generations} g SET poll_lease_until = %(lease)s, poll_count = g.poll_count + 1
        FROM due WHERE g.id = due.id
        RETURNING g.id, g.provider_task_id, g.model, g.state, g.poll_interval, COALESCE(g.submitted_at, g.created_at)
    """
    params = {"account": account_id, "now": now, "horizon": horizon, "n": n, "lease": lease_until,
              "submitted": State.SUBMITTED.value, "running": State.RUNNING.value, "expired": State.EXPIRED.value}
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [poll._PollJob(row[0], account_id, *row[1:]) for row in cursor.fetchall()]


def _apply_progress(answers: list[tuple[object, TaskUpdate]]) -> None:
    """A batch's "still in progress" answers in one ``UPDATE … FROM unnest(…)``: next poll time,
    provider state and progress, lease cleared; rows that became final meanwhile are left alone
    (the same effect as ``poll._apply_progress``, without a CASE arm per row)."""
    ids, next_at, states, progress = [], [], [], []
    for job, update in answers:
        if update.state is TaskState.UNKNOWN:
            log.warning("generation %s: undocumented provider state %r; polling again", job.generation_id, update.provider_state)
        ids.append(job.generation_id)
        next_at.append(poll._late_poll_at() if job.state == State.EXPIRED else poll._next_poll_at(job.poll_interval, job.started_at))
        states.append(update.provider_state[:40])
        progress.append(None if update.progress is None else max(0, min(100, int(update.progress))))
    sql = f"""
        UPDATE {_table(Generation)} g
        SET poll_lease_until = NULL, next_poll_at = v.next_at, provider_state = v.provider_state,
            progress = COALESCE(v.progress, g.progress)
        FROM unnest(%s::uuid[], %s::timestamptz[], %s::text[], %s::int[]) AS v(id, next_at, provider_state, progress)
        WHERE g.id = ANY(%s::uuid[]) AND g.id = v.id AND g.state IN (%s, %s, %s)
    """
    with connection.cursor() as cursor:  # "= ANY": the batch's rows by primary key, whatever the statistics say
        cursor.execute(sql, [ids, next_at, states, progress, ids, State.SUBMITTED.value, State.RUNNING.value, State.EXPIRED.value])


def _release(jobs: list[tuple[object, datetime]]) -> None:
    """Clear the leases of claimed jobs that were not sent, and uncount their poll (``poll_count``
    counts status reads); only where the lease is still ours (no other sweep claimed it since)."""
    for lease_until in {lease for _, lease in jobs}:
        ids = [job.generation_id for job, lease in jobs if lease == lease_until]
        Generation.objects.filter(pk__in=ids, poll_lease_until=lease_until).update(
            poll_lease_until=None, poll_count=F("poll_count") - 1
        )


#: A sweep claims no more than it can apply in about this many seconds (see :class:`_Pace`).
APPLY_BACKLOG_SECONDS = 1.0


class _Pace:
    """How many claimed generations one sweep may hold (in flight, waiting, or answered and not
    yet applied): what it applies in ``APPLY_BACKLOG_SECONDS`` at its measured pace.

    Plain "still in progress" answers apply in a fraction of a millisecond each (one set-based
    UPDATE per batch), so the window is then bounded by the concurrency alone; state changes go
    through the lifecycle (tens of milliseconds each), and a sweep that claimed hundreds of them
    would apply them one by one while the other sweeps found nothing to do. ``start``: the
    allowance before the first measurement.
    """

    def __init__(self, *, start: int):
        self.per_answer: float | None = None
        self.start = start

    def applied(self, answers: int, seconds: float) -> None:
        """Record a batch: ``answers`` applied in ``seconds`` (a moving average)."""
        if answers:
            each = seconds / answers
            self.per_answer = each if self.per_answer is None else 0.7 * self.per_answer + 0.3 * each

    def allowance(self) -> int:
        """Generations the sweep may hold now (at least 8)."""
        if self.per_answer is None:
            return self.start
        return max(8, int(APPLY_BACKLOG_SECONDS / max(self.per_answer, 1e-5)))


@dataclass
class _Side:
    """The database thread's view of one account in a pass."""

    adapter: object
    cap: int
    outstanding: int = 0  # claimed and handed over, answer not back yet
    done: bool = False  # nothing more to claim in this pass


def sweep_due(*, budget: int, clock: Callable[[], datetime]) -> dict[str, int]:
    """One pass of the window over every provider account with due polls; returns counts by outcome.

    Claims and sends until nothing due at the pass's start is left or ``budget`` generations
    were claimed, keeping each account's ``poll_concurrency`` reads in flight and up to as
    many claimed and waiting (so the window stays full while a claim or an apply runs), within
    what the sweep applies in ``APPLY_BACKLOG_SECONDS`` (:class:`_Pace`), shared between the
    accounts. ``clock``: the clock the leases use (``timezone.now``).
    Counts as ``generations_poll``'s: ``polled``, ``errors``, ``in_progress``, and the
    outcomes of ``services.generation_apply_update``.
    """
    started = clock()
    counts: dict[str, int] = {}
    sides: dict[int, _Side] = {}
    due = poll._accounts_with_due_polls()
    for account_id, account in ProviderAccount.objects.exclude(paused_until__gt=started).in_bulk(due).items():
        try:
            adapter = account.adapter()
        except ValueError as exc:  # the key cannot be decrypted: not claimed, polled once it can be
            log.error("provider account %s unusable: %s", account_id, exc)
            continue
        sides[account_id] = _Side(adapter, poll_concurrency(type(adapter)))
    if not sides:
        return counts
    io = getattr(_current, "io", None)
    own = io is None or not io.alive()
    if own:
        io = SweepIO(clock=clock)
    else:
        io.clock = clock
        io.resume_all()
    lease_seconds = poll.poll_lease_seconds()
    pace = io.pace = getattr(io, "pace", None) or _Pace(start=max(8, max(side.cap for side in sides.values()) // 4))
    try:
        while True:
            claimed = False
            allowance = pace.allowance()
            share = max(1, allowance // max(1, sum(not s.done for s in sides.values())))  # no account starves another
            for account_id, side in sides.items():
                total = sum(s.outstanding for s in sides.values())
                # cap in flight and up to cap more claimed, but no more than this sweep applies in
                # APPLY_BACKLOG_SECONDS: other sweeps share what this one could not apply soon.
                target = min(2 * side.cap, share)
                room = min(target - side.outstanding, allowance - total, budget)
                step = max(1, min(side.cap, allowance) // 4)  # claims of a useful size, not one per answer
                if side.done or room <= 0 or (side.outstanding and room < step):
                    continue
                now = clock()
                lease_until = now + timedelta(seconds=lease_seconds)
                jobs = _claim(account_id, room, now=now, horizon=started, lease_until=lease_until)
                side.done = len(jobs) < room
                if jobs:
                    budget -= len(jobs)
                    side.outstanding += len(jobs)
                    io.feed(account_id, side.adapter, side.cap, jobs, lease_until)
                    claimed = True
                if budget <= 0:
                    for other in sides.values():
                        other.done = True
            if not any(side.outstanding for side in sides.values()):
                if all(side.done for side in sides.values()):
                    return counts
                continue
            answers = _collect(io, block=not claimed)
            for job, _, _ in answers:
                sides[job.account_id].outstanding -= 1
            applying = time.perf_counter()
            _apply(answers, counts, sides, io)
            pace.applied(len(answers), time.perf_counter() - applying)
    except BaseException:
        io.close()  # nothing more is sent for this pass; its leases lapse
        _current.io = None
        raise
    finally:
        if own:
            io.close()


def _collect(io: SweepIO, *, block: bool, most: int = 1000) -> list:
    """The answers ready now (waiting for at least one when ``block``), at most ``most``."""
    answers = []
    while len(answers) < most:
        try:
            answers.append(io.results.get(block=block and not answers, timeout=1.0))
        except queue.Empty:
            if not block or answers:
                break
            if not io.alive():
                raise RuntimeError("the poll sweep's I/O thread stopped") from None
    return answers


def _apply(answers: list, counts: dict[str, int], sides: dict, io: SweepIO) -> None:
    """Apply a batch of answers (the caller's thread): errors, plain progress, lifecycle moves."""
    plain: list[tuple[object, TaskUpdate]] = []
    unsent: list[tuple[object, datetime]] = []
    for job, lease_until, outcome in answers:
        if outcome is DROPPED:
            unsent.append((job, lease_until))
            continue
        counts["polled"] = counts.get("polled", 0) + 1
        poll._log_answer(job, sides[job.account_id].adapter.kind, outcome)
        if isinstance(outcome, ProviderError):
            counts["errors"] = counts.get("errors", 0) + 1
            poll._poll_failed(job, outcome)
            if outcome.http_status == 429:  # the account is paused: nothing more is claimed or sent for it
                sides[job.account_id].done = True
                io.pause(job.account_id)
        elif poll._is_plain_progress(job, outcome):
            plain.append((job, outcome))
        else:
            result = services.generation_apply_update(generation_id=job.generation_id, update=outcome)
            counts[result] = counts.get(result, 0) + 1
    if plain:
        _apply_progress(plain)
        counts["in_progress"] = counts.get("in_progress", 0) + len(plain)
    if unsent:
        _release(unsent)
