"""Reads about batches, scoped to what a member may see, and their progress.

Visibility is the gallery's: a member sees their own batches and their teams'; another
team's batch is absent (views and the API answer 404, never 403).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from django.db.models import Count, Q, QuerySet, Sum

from billing.models import LedgerEntry
from billing.money import format_cents, format_usd, money
from generations.models import FINAL_STATES, Batch, Generation, State
from generations.selectors import team_ids_of

#: States counted as "failed" in a batch's progress (ended without a video, nothing charged).
FAILED_STATES = (State.FAILED, State.EXPIRED, State.CANCELED)


def batches_visible_to(*, user, team_ids: list[int] | None = None) -> QuerySet[Batch]:
    """Batches ``user`` may see: their own and their teams', newest first."""
    if team_ids is None:
        team_ids = team_ids_of(user)
    return Batch.objects.filter(Q(user=user) | Q(team_id__in=team_ids)).select_related("user", "team", "project")


def batch_for(*, user, batch_id) -> Batch | None:
    """One visible batch, or None (another team's, or no such batch)."""
    return batches_visible_to(user=user).filter(pk=batch_id).first()


def batch_generations(batch: Batch) -> list[Generation]:
    """The batch's generations in their batch order (``batch_index``)."""
    return list(batch.generations.select_related("provider_account", "user").order_by("batch_index", "created_at"))


@dataclass
class BatchProgress:
    """How far a batch got: counts by outcome and the money (USD, from the ledger).

    ``succeeded``; ``failed`` (failed, expired or canceled: released, not charged);
    ``running`` (everything not final yet, needs reconciliation included); ``quoted`` is the
    batch's total quote (= its holds); ``charged`` the sum of its captures."""

    total: int
    succeeded: int = 0
    failed: int = 0
    running: int = 0
    quoted: Decimal = Decimal(0)
    charged: Decimal = Decimal(0)
    states: dict[str, int] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        return self.running == 0

    @property
    def percent(self) -> int:
        return int((self.succeeded + self.failed) * 100 / self.total) if self.total else 100

    @property
    def quoted_display(self) -> str:
        return format_cents(self.quoted)

    @property
    def charged_display(self) -> str:
        return format_cents(self.charged)

    @property
    def summary(self) -> str:
        """E.g. "7 succeeded, 1 failed, 2 running of 10"."""
        return f"{self.succeeded} succeeded, {self.failed} failed, {self.running} running of {self.total}"


def batch_progress(batches: list[Batch]) -> dict:
    """{batch id: :class:`BatchProgress`} for ``batches``, in two queries whatever their size
    (counts by state; ledger sums of captures)."""
    ids = [b.pk for b in batches]
    if not ids:
        return {}
    out = {b.pk: BatchProgress(total=b.size, quoted=money(b.quoted_total)) for b in batches}
    rows = Generation.objects.filter(batch_id__in=ids).values("batch_id", "state").annotate(n=Count("id")).order_by()
    for row in rows:
        progress = out[row["batch_id"]]
        progress.states[row["state"]] = row["n"]
        if row["state"] == State.SUCCEEDED:
            progress.succeeded += row["n"]
        elif row["state"] in FAILED_STATES:
            progress.failed += row["n"]
        elif row["state"] not in FINAL_STATES:
            progress.running += row["n"]
    charged = (
        LedgerEntry.objects.filter(generation__batch_id__in=ids, kind=LedgerEntry.Kind.CAPTURE)
        .values("generation__batch_id").annotate(total=Sum("amount")).order_by()
    )
    for row in charged:
        out[row["generation__batch_id"]].charged = money(row["total"] or 0)
    return out


@dataclass
class GalleryGroup:
    """Consecutive gallery cards of one batch, shown together under its progress."""

    batch: Batch
    progress: BatchProgress
    items: list[Generation]

    @property
    def shown_all(self) -> bool:
        return len(self.items) >= self.batch.size


def gallery_rows(items: list[Generation]) -> list[dict]:
    """The gallery's cards with a batch's consecutive cards folded into one group:
    ``[{"g": generation} | {"group": GalleryGroup}, ...]`` in page order. No query when no
    card belongs to a batch; else three (the batches, their counts, their captures)."""
    ids = {g.batch_id for g in items if g.batch_id}
    if not ids:
        return [{"g": g} for g in items]
    batches = {b.pk: b for b in Batch.objects.filter(pk__in=ids).select_related("user")}
    progress = batch_progress(list(batches.values()))
    rows: list[dict] = []
    for g in items:
        last = rows[-1].get("group") if rows else None
        if g.batch_id and last is not None and last.batch.pk == g.batch_id:
            last.items.append(g)
        elif g.batch_id in batches:
            rows.append({"group": GalleryGroup(batch=batches[g.batch_id], progress=progress[g.batch_id], items=[g])})
        else:
            rows.append({"g": g})
    for row in rows:  # a group reads in batch order (the page itself is newest first)
        if "group" in row:
            row["group"].items.sort(key=lambda g: g.batch_index or 0)
    return rows


def batch_budget_preview(*, user, team, total: Decimal) -> dict:
    """The budget context of a batch preview: each budget layer that applies (``billing``'s
    ``budget_statuses_for``) with what it has left, and the hard ones the batch's ``total``
    would exceed (the batch would be refused whole)."""
    from billing.selectors import budget_statuses_for

    statuses = budget_statuses_for(user=user, team=team)
    remaining = min((s.remaining for s in statuses), default=None)
    over = [s for s in statuses if s.budget.hard and total > s.remaining]
    return {
        "budget_statuses": statuses,
        "remaining": format_cents(remaining) if remaining is not None else None,
        "remaining_after": format_cents(remaining - total) if remaining is not None else None,
        "over": [
            f"{s.budget.scope_label} budget of {format_usd(s.budget.amount)} {s.budget.get_period_display()}: "
            f"{format_cents(max(s.remaining, Decimal(0)))} left"
            for s in over
        ],
        "fits": not over,
    }
