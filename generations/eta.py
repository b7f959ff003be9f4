"""Estimated time left for in-flight generations whose provider reports no progress.

The estimate for a provider kind and model is the median duration (``completed_at`` −
``submitted_at``, seconds) of its last :data:`SAMPLE` succeeded generations: every provider's
documented generation time varies with load and model, so our own recent history is the
best guide. :func:`median_durations` answers any number of (kind, model) pairs with one
query (a window function picks each pair's last 50), and caches each pair's median for
:data:`CACHE_SECONDS`, so a gallery page costs one query at most and usually none.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable

from django.core.cache import cache
from django.db.models import F, Window
from django.db.models.functions import RowNumber
from django.utils import timezone

from generations.models import IN_FLIGHT_STATES, Generation, State

SAMPLE = 50
MIN_SAMPLE = 3  # fewer finished generations than this: no estimate
CACHE_SECONDS = 300
_NONE = -1.0  # cached "no estimate"


def _key(kind: str, model: str) -> str:
    return f"eta:median:{kind}:{model}"


def median_durations(pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], float]:
    """``{(provider kind, model): median seconds}`` over each pair's last :data:`SAMPLE`
    succeeded generations; pairs with fewer than :data:`MIN_SAMPLE` are left out. One query
    for the pairs not in the cache, none when all are."""
    pairs = set(pairs)
    cached = cache.get_many([_key(k, m) for k, m in pairs]) if pairs else {}
    out: dict[tuple[str, str], float] = {}
    missing = set()
    for kind, model in pairs:
        value = cached.get(_key(kind, model))
        if value is None:
            missing.add((kind, model))
        elif value != _NONE:
            out[(kind, model)] = value
    if not missing:
        return out
    kinds = {k for k, _ in missing}
    models = {m for _, m in missing}
    rows = (
        Generation.objects.filter(
            state=State.SUCCEEDED, provider_kind__in=kinds, model__in=models,
            submitted_at__isnull=False, completed_at__isnull=False,
        )
        .annotate(rank=Window(RowNumber(), partition_by=[F("provider_kind"), F("model")], order_by=F("completed_at").desc()))
        .filter(rank__lte=SAMPLE)
        .values_list("provider_kind", "model", "submitted_at", "completed_at")
    )
    samples: dict[tuple[str, str], list[float]] = {}
    for kind, model, submitted, completed in rows:
        if (kind, model) in missing:
            samples.setdefault((kind, model), []).append((completed - submitted).total_seconds())
    to_cache = {}
    for pair in missing:
        values = samples.get(pair, [])
        median = float(statistics.median(values)) if len(values) >= MIN_SAMPLE else None
        to_cache[_key(*pair)] = _NONE if median is None else median
        if median is not None:
            out[pair] = median
    cache.set_many(to_cache, CACHE_SECONDS)
    return out


def _span(seconds: int) -> str:
    return f"{round(seconds / 60)} min" if seconds >= 90 else f"{seconds} s"


def eta_text(left: int, usual: int) -> str:
    """``"about 40 s left"``, ``"about 3 min left"``, or past the median ``"taking longer than
    usual (about 2 min)"``."""
    if left > 0:
        return f"about {_span(left)} left"
    return f"taking longer than usual (about {_span(usual)})"


def attach_etas(generations: list[Generation], *, now=None) -> None:
    """Set ``eta_usual`` (median seconds, or None), ``eta_left`` (seconds left, ≥ 0, or None)
    and ``eta_text`` (:func:`eta_text`, or "") on every in-flight generation of ``generations``
    without provider progress; the others get None / "". One query at most (see
    :func:`median_durations`)."""
    now = now or timezone.now()
    wanted = [g for g in generations if g.state in IN_FLIGHT_STATES and g.progress is None and g.submitted_at]
    medians = median_durations((g.provider_kind, g.model) for g in wanted)
    for g in generations:
        g.eta_usual = g.eta_left = None
        g.eta_text = ""
    for g in wanted:
        usual = medians.get((g.provider_kind, g.model))
        if usual is not None:
            g.eta_usual = round(usual)
            g.eta_left = max(0, round(usual - (now - g.submitted_at).total_seconds()))
            g.eta_text = eta_text(g.eta_left, g.eta_usual)
