"""Variants and batches: many generations from one submit, all held or none.

:func:`batch_plan` validates and prices every item (no writes); :func:`batch_create` writes
the :class:`~generations.models.Batch`, every generation and every hold in ONE
``transaction.atomic()`` (``create.generation_write`` per item), so a hard budget without room
for the whole batch refuses it whole: no row, no ledger entry, nothing sent. Each submit is
enqueued on commit, so no provider request leaves before the whole batch is committed
(ARCHITECTURE.md, "The lifecycle" and "Money"). :func:`variants_create` is N copies of one
request (1 to :data:`MAX_VARIANTS`).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from django.db import IntegrityError, transaction

from billing import services as billing_services
from billing.money import format_usd, money
from billing.pricing import Quote
from generations.batches.parsing import MAX_BATCH_ROWS, BatchInvalid, BatchItem, RowError
from generations.models import Batch, Generation
from generations.services.create import CreateParams, _booked_team, generation_quote, generation_write
from generations.services.lifecycle import GenerationRefused
from providers.models import ProviderAccount
from providers.registry import model_label

#: "N variants" of one request: at least 1, at most this many in one submit.
MAX_VARIANTS = 4


@dataclass
class BatchShared:
    """The settings every item shares unless it overrides them (``BatchItem``): a provider
    account, model, mode, duration (s), resolution, first-frame URL, provider options, project."""

    provider_account_id: int
    model: str = ""
    mode: str = ""
    duration: int | None = None
    resolution: str = ""
    image_url: str = ""
    options: dict[str, Any] = field(default_factory=dict)
    project_id: int | None = None

    def as_dict(self) -> dict:
        return {
            "provider_account_id": self.provider_account_id, "model": self.model, "mode": self.mode,
            "duration": self.duration, "resolution": self.resolution, "image_url": self.image_url,
            "options": dict(self.options), "project_id": self.project_id,
        }

    @classmethod
    def from_params(cls, params: CreateParams) -> BatchShared:
        return cls(
            provider_account_id=params.provider_account_id, model=params.model, mode=params.mode,
            duration=int(params.duration), resolution=params.resolution, image_url=params.image_url or "",
            options=dict(params.options), project_id=params.project_id,
        )


@dataclass
class PlannedItem:
    """One item of a plan: what was asked, the parameters it resolves to, its quote (USD)."""

    item: BatchItem
    params: CreateParams
    quote: Quote
    model_label: str = ""


@dataclass
class BatchPlan:
    """Every item validated and priced; ``total`` is the sum of the quotes (USD)."""

    account: ProviderAccount
    items: list[PlannedItem]
    total: Decimal

    @property
    def display_total(self) -> str:
        return format_usd(self.total)


def _params(shared: BatchShared, item: BatchItem, errors: list[RowError]) -> CreateParams | None:
    values = {
        "model": item.model or shared.model, "mode": item.mode or shared.mode,
        "duration": item.duration or shared.duration, "resolution": item.resolution or shared.resolution,
    }
    missing = [name for name, value in values.items() if not value]
    for name in missing:
        errors.append(RowError(item.where, name, "Required: give it in the shared settings or in this row."))
    if missing:
        return None
    return CreateParams(
        provider_account_id=shared.provider_account_id, prompt=item.prompt,
        image_url=item.image_url if item.image_url is not None else shared.image_url,
        options=dict(shared.options), project_id=shared.project_id, **values,
    )


def batch_plan(*, shared: BatchShared, items: list[BatchItem], errors: list[RowError] | None = None) -> BatchPlan:
    """Validate and price every item against its provider's rules (``generation_quote``). No writes.

    Raises :class:`~generations.batches.parsing.BatchInvalid` (422 ``validation_error``) naming
    every refused item and field (e.g. ``row 3``, ``duration``), or ``GenerationRefused``
    ``provider_unavailable`` for a missing or disabled account. Identical items (variants) are
    validated and priced once. ``errors``: problems already found while reading the items
    (``parsing``'s ``collect``); they are reported with these, and their rows are not planned.
    """
    if not items or len(items) > MAX_BATCH_ROWS:
        raise BatchInvalid([RowError("", "", f"{len(items)} items: a batch holds 1 to {MAX_BATCH_ROWS}.")])
    account = ProviderAccount.objects.filter(pk=shared.provider_account_id).first()
    if account is None or not account.enabled:
        raise GenerationRefused(
            "provider_unavailable", "This provider account does not exist or is disabled.", {"provider_account": ["Unavailable."]}
        )
    errors = list(errors or [])
    broken = {e.where for e in errors}
    planned: list[PlannedItem] = []
    quotes: dict[tuple, Quote | GenerationRefused] = {}
    for item in items:
        if item.where in broken:
            continue
        params = _params(shared, item, errors)
        if params is None:
            continue
        key = (params.model, params.mode, params.prompt, params.duration, params.resolution, params.image_url)
        if key not in quotes:
            try:
                quotes[key] = generation_quote(params=params, account=account)
            except GenerationRefused as refused:
                if refused.code not in ("validation_error", "no_price_rule"):
                    raise
                quotes[key] = refused
        found = quotes[key]
        if isinstance(found, GenerationRefused):
            for name, messages in (found.fields or {"": [found.message]}).items():
                for message in messages:
                    errors.append(RowError(item.where, "" if name == "__all__" else name, message))
            continue
        planned.append(PlannedItem(item=item, params=params, quote=found, model_label=model_label(account.kind, params.model)))
    if errors:
        order = {item.where: n for n, item in enumerate(items)}
        raise BatchInvalid(sorted(errors, key=lambda e: order.get(e.where, -1)))
    return BatchPlan(account=account, items=planned, total=money(sum((p.quote.amount for p in planned), Decimal(0))))


def batch_fingerprint(*, shared: BatchShared, items: list[BatchItem], kind: str, extra: dict | None = None) -> str:
    """SHA-256 hex of the canonical JSON of a batch request (sorted keys, no spaces): the same
    shared settings, items (prompts and overrides, in order), kind and ``extra`` (team, title)
    give the same fingerprint; any difference changes it."""
    body = {"kind": kind, "shared": shared.as_dict(), "items": [i.as_dict() for i in items], **(extra or {})}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def batch_for_key(*, user, idempotency_key: str, fingerprint: str) -> Batch | None:
    """The batch ``user`` already made with ``idempotency_key`` (marked ``replayed``), or None.

    Raises ``idempotency_conflict`` (409) when the key came with another request: another
    body (``fingerprint`` differs) or a single generation's create."""
    existing = Batch.objects.filter(user=user, idempotency_key=idempotency_key).first()
    if existing is None:
        if Generation.objects.filter(user=user, idempotency_key=idempotency_key).exists():
            raise _conflict()
        return None
    if existing.request_fingerprint != fingerprint:
        raise _conflict()
    existing.replayed = True
    return existing


def _conflict() -> GenerationRefused:
    return GenerationRefused("idempotency_conflict", "This idempotency key was already used with different parameters.")


def batch_create(
    *, user, shared: BatchShared, items: list[BatchItem], kind: str = Batch.Kind.BATCH, team=None, title: str = "",
    idempotency_key: str | None = None, fingerprint: str = "", errors: list[RowError] | None = None,
) -> Batch:
    """Validate and price every item, then write the batch, its generations and their holds in
    one transaction: all or none. Returns the :class:`Batch` (``replayed`` when the key was
    used before with the same ``fingerprint``, which defaults to :func:`batch_fingerprint`).

    ``team``: as ``generation_create`` (a ``Team`` or id of the user's; default the primary
    team; else 403 ``team_forbidden``); every budget layer of it applies to every hold, so the
    whole batch must fit. Raises ``BatchInvalid`` (422, per row and field), 402
    ``budget_exceeded`` naming the budget the batch would exceed (billing's
    ``BudgetExceeded`` message, for the whole batch's total), 403 ``budget_not_allowed``,
    409 ``idempotency_conflict``; nothing is written then, and nothing is sent. ``errors``: as
    :func:`batch_plan`.
    """
    team = _booked_team(user, team)
    key = idempotency_key or None
    if key:
        fingerprint = fingerprint or batch_fingerprint(shared=shared, items=items, kind=kind)
        existing = batch_for_key(user=user, idempotency_key=key, fingerprint=fingerprint)
        if existing is not None:
            return existing
    plan = batch_plan(shared=shared, items=items, errors=errors)
    size = len(plan.items)
    subject = f"this batch of {size}" if kind == Batch.Kind.BATCH else f"these {size} variants"
    try:
        with transaction.atomic():
            batch = Batch.objects.create(
                user=user, team=team, project_id=shared.project_id, kind=kind, size=size, quoted_total=plan.total,
                title=(title or plan.items[0].params.prompt)[:200], shared=shared.as_dict(), idempotency_key=key,
                request_fingerprint=fingerprint if key else "",
            )
            held = Decimal(0)
            for index, planned in enumerate(plan.items, 1):
                try:
                    generation_write(
                        user=user, team=team, account=plan.account, params=planned.params, priced=planned.quote,
                        batch=batch, batch_index=index,
                    )
                except billing_services.BudgetExceeded as exc:
                    # The same budget, for the whole batch: what was left before it, against its total.
                    raise billing_services.BudgetExceeded(
                        budget=exc.budget, amount=plan.total, remaining=money(exc.remaining + held), subject=subject,
                    ) from exc
                except billing_services.BudgetNotAllowed as exc:
                    raise billing_services.BudgetNotAllowed(f"{planned.item.where[:1].upper()}{planned.item.where[1:]}: {exc}") from exc
                held += planned.quote.amount
    except billing_services.BudgetExceeded as exc:
        raise GenerationRefused("budget_exceeded", str(exc), {"__all__": [str(exc)]}) from exc
    except billing_services.BudgetNotAllowed as exc:
        raise GenerationRefused("budget_not_allowed", str(exc), {"__all__": [str(exc)]}) from exc
    except IntegrityError:
        # An idempotency race: the unique constraint caught a twin committed meanwhile.
        if key:
            existing = batch_for_key(user=user, idempotency_key=key, fingerprint=fingerprint)
            if existing is not None:
                return existing
        raise
    return batch


def variants_create(
    *, user, params: CreateParams, count: int, team=None, idempotency_key: str | None = None, fingerprint: str = "",
) -> Batch:
    """``count`` (1 to :data:`MAX_VARIANTS`) generations of the same request, in one batch of
    kind ``variants``: all held or none (:func:`batch_create`). Raises ``validation_error``
    on field ``variants`` for a count out of bounds, else as :func:`batch_create`."""
    if not isinstance(count, int) or not 1 <= count <= MAX_VARIANTS:
        message = f"Variants: 1 to {MAX_VARIANTS}."
        raise GenerationRefused("validation_error", message, {"variants": [message]})
    base = BatchItem(where="variant 1", prompt=params.prompt)
    items = [replace(base, where=f"variant {n}") for n in range(1, count + 1)]
    shared = BatchShared.from_params(params)
    return batch_create(
        user=user, shared=shared, items=items, kind=Batch.Kind.VARIANTS, team=team,
        title=params.prompt[:200], idempotency_key=idempotency_key, fingerprint=fingerprint,
    )


__all__ = [
    "MAX_VARIANTS", "BatchInvalid", "BatchPlan", "BatchShared", "PlannedItem", "batch_create", "batch_fingerprint",
    "batch_for_key", "batch_plan", "variants_create",
]
