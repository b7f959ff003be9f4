from providers.adapters.apixo.adapter import ApixoAdapter

__all__ = ["ApixoAdapter"]
