"""Standard Webhooks signatures (https://www.standardwebhooks.com/, "Signature scheme").

The signed content is ``f"{webhook_id}.{webhook_timestamp}.{body}"``; the key is the
base64-decoded part of the ``whsec_`` secret after the prefix; the signature header is
``v1,`` + base64(HMAC-SHA256(key, signed content)). Receivers verify it with any Standard
Webhooks library (e.g. the ``standardwebhooks`` PyPI package), or with :func:`verify`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from webhooks.models import SECRET_PREFIX


def _key(secret: str) -> bytes:
    raw = secret[len(SECRET_PREFIX):] if secret.startswith(SECRET_PREFIX) else secret
    return base64.b64decode(raw + "=" * (-len(raw) % 4))


def sign(secret: str, *, msg_id: str, timestamp: int, body: str) -> str:
    """The ``webhook-signature`` value: ``"v1," + base64(HMAC-SHA256(key, f"{msg_id}.{timestamp}.{body}"))``.

    ``secret`` is the ``whsec_…`` text; ``timestamp`` whole seconds since the Unix epoch.
    """
    digest = hmac.new(_key(secret), f"{msg_id}.{timestamp}.{body}".encode(), hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def headers(secret: str, *, msg_id: str, timestamp: int, body: str) -> dict[str, str]:
    """The three Standard Webhooks headers for one attempt."""
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id=msg_id, timestamp=timestamp, body=body),
    }


def verify(secret: str, *, msg_id: str, timestamp: int, body: str, signature_header: str) -> bool:
    """True when one of the space-separated ``v1,`` signatures in ``signature_header`` matches (constant time)."""
    expected = sign(secret, msg_id=msg_id, timestamp=timestamp, body=body)
    return any(hmac.compare_digest(expected, candidate) for candidate in signature_header.split())
