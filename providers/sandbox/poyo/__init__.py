"""PoYo sandbox: PoYo's Hailuo 2.3 protocol (``/api/generate/submit``, ``/api/generate/status``).

The protocol as implemented, its knobs and prompt markers are described in
README.md ("PoYo protocol").  Written only from PoYo's docs (seed ``000``
"Submit Hailuo 2.3 Task"; ``providers.md``, section PoYo).  Specific here:
errors ``{"code", "error": {"message", "type"}}`` (only ``invalid_request_error``
is documented, the other types are invented); strict validation (unknown keys
refused); credits held at submit and given back on failure; a task belongs to
its API key (403 for another); callbacks signed with an ARBITRARY scheme,
:func:`sign_webhook` (PoYo does not document one), with optional duplicates;
``error_5xx_every`` answers 502; ``[fail:TEXT]`` takes free text.

Layout: ``rules.py`` (documented rules, prices, messages, image checks), ``tasks.py``
(the task record), ``server.py`` (the protocol).
"""

from __future__ import annotations

from ..common import sniff_image
from .rules import credits_for, credits_to_usd, sign_webhook
from .server import PoyoSandbox

__all__ = ["PoyoSandbox", "credits_for", "credits_to_usd", "sign_webhook", "sniff_image"]
