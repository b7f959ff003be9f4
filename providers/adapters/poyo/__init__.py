from providers.adapters.poyo.adapter import PoyoAdapter

__all__ = ["PoyoAdapter"]
