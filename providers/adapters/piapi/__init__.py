from providers.adapters.piapi.adapter import PiapiAdapter

__all__ = ["PiapiAdapter"]
