"""Command line: ``python -m providers.sandbox KIND [--port 8801] [--KNOB VALUE ...]``.

Example::

    python -m providers.sandbox apixo --port 8801 --generation-seconds 6 \\
        --api-key sk-demo-1 --api-key sk-demo-2

Every knob of the sandbox kind is a flag (``generation_seconds`` ->
``--generation-seconds``; lists take comma-separated values, e.g.
``--callback-retry-delays 1,2,4``); ``--api-key`` may be repeated.  Prints
the base URL, serves until SIGINT/SIGTERM, then exits with code 0.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from . import sandbox_kinds, start_sandbox
from .common import KnobError


def build_parser(kind: str | None) -> argparse.ArgumentParser:
    kinds = sandbox_kinds()
    parser = argparse.ArgumentParser(prog="python -m providers.sandbox", description="Run a provider sandbox.")
    parser.add_argument("kind", choices=sorted(kinds), help="which provider to imitate")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind (default: a free port)")
    parser.add_argument("--quiet", action="store_true", help="do not log each request to stderr")
    if kind in kinds:
        group = parser.add_argument_group(f"{kind} knobs")
        for knob in kinds[kind].knob_specs.values():
            group.add_argument(knob.cli_flag, dest=f"knob_{knob.name}", default=None, metavar="VALUE",
                               help=f"{knob.help} (default: {knob.default!r})")
        if "api_keys" in kinds[kind].knob_specs:
            group.add_argument("--api-key", dest="api_key", action="append", default=None, metavar="KEY",
                               help="an accepted API key (repeatable; replaces the defaults)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    first = argparse.ArgumentParser(add_help=False)
    first.add_argument("kind", nargs="?")
    known, _ = first.parse_known_args(argv)
    args = build_parser(known.kind).parse_args(argv)

    knobs = {name[len("knob_"):]: value for name, value in vars(args).items() if name.startswith("knob_") and value is not None}
    if getattr(args, "api_key", None):
        knobs["api_keys"] = args.api_key
    try:
        handle = start_sandbox(args.kind, host=args.host, port=args.port, verbose=not args.quiet, **knobs)
    except KnobError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    done = threading.Event()

    def on_signal(signum, frame):  # noqa: ARG001
        done.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(f"{args.kind} sandbox listening: {handle.base_url}", flush=True)
    print(f"  control: {handle.origin}/_sandbox/config  (keys: {', '.join(handle.knobs()['api_keys'])})", flush=True)
    while not done.wait(0.5):
        pass
    handle.stop()
    print(f"{args.kind} sandbox stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
