"""Encryption at rest for provider API keys (Fernet, AES-128-CBC + HMAC-SHA256).

Keys come from ``HAILUO_ENCRYPTION_KEYS`` (comma-separated Fernet keys): the first
encrypts, every one decrypts, so a key is rotated by prepending a new one and running
``manage.py rotate_provider_keys`` (re-encrypts with the first).
"""

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    return MultiFernet([Fernet(k.encode() if isinstance(k, str) else k) for k in keys])


def _current() -> MultiFernet:
    return _fernet(tuple(settings.HAILUO_ENCRYPTION_KEYS))


def encrypt(plaintext: str) -> str:
    """Encrypt text; returns a Fernet token (ASCII)."""
    return _current().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    """Decrypt a Fernet token. Raises ``ValueError`` when no configured key opens it."""
    try:
        return _current().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise ValueError("the stored API key cannot be decrypted with HAILUO_ENCRYPTION_KEYS") from exc


def rotate(token: str) -> str:
    """Re-encrypt a token with the first key."""
    return _current().rotate(token.encode()).decode()
