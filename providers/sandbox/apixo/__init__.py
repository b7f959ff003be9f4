"""APIXO sandbox: APIXO's Hailuo 2.3 protocol (``/api/v1/generateTask``, ``statusTask``, balance).

The protocol as implemented, its knobs and prompt markers are described in
README.md ("APIXO protocol").  Written only from APIXO's pages (seeds ``001``
"Hailuo 2.3" and ``002`` "hailuo-2-3-fast"; ``providers.md``, section APIXO).
Specific here: errors ``{"code", "message", "data": {"error"}}``; ``resultJson``
is a JSON *string*; the balance is charged on success only; input images must
be JPEG/PNG, short side > 300 px, aspect ratio strictly inside 2:5..5:2, at most
20 MB (fail codes ``INVALID_IMAGE_URL``, ``ImageFormatIncorrect``,
``InvalidImageSize``); callbacks count as received on HTTP 200 only.

Layout: ``rules.py`` (documented rules, prices, messages, image checks), ``tasks.py``
(the task record), ``server.py`` (the protocol).
"""

from __future__ import annotations

from .rules import MODELS, image_dimensions, inspect_image_bytes, price_for
from .server import ApixoSandbox

__all__ = ["ApixoSandbox", "MODELS", "image_dimensions", "inspect_image_bytes", "price_for"]
