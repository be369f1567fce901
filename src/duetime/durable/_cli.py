"""``python -m duetime worker``, and the store commands (``entries``,
``dead-letters``, ``retry``, ``delete``, in :mod:`._cli_store`).

``worker MODULE:REGISTRY --store URL`` imports the module the operator named,
takes its :class:`~duetime.durable._registry.TaskRegistry`, and runs stored
entries until SIGINT or SIGTERM; then it stops claiming, gives running tasks
``--grace`` seconds, and releases every lease it still holds before it exits.
Every command ends an operator's error (a bad URL, an unreachable or refused
store, a file that is not a store) with one line on stderr and exit status 2
(:mod:`._cli_run`), with no credential of the store URL in it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
from typing import TYPE_CHECKING, Any

from ._cli_run import EXIT_CODES, guarded
from ._cli_show import entry_json
from ._cli_store import STORE_COMMANDS, add_store_commands, run_store_command

if TYPE_CHECKING:
    from ._registry import TaskRegistry

__all__ = ["COMMANDS", "add_commands", "entry_json", "run_command"]

#: The subcommands this module adds and runs.
COMMANDS = ("worker", *STORE_COMMANDS)

logger = logging.getLogger("duetime.durable")


def add_commands(sub: Any) -> None:
    """Add the ``worker`` and store subcommands to an argparse subparsers object."""
    worker = sub.add_parser(
        "worker",
        help="run stored durable entries until SIGINT/SIGTERM",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker.add_argument("target", metavar="MODULE:REGISTRY", help="e.g. app.tasks:tasks")
    worker.add_argument("--store", required=True, metavar="URL", help="e.g. sqlite:///jobs.db")
    worker.add_argument("--concurrency", type=int, default=16, help="tasks run at once (16)")
    worker.add_argument(
        "--grace",
        type=float,
        default=30.0,
        help="seconds running tasks get at shutdown before their leases are released (30)",
    )
    worker.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    worker.add_argument("--quiet", action="store_true", help="log warnings and errors only")
    add_store_commands(sub)


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed ``worker`` or store command; return the exit status.

    An operator's error is one line on stderr and status 2; see :mod:`._cli_run`.
    """
    return guarded(args.command, args.store, lambda: _run(args))


def _run(args: argparse.Namespace) -> int:
    if args.command == "worker":
        if args.concurrency < 1:
            print("--concurrency must be >= 1", file=sys.stderr)
            return 2
        try:
            registry = load_registry(args.target)
        except (ImportError, LookupError, TypeError, ValueError) as exc:
            print(f"duetime worker: {exc}", file=sys.stderr)
            return 2
        logging.basicConfig(
            level=logging.WARNING if args.quiet else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        import anyio

        anyio.run(
            _serve,
            registry,
            args.store,
            args.concurrency,
            max(args.grace, 0.0),
            backend=args.backend,
        )
        return 0
    return run_store_command(args)


def load_registry(target: str) -> TaskRegistry:
    """Import ``module`` and return its TaskRegistry ``attr`` (``"module:attr"``).

    Without ``:attr`` the module must hold exactly one TaskRegistry.

    :raises ImportError: the module cannot be imported
    :raises LookupError: no such attribute, or no single registry in the module
    :raises TypeError: the attribute is not a TaskRegistry
    """
    from ._registry import TaskRegistry

    module_name, _, attr = target.partition(":")
    if not module_name:
        raise ValueError(f"expected MODULE:REGISTRY, got {target!r}")
    module = importlib.import_module(module_name)
    if not attr:
        found = [v for v in vars(module).values() if isinstance(v, TaskRegistry)]
        if len(found) != 1:
            raise LookupError(f"{module_name} holds {len(found)} TaskRegistry objects: name one")
        return found[0]
    obj: Any = module
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise LookupError(f"{module_name} has no attribute {attr!r}") from None
    if not isinstance(obj, TaskRegistry):
        raise TypeError(f"{target} is a {type(obj).__name__}, not a duetime TaskRegistry")
    return obj


async def _serve(registry: TaskRegistry, url: str, concurrency: int, grace: float) -> None:
    import anyio

    from ._runner import DurableRunner
    from ._url import open_store

    store = open_store(url)
    signals = [signal.SIGINT, signal.SIGTERM]
    # Listen before starting, so a signal during startup is not lost.
    with anyio.open_signal_receiver(*signals) as received:
        async with DurableRunner(
            store, registry, worker=True, concurrency=concurrency, grace=grace
        ) as runner:
            logger.info(
                "duetime worker %s ready: %d tasks, store %s, concurrency %d",
                runner.owner,
                len(registry),
                url,
                concurrency,
            )
            async for signum in received:
                logger.info(
                    "%s: stopping (grace %.1f s, then leases are released)",
                    signal.Signals(signum).name,
                    grace,
                )
                break
    logger.info("duetime worker stopped")
