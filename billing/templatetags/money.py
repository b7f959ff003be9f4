"""``{{ amount|usd }}``: the one way amounts are shown (``billing.money.format_usd``)."""

from django import template

from billing.money import format_cents, format_usd

register = template.Library()


@register.filter
def usd(value) -> str:
    """Decimal USD as ``$0.336`` / ``$25.00``; empty for None."""
    if value is None or value == "":
        return ""
    return format_usd(value)


@register.filter
def cents(value) -> str:
    """Decimal USD rounded to cents, ``$23.67`` (sums: budgets, totals); empty for None."""
    if value is None or value == "":
        return ""
    return format_cents(value)
