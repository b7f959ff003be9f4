from providers.adapters.minimax.adapter import MiniMaxAdapter

__all__ = ["MiniMaxAdapter"]
