"""MiniMax sandbox: MiniMax's own video API (``/v1/video_generation``, query, files/retrieve).

The protocol as implemented, its knobs and prompt markers are described in
README.md ("MiniMax protocol").  Written only from MiniMax's public docs
(platform.minimax.io: "Video Generation", "Query Video Generation Task",
"Retrieve File", "Error Codes"; ``providers.md``, section MiniMax).  Specific
here: most errors are HTTP 200 with a non-zero ``base_resp.status_code``; keys
are separate accounts; images are checked at submit (refused with 2013) and may
come as a data URL, hence a 28 MB body limit; a callback URL must pass a
challenge handshake before any status push, and pushes go out in order, in one
of two shapes (knob ``callback_status_style``); ``[fail:CODE]`` takes a numeric
code and ``[error:CODE]`` refuses the submit itself.

Layout: ``rules.py`` (documented rules, prices, messages, image checks), ``tasks.py``
(the task record), ``validation.py`` (submit-body rules), ``server.py`` (the protocol).
"""

from __future__ import annotations

from ..common import image_size
from .rules import MODELS, PRICES, STATUS_MESSAGES, output_dimensions, price_of
from .server import MiniMaxSandbox

__all__ = ["MiniMaxSandbox", "MODELS", "PRICES", "STATUS_MESSAGES", "image_size", "output_dimensions", "price_of"]
