"""Money: Decimal USD with six places, one rounding helper, one display helper.

Six places hold every documented unit price exactly (qingbo's 0.05185 USD/s times whole
seconds, PoYo's 0.005 USD credits); amounts are rounded once, half-up, when computed.
"""

from decimal import ROUND_HALF_UP, Decimal

PLACES = Decimal("0.000001")
ZERO = Decimal("0.000000")
MAX_DIGITS = 18
DECIMAL_PLACES = 6


def money(value) -> Decimal:
    """Round ``value`` (Decimal, int or numeric str; never float) to six places, half-up."""
    if isinstance(value, float):
        raise TypeError("money must not be a float; pass a Decimal or a string")
    return Decimal(value).quantize(PLACES, rounding=ROUND_HALF_UP)


def format_usd(value) -> str:
    """``$0.336``, ``$0.56``, ``$25.00``, ``-$1.20``: at least two places, no trailing zeros beyond."""
    amount = money(value)
    sign = "-" if amount < 0 else ""
    text = f"{abs(amount):f}"
    whole, _, frac = text.partition(".")
    frac = frac.rstrip("0")
    if len(frac) < 2:
        frac = frac.ljust(2, "0")
    return f"{sign}${int(whole):,}.{frac}"


CENTS = Decimal("0.01")


def format_cents(value) -> str:
    """``$23.67``, ``$1,250.00``, ``-$1.20``: an amount rounded half-up to cents, for sums
    (budgets used and left, balances, totals). Prices keep their real places (``format_usd``:
    a per-second quote such as ``$0.336``)."""
    amount = money(value).quantize(CENTS, rounding=ROUND_HALF_UP)
    sign = "-" if amount < 0 else ""
    return f"{sign}${abs(amount):,.2f}"
