"""Command line: ``python -m duetime demo``, ``worker``, ``dashboard``, ``entries``,
``dead-letters``, ``retry``, ``delete`` and ``abort`` (``python -m duetime COMMAND --help``).

The benchmark suite is a development tool of the source checkout:
``python benchmarks/run.py`` or ``nox -s bench``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors never show a store URL's credentials
    (an error such as "unrecognized arguments" quotes what was typed)."""

    def error(self, message: str) -> NoReturn:
        from .durable._cli import redact_text

        super().error(redact_text(message))


def _serve_worker_metrics(host: str, port: int) -> Any:
    """``worker --metrics-port``: serve ``/metrics`` and instrument the worker
    (imported only then: the ``prometheus`` extra, OpenTelemetry's SDK)."""
    from .otel import instrument, serve_metrics

    server = serve_metrics(port, host)
    instrument(meter_provider=server.meter_provider)
    return server


def main(argv: Sequence[str] | None = None) -> int:
    """Run the duetime command line; return the exit status."""
    parser = _Parser(prog="python -m duetime", description=(__doc__ or "").replace("``", ""))
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="a short live tour of duetime")
    demo.add_argument("--fast", action="store_true", help="shrink every delay (for CI)")
    demo.add_argument(
        "--backend", choices=["asyncio", "trio"], default="asyncio", help="event loop to run on"
    )
    demo.add_argument("--plain", action="store_true", help="plain text, even if rich is installed")
    from .durable._cli import COMMANDS, add_commands

    add_commands(sub)  # worker, entries, dead-letters, retry, delete, abort, dashboard
    args = parser.parse_args(argv)
    if args.command == "demo":
        from ._demo import run_demo

        return run_demo(fast=args.fast, backend=args.backend, plain=args.plain)
    if args.command == "dashboard":
        from .durable._cli import run_dashboard

        try:
            from .dashboard._serve import serve
        except ImportError as exc:
            print(
                f"duetime dashboard needs the dashboard extra ({exc.name} is missing):"
                " pip install 'duetime[dashboard]'",
                file=sys.stderr,
            )
            return 2
        return run_dashboard(args, serve)
    if args.command in COMMANDS:
        from .durable._cli import run_command

        return run_command(args, _serve_worker_metrics)
    parser.error(f"unknown command {args.command!r}")  # pragma: no cover
    return 2  # pragma: no cover


if __name__ == "__main__":
    sys.exit(main())
