"""qingbo sandbox: qingbo's (QWave API) ``/v1/tasks`` protocol (submit, query, cancel).

The protocol as implemented, its knobs and prompt markers are described in
README.md ("qingbo protocol").  Written only from qingbo's pages (seed ``003``
"Hailuo" and its newer version, "Query Task Status", "Cancel Task", "Task
System", "Request / Response"; ``providers.md``, section qingbo).  Specific
here: errors ``{"error": {"message", "code"}}`` with the sandbox's own codes;
per-model rules (:data:`MODELS`); a task of another key answers 404; quota
charged at submit and refunded on cancel (documented) or failure (assumed);
images may be URLs, ``data:`` URLs or bare Base64 and are only sniffed (no size
rule is documented); the callback payload and its ``callback_events`` filter
are INVENTED; knobs for the docs' ambiguities (URL as list, timestamp units);
``[queue:N]``; sandbox-only ``GET /_sandbox/quota``.

Layout: ``rules.py`` (documented rules, prices, messages, image checks), ``tasks.py``
(the task record), ``validation.py`` (submit-body rules), ``server.py`` (the protocol).
"""

from __future__ import annotations

from ..common import sniff_image
from .rules import MODELS, price_for
from .server import QingboSandbox

__all__ = ["MODELS", "QingboSandbox", "price_for", "sniff_image"]
