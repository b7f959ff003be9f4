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
Registered kinds: ``apixo``, ``poyo``, ``qingbo``, ``piapi``, ``minimax``.
See README.md for knobs and prompt markers.
"""

# Importing a provider's module registers its kind.
from . import apixo, minimax, piapi, poyo, qingbo  # noqa: F401
from .apixo import ApixoSandbox
from .common import (
    COMMON_KNOBS,
    Knob,
    KnobError,
    SandboxHandle,
    SandboxServer,
    hang_seconds_outlasting,
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
    "hang_seconds_outlasting",
    "register_sandbox",
    "sandbox_kinds",
    "start_sandbox",
]
