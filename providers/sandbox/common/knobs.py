"""Knobs: typed, validated settings given at start or through ``POST /_sandbox/config``.

Part of :mod:`providers.sandbox.common` (standard library only: no Django)."""

from __future__ import annotations

import copy
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# --------------------------------------------------------------------------
# Knobs
# --------------------------------------------------------------------------


class KnobError(ValueError):
    """A knob name or value was refused."""


def _number(min_value: float | None = None, max_value: float | None = None, integer: bool = False):
    def parse(value: Any) -> float | int:
        if isinstance(value, bool):
            raise KnobError("expected a number, got a boolean")
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise KnobError(f"expected a number, got {value!r}") from None
        if not isinstance(value, (int, float)):
            raise KnobError(f"expected a number, got {type(value).__name__}")
        if integer:
            if float(value) != int(value):
                raise KnobError(f"expected an integer, got {value!r}")
            value = int(value)
        else:
            value = float(value)
        if min_value is not None and value < min_value:
            raise KnobError(f"must be >= {min_value}")
        if max_value is not None and value > max_value:
            raise KnobError(f"must be <= {max_value}")
        return value

    return parse


def _optional(inner: Callable[[Any], Any]):
    def parse(value: Any) -> Any:
        if value is None or value == "" or (isinstance(value, str) and value.lower() in {"none", "null"}):
            return None
        return inner(value)

    return parse


def _str_list(value: Any) -> list[str]:
    if isinstance(value, str):
        value = [v for v in (p.strip() for p in value.split(",")) if v]
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
        raise KnobError("expected a list of non-empty strings")
    return list(value)


def _float_list(value: Any) -> list[float]:
    if isinstance(value, str):
        value = [p.strip() for p in value.split(",") if p.strip()]
    if not isinstance(value, (list, tuple)):
        raise KnobError("expected a list of numbers")
    parse = _number(min_value=0)
    return [float(parse(v)) for v in value]


def parse_bool(value: Any) -> bool:
    """Knob parser: a boolean, 0/1, or one of true/false, yes/no, on/off, 1/0 (any case)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in {"1", "true", "yes", "on", "0", "false", "no", "off"}:
        return value.strip().lower() in {"1", "true", "yes", "on"}
    raise KnobError(f"expected a boolean (true/false), got {value!r}")


def _origin(value: Any) -> str:
    if not isinstance(value, str):
        raise KnobError("expected a string")
    parsed = urllib.parse.urlsplit(value)
    if parsed.scheme not in {"http", "https"} or not parsed.netloc or parsed.path not in {"", "/"}:
        raise KnobError("expected an origin such as http://127.0.0.1:8801")
    return value.rstrip("/")


@dataclass(frozen=True)
class Knob:
    """One tunable setting of a sandbox: its name, default, parser and help text."""

    name: str
    default: Any
    parse: Callable[[Any], Any]
    help: str

    @property
    def cli_flag(self) -> str:
        return "--" + self.name.replace("_", "-")


COMMON_KNOBS: dict[str, Knob] = {
    k.name: k
    for k in [
        Knob("generation_seconds", 8.0, _number(min_value=0), "time from creation to the final state"),
        Knob("result_ttl", 3600.0, _number(min_value=0), "seconds a result URL stays valid after completion"),
        Knob("api_keys", ["sk-sandbox"], _str_list, "accepted API keys"),
        Knob("fail_rate", 0.0, _number(0, 1), "probability (0..1) that a task fails at random"),
        Knob("rate_limit_every", 0, _number(min_value=0, integer=True), "every Nth API request answers 429 (0: off)"),
        Knob("error_5xx_every", 0, _number(min_value=0, integer=True), "every Nth API request answers 503 (0: off)"),
        Knob("latency_ms", 0.0, _number(min_value=0), "sleep before each API answer, in milliseconds"),
        Knob("callback_retry_delays", [1.0, 2.0, 4.0], _float_list, "delays before each callback retry, seconds"),
        Knob("callback_timeout", 30.0, _number(min_value=0.01), "seconds a callback receiver has to answer"),
        Knob("balance", None, _optional(_number()), "account balance in USD; when set, submits beyond it are refused"),
        Knob("hang_seconds", 300.0, _number(min_value=0),
             "longest a [hang] submit holds its answer (it stops as soon as the client hangs up)"),
        Knob("image_fetch_timeout", 5.0, _number(min_value=0.01), "timeout when fetching an input image, seconds"),
        Knob("public_origin", None, _optional(_origin), "origin used in result URLs (default: the bound address)"),
    ]
}


def hang_seconds_outlasting(read_timeout: float) -> float:
    """A ``hang_seconds`` knob value clearly past a client's read timeout (both in seconds).

    ``2 * read_timeout + 10``: a ``[hang]`` submit then never answers within the client's
    wait, whatever the scheduling jitter, and still frees its thread in bounded time (it
    ends sooner anyway, as soon as the client hangs up).  The demo (``scripts/run.sh``)
    and the tests derive the sandboxes' hang from HAILUO_PROVIDER_READ_TIMEOUT with it.
    Raises ``ValueError`` for a negative timeout.
    """
    read_timeout = float(read_timeout)
    if read_timeout < 0:
        raise ValueError("read_timeout must be >= 0")
    return 2 * read_timeout + 10


def with_defaults(specs: Mapping[str, Knob], **defaults: Any) -> dict[str, Knob]:
    """Copy a knob table, overriding some defaults (e.g. a provider's default API key)."""
    out = dict(specs)
    for name, default in defaults.items():
        knob = out[name]
        out[name] = Knob(knob.name, knob.parse(default) if default is not None else None, knob.parse, knob.help)
    return out


class Knobs:
    """A validated, thread-safe set of knob values.

    :meth:`update` validates every change before applying any, so a bad
    ``POST /_sandbox/config`` leaves the knobs untouched.
    """

    def __init__(self, specs: Mapping[str, Knob], values: Mapping[str, Any] | None = None):
        self.specs = dict(specs)
        self._lock = threading.Lock()
        self._values = {name: copy.deepcopy(k.default) for name, k in self.specs.items()}
        if values:
            self.update(values)

    def validate(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        unknown = sorted(set(changes) - set(self.specs))
        if unknown:
            raise KnobError(f"unknown knob(s): {', '.join(unknown)}; known: {', '.join(sorted(self.specs))}")
        parsed = {}
        for name, value in changes.items():
            try:
                parsed[name] = self.specs[name].parse(value)
            except KnobError as exc:
                raise KnobError(f"{name}: {exc}") from None
        return parsed

    def update(self, changes: Mapping[str, Any]) -> dict[str, Any]:
        parsed = self.validate(changes)
        with self._lock:
            self._values.update(parsed)
        return parsed

    def __getitem__(self, name: str) -> Any:
        with self._lock:
            return copy.deepcopy(self._values[name])

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._values)
