"""Local sandboxes that speak the video providers' protocols (stdlib only).

Each sandbox is written from its provider's documentation, independently of
``providers/adapters/`` (no shared code, constants or schemas), and is used by
the demo and the tests over real loopback HTTP::

    from providers.sandbox import start_sandbox

    sb = start_sandbox("apixo", generation_seconds=1)
    sb.base_url      # "http://127.0.0.1:54321/api/v1"
    sb.configure(fail_rate=0.5)
    sb.requests(), sb.tasks(), sb.reset()
    sb.stop()

Command line: ``python -m providers.sandbox apixo --port 8801``.
Registered kinds: ``apixo``.  See README.md for knobs and prompt markers.
"""

import importlib
import importlib.util

from . import apixo  # noqa: F401  (importing it registers the "apixo" kind)

# Every provider's sandbox module registers its kind on import.
for _kind in ("poyo", "qingbo", "piapi", "minimax"):
    if importlib.util.find_spec(f"{__name__}.{_kind}") is not None:
        importlib.import_module(f"{__name__}.{_kind}")
from .apixo import ApixoSandbox
from .common import (
    COMMON_KNOBS,
    Knob,
    KnobError,
    SandboxHandle,
    SandboxServer,
    register_sandbox,
    sandbox_kinds,
    start_sandbox,
)

__all__ = [
    "COMMON_KNOBS",
    "ApixoSandbox",
    "Knob",
    "KnobError",
    "SandboxHandle",
    "SandboxServer",
    "register_sandbox",
    "sandbox_kinds",
    "start_sandbox",
]
