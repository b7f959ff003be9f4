"""PiAPI sandbox: PiAPI's unified task protocol for Hailuo (``/api/v1/task``, ``/account/info``).

The protocol as implemented, its knobs and prompt markers are described in
README.md ("PiAPI protocol").  Written only from PiAPI's "Hailuo / Generate
Video" page (seed ``004``) and ``providers.md``, section PiAPI.  Specific here:
``x-api-key`` auth; errors ``{"code", "message": "<title>: <detail>", "data":
{"error", "detail"}}`` (``data`` is the sandbox's choice); the task object of
the seed's example with RFC3339Nano times and Go's zero time for what has not
happened; ``usage`` in 1e-7 USD; image bounds 300..4096 px and 2:5..5:2, all
INCLUSIVE; webhooks ``{"timestamp", "data"}`` on ``processing`` and on the final
state, with ``x-webhook-secret``; failure code 10000 (undocumented).

Layout: ``rules.py`` (documented rules, prices, messages, image checks), ``tasks.py``
(the task record), ``server.py`` (the protocol).
"""

from __future__ import annotations

from .rules import PRICES_USD, check_image_bytes, image_size, rfc3339_nano
from .server import PiapiSandbox

__all__ = ["PiapiSandbox", "PRICES_USD", "check_image_bytes", "image_size", "rfc3339_nano"]
