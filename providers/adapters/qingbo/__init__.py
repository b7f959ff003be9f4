from providers.adapters.qingbo.adapter import QingboAdapter

__all__ = ["QingboAdapter"]
