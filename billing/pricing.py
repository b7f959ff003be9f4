"""The pure quote function: facts + price rules → an amount in USD.

No database access: callers pass the candidate rules (``billing.selectors.price_rules_for``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from billing.money import format_usd, money


class NoPriceRule(LookupError):
    """No price rule covers these facts at this time: the model cannot be used until an admin adds one."""


@dataclass(frozen=True)
class Quote:
    """A priced request: ``amount`` in USD (six places), the winning rule and its snapshot."""

    amount: Decimal
    rule: object
    snapshot: dict

    @property
    def display(self) -> str:
        return format_usd(self.amount)


def _specificity(rule) -> int:
    return (1 if rule.mode else 0) + (1 if rule.resolution else 0) + (1 if rule.duration else 0)


def rule_matches(rule, *, provider_kind: str, model: str, mode: str, resolution: str, seconds: int, at: datetime) -> bool:
    """True when ``rule`` applies to these facts at ``at`` (blank fields match anything)."""
    return (
        rule.provider_kind == provider_kind
        and rule.model == model
        and (not rule.mode or rule.mode == mode)
        and (not rule.resolution or rule.resolution == resolution)
        and (not rule.duration or rule.duration == seconds)
        and rule.valid_from <= at
        and (rule.valid_to is None or at < rule.valid_to)
    )


def quote(*, facts, rules: Iterable, at: datetime) -> Quote:
    """Price ``facts`` (a :class:`providers.base.BillingFacts`) with the most specific matching rule.

    Specificity counts the rule's set fields among mode, resolution and duration; a tie is
    broken by the latest ``valid_from``. ``per_second`` multiplies by the output seconds,
    ``per_task`` is the unit price. Raises :class:`NoPriceRule` when nothing matches.
    """
    candidates = [
        r
        for r in rules
        if rule_matches(
            r,
            provider_kind=facts.provider_kind,
            model=facts.model,
            mode=facts.mode,
            resolution=facts.resolution,
            seconds=facts.seconds,
            at=at,
        )
    ]
    if not candidates:
        raise NoPriceRule(
            f"No price rule for {facts.provider_kind} {facts.model} {facts.mode} "
            f"{facts.resolution} {facts.seconds}s: an admin must add one before this model can be used"
        )
    best = max(candidates, key=lambda r: (_specificity(r), r.valid_from))
    unit_price = Decimal(best.unit_price)
    amount = unit_price * facts.seconds if best.unit == "per_second" else unit_price
    snapshot = best.snapshot() if hasattr(best, "snapshot") else {}
    return Quote(amount=money(amount), rule=best, snapshot=snapshot)
