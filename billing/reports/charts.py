"""The report page's spend-over-time chart: the series (spend per provider per time bucket)
and the SVG geometry the template draws."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.utils import timezone

from billing.money import ZERO, format_usd, money
from billing.reports.cost import ReportQuery, cost_report
from billing.reports.periods import Period, calendar_first_day, calendar_next_first_day, local_midnight

#: Line colours of the chart, one per provider (colour-blind-safe Okabe–Ito palette).
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#D55E00", "#56B4E9", "#000000", "#F0E442")


# --- series ----------------------------------------------------------------------------------
def chart_bucket(period: Period) -> str:
    """The time bucket for the spend chart: day up to 62 days, week up to 190, else month."""
    if period.days <= 62:
        return "day"
    if period.days <= 190:
        return "week"
    return "month"


def bucket_starts(period: Period, bucket: str) -> list[datetime]:
    """Every bucket start (aware, local midnight) from the one containing ``period.start`` to ``period.end``."""
    zone = period.zone
    day = calendar_first_day(bucket, period.start.astimezone(zone).date())
    out = []
    while local_midnight(day, zone) < period.end:
        out.append(local_midnight(day, zone))
        day = calendar_next_first_day(bucket, day)
    return out


@dataclass
class SpendSeries:
    """Spend per time bucket of one provider: ``points`` are ``(bucket start, USD)`` for every bucket
    that has begun (a bucket starting after now has no point: the future is not "$0")."""

    provider: str | None
    label: str
    points: list[tuple[datetime, Decimal]]

    @property
    def total(self) -> Decimal:
        return money(sum((v for _, v in self.points), ZERO))


def spend_over_time(
    query: ReportQuery, *, bucket: str | None = None, now: datetime | None = None,
) -> tuple[str, list[datetime], list[SpendSeries]]:
    """Spend per provider kind per time bucket over the query's period (filters applied).

    Returns ``(bucket, bucket starts, series)``; ``bucket starts`` cover the whole period (the
    chart's x axis), while each series has a value (USD, 0 when no entry) only for the buckets
    that have started by ``now`` (aware; default ``timezone.now()``), so a period that runs into
    the future ("this month") draws no $0 points after today. Series are ordered by total spend,
    largest first.
    """
    now = now or timezone.now()
    bucket = bucket or chart_bucket(query.period)
    sub = ReportQuery(
        period=query.period, group_by=("provider", bucket), team_id=query.team_id, user_id=query.user_id,
        provider=query.provider, provider_account_id=query.provider_account_id,
    )
    report = cost_report(sub)
    starts = bucket_starts(query.period, bucket)
    by_provider: dict[object, dict[datetime, Decimal]] = {}
    labels: dict[object, str] = {}
    for g in report.groups:
        provider = g.key["provider"]
        labels[provider] = g.labels["provider"]
        by_provider.setdefault(provider, {})[g.key[bucket]] = g.figures.spend
    series = [
        SpendSeries(provider=p, label=labels[p], points=[(s, values.get(s, ZERO)) for s in starts if s <= now])
        for p, values in by_provider.items()
    ]
    series.sort(key=lambda s: (-s.total, s.label))
    return bucket, starts, series


# --- geometry --------------------------------------------------------------------------------
def _nice_step(span: Decimal) -> Decimal:
    """A round tick step (1, 2 or 5 × 10^n) giving about five ticks over ``span``."""
    raw = span / 5
    if raw <= 0:
        return Decimal(1)
    exponent = raw.adjusted()
    base = Decimal(10) ** exponent
    for mult in (1, 2, 5, 10):
        if raw <= base * mult:
            return base * mult
    return base * 10


def spend_chart(bucket: str, starts: list[datetime], series: list[SpendSeries], zone) -> dict:
    """Geometry of the spend-over-time SVG line chart (viewBox 0 0 760 260), one line per provider.

    The x axis spans every bucket of ``starts``; a series' ``points`` are a prefix of
    ``starts`` (the buckets begun so far), so its line stops at today instead of falling to $0.
    Returns ``{width, height, lines: [{label, color, points, dots: [{x, y, title}]}],
    y_ticks: [{y, label}], x_ticks: [{x, label}], plot: {left, right, top, bottom}, empty}``.
    """
    width, height = 760, 260
    left, right, top, bottom = 70, width - 12, 14, height - 34
    values = [v for s in series for _, v in s.points] or [Decimal(0)]
    low, high = min(Decimal(0), min(values)), max(Decimal(0), max(values))
    step = _nice_step(high - low if high > low else Decimal("1"))
    low = (low / step).to_integral_value(rounding="ROUND_FLOOR") * step
    high = (high / step).to_integral_value(rounding="ROUND_CEILING") * step
    if high == low:
        high = low + step
    n = len(starts)

    def x(i: int) -> float:
        return left + (right - left) * (i / (n - 1) if n > 1 else 0.5)

    def y(v: Decimal) -> float:
        return bottom - (bottom - top) * float((v - low) / (high - low))

    fmt = {"day": "%d %b", "week": "%d %b", "month": "%b %Y"}[bucket]
    lines = []
    for i, s in enumerate(series):
        pts = [(x(j), y(v)) for j, (_, v) in enumerate(s.points)]
        lines.append({
            "label": s.label, "color": PALETTE[i % len(PALETTE)], "total": s.total,
            "points": " ".join(f"{px:.1f},{py:.1f}" for px, py in pts),
            "dots": [
                {"x": f"{px:.1f}", "y": f"{py:.1f}", "title": f"{s.label}, {start.astimezone(zone):{fmt}}: {format_usd(v)}"}
                for (px, py), (start, v) in zip(pts, s.points, strict=True)
            ],
        })
    y_ticks = []
    tick = low
    while tick <= high:
        y_ticks.append({"y": f"{y(tick):.1f}", "label": format_usd(tick)})
        tick += step
    every = max(1, -(-n // 8))
    x_ticks = [{"x": f"{x(i):.1f}", "label": f"{starts[i].astimezone(zone):{fmt}}"} for i in range(0, n, every)]
    return {
        "width": width, "height": height, "lines": lines, "y_ticks": y_ticks, "x_ticks": x_ticks,
        "plot": {"left": left, "right": right, "top": top, "bottom": bottom, "zero": f"{y(Decimal(0)):.1f}"},
        "empty": not series, "bucket": bucket, "buckets": n, "center_x": (left + right) // 2, "center_y": (top + bottom) // 2,
    }
