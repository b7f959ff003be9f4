"""The registry of sandbox kinds and the Python API the tests and the demo use.

Part of :mod:`providers.sandbox.common` (standard library only: no Django)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .server import SandboxServer

# --------------------------------------------------------------------------
# Registry and Python API
# --------------------------------------------------------------------------

_REGISTRY: dict[str, type[SandboxServer]] = {}


def register_sandbox(kind: str) -> Callable[[type[SandboxServer]], type[SandboxServer]]:
    """Class decorator: make a :class:`SandboxServer` subclass startable as ``kind``."""

    def deco(cls: type[SandboxServer]) -> type[SandboxServer]:
        cls.kind = kind
        _REGISTRY[kind] = cls
        return cls

    return deco


def sandbox_kinds() -> dict[str, type[SandboxServer]]:
    """The registered sandbox kinds (``{"apixo": ApixoSandbox, ...}``)."""
    return dict(_REGISTRY)


class SandboxHandle:
    """A running sandbox, as returned by :func:`start_sandbox`.

    Attributes: ``kind``, ``server``, ``host``, ``port``, ``origin``
    (``http://127.0.0.1:PORT``) and ``base_url`` (origin + the provider's
    API prefix, e.g. ``http://127.0.0.1:PORT/api/v1`` for APIXO).
    Usable as a context manager (stops on exit).
    """

    def __init__(self, server: SandboxServer):
        self.server = server
        self.kind = server.kind

    @property
    def host(self) -> str:
        return self.server.host

    @property
    def port(self) -> int:
        return self.server.port

    @property
    def origin(self) -> str:
        return self.server.origin

    @property
    def base_url(self) -> str:
        return self.server.base_url

    def configure(self, **knobs: Any) -> dict[str, Any]:
        """Change knobs at runtime (same as ``POST /_sandbox/config``)."""
        return self.server.configure(knobs)

    def knobs(self) -> dict[str, Any]:
        return self.server.knobs.snapshot()

    def requests(self, kind: str | None = None) -> list[dict]:
        """The request log (``kind``: ``"api"``, ``"file"``, ``"callback"`` or all)."""
        return self.server.log.entries(kind)

    def tasks(self) -> list[dict]:
        return self.server.tasks_snapshot()

    def reset(self) -> None:
        """Forget tasks, the request log and counters (knobs are kept)."""
        self.server.reset()

    def stop(self) -> None:
        self.server.stop()

    def __enter__(self) -> SandboxHandle:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"<SandboxHandle {self.kind} {self.base_url}>"


def start_sandbox(kind: str, host: str = "127.0.0.1", port: int = 0, **knobs: Any) -> SandboxHandle:
    """Start the sandbox registered as ``kind`` in daemon threads.

    ``port=0`` picks a free port.  ``knobs`` are the sandbox's knobs (see
    ``COMMON_KNOBS`` and the provider module), plus ``verbose=True`` to log
    each request to stderr.  Raises ``KeyError`` for an unknown kind and
    :class:`KnobError` for a bad knob.
    """
    try:
        cls = _REGISTRY[kind]
    except KeyError:
        raise KeyError(f"unknown sandbox kind {kind!r}; known: {', '.join(sorted(_REGISTRY))}") from None
    server = cls(host, port, **knobs)
    server.start_background()
    return SandboxHandle(server)
