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
