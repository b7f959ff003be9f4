"""The README's provider matrix with its price column: the adapters' capabilities
(:mod:`providers.matrix`) combined with the price rules (:mod:`billing.pricing`).

Assembled here, one level above providers/, because billing may read providers but
providers never reads billing. ``manage.py provider_matrix [--write]``
(``billing/management/commands/provider_matrix.py``) prints it or rewrites README.md;
``tests/test_provider_matrix.py`` checks the README is current.
"""

from __future__ import annotations

from pathlib import Path

from django.utils import timezone

from billing.pricing import NoPriceRule, quote
from billing.selectors import price_rules_for
from providers import matrix
from providers.base import BillingFacts, ModeCapability, ModelCapability

START, END = matrix.START, matrix.END

#: The price cell of a mode no price rule covers.
NO_PRICE = "no documented price: admin sets a rule"


def price_cell(kind: str, model: ModelCapability, mode: ModeCapability) -> str:
    """The price of each (resolution, duration) of a mode, from the price rules valid now.

    Text such as ``"768p 6 s $0.28; 768p 10 s $0.56"`` (resolutions ascending, then
    durations; USD as :func:`billing.pricing.quote` displays it), or :data:`NO_PRICE` when a
    combination has no rule. On a freshly migrated database the rules are the seeded,
    documented prices.
    """
    now = timezone.now()
    rules = price_rules_for(provider_kind=kind, model=model.id, at=now)
    parts = []
    for duration, resolution in sorted(mode.combos, key=lambda c: (int(c[1].rstrip("p")), c[0])):
        try:
            amount = quote(facts=BillingFacts(kind, model.id, mode.id, duration, resolution), rules=rules, at=now).display
        except NoPriceRule:
            return NO_PRICE
        parts.append(f"{resolution} {duration} s {amount}")
    return "; ".join(parts)


def render_matrix() -> str:
    """The README matrix (Markdown, one table per provider) with prices: :func:`providers.matrix.render_matrix`
    given :func:`price_cell`."""
    return matrix.render_matrix(price_cell)


def update_readme(path: Path) -> bool:
    """Rewrite the matrix block between the markers in ``path`` (README.md); True when it changed.

    Raises ``ValueError`` when ``path`` has no markers.
    """
    return matrix.update_readme(path, render_matrix())
