"""``{% if user|can_view_reports %}``: show the Reports link to finance, staff and superusers."""

from django import template

from billing.reports import can_view_reports as _can_view_reports

register = template.Library()


@register.filter
def can_view_reports(user) -> bool:
    """True when ``user`` may open /reports/ (:func:`billing.reports.can_view_reports`)."""
    return _can_view_reports(user)


@register.filter
def plain(value) -> str:
    """A Decimal without trailing zeros or exponent: ``100.000000`` → ``100``, ``99.500000`` → ``99.5``."""
    if value is None or value == "":
        return ""
    text = f"{value:f}"
    return text.rstrip("0").rstrip(".") if "." in text else text
