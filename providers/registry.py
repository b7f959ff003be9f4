"""The registry: provider kind → adapter class (healthchecks' one-registry pattern)."""

from __future__ import annotations

from providers.adapters.apixo import ApixoAdapter
from providers.adapters.minimax import MiniMaxAdapter
from providers.adapters.piapi import PiapiAdapter
from providers.adapters.poyo import PoyoAdapter
from providers.adapters.qingbo import QingboAdapter
from providers.base import ProviderAdapter

#: Adding a provider: one package under providers/adapters/ and one line here.
ADAPTERS: dict[str, type[ProviderAdapter]] = {
    ApixoAdapter.kind: ApixoAdapter,
    PoyoAdapter.kind: PoyoAdapter,
    QingboAdapter.kind: QingboAdapter,
    PiapiAdapter.kind: PiapiAdapter,
    MiniMaxAdapter.kind: MiniMaxAdapter,
}


def adapter_class(kind: str) -> type[ProviderAdapter]:
    """The adapter class for ``kind``; raises KeyError for an unknown kind."""
    return ADAPTERS[kind]


def kind_choices() -> list[tuple[str, str]]:
    """(kind, label) pairs for model field choices and forms."""
    return [(cls.kind, cls.label) for cls in ADAPTERS.values()]


def model_label(kind: str, model_id: str) -> str:
    """The human name of a provider's model, one per family and version ("Hailuo 2.3 Fast"),
    from the adapter's capabilities; the raw id when the kind or model is unknown."""
    cls = ADAPTERS.get(kind)
    model = cls.capabilities.model(model_id) if cls is not None else None
    return model.label if model is not None else model_id


def model_families() -> dict[str, list[str]]:
    """Human model name → the provider model ids that carry it, e.g. ``{"Hailuo 2.3":
    ["hailuo-2-3", "hailuo-2.3", "v2.3", "MiniMax-Hailuo-2.3"], ...}`` (names sorted)."""
    families: dict[str, list[str]] = {}
    for cls in ADAPTERS.values():
        for model in cls.capabilities.models:
            ids = families.setdefault(model.label, [])
            if model.id not in ids:
                ids.append(model.id)
    return dict(sorted(families.items(), key=lambda item: item[0].lower()))
