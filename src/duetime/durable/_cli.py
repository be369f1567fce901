"""``python -m duetime worker`` and ``python -m duetime entries``.

``worker MODULE:REGISTRY --store URL`` imports the module the operator named,
takes its :class:`~duetime.durable._registry.TaskRegistry`, and runs stored
entries until SIGINT or SIGTERM; then it stops claiming, gives running tasks
``--grace`` seconds, and releases every lease it still holds before it exits.
``entries --store URL`` lists stored entries as a table or as JSON lines.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import signal
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._registry import TaskRegistry
    from ._store import Entry

__all__ = ["add_commands", "run_command"]

logger = logging.getLogger("duetime.durable")


def add_commands(sub: Any) -> None:
    """Add the ``worker`` and ``entries`` subcommands to an argparse subparsers object."""
    worker = sub.add_parser("worker", help="run stored durable entries until SIGINT/SIGTERM")
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
    entries = sub.add_parser("entries", help="list the entries of a durable store")
    entries.add_argument("--store", required=True, metavar="URL")
    entries.add_argument("--failed", action="store_true", help="dead letters only")
    entries.add_argument("--json", action="store_true", help="one JSON object per line")
    entries.add_argument("--limit", type=int, default=1000)
    entries.add_argument("--plain", action="store_true", help="plain text, even with rich")


def run_command(args: argparse.Namespace) -> int:
    """Run a parsed ``worker`` or ``entries`` command; return the exit status."""
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
    import anyio

    try:
        rows = anyio.run(_list, args.store, args.failed, args.limit)
    except (ImportError, ValueError, OSError) as exc:
        print(f"duetime entries: {exc}", file=sys.stderr)
        return 2
    if args.json:
        for e in rows:
            print(json.dumps(entry_json(e), ensure_ascii=False))
    else:
        _table(rows, plain=args.plain)
    return 0


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


async def _list(url: str, failed: bool, limit: int) -> list[Entry]:
    from .._handle import Status
    from ._url import open_store

    async with open_store(url) as store:
        return await store.entries(status=Status.FAILED if failed else None, limit=limit)


def entry_json(e: Entry) -> dict[str, Any]:
    """An entry as a JSON-able dict (arguments in the codec's tagged form)."""
    from ._codec import encode_args

    try:
        args: Any = json.loads(encode_args(e.args))
    except (TypeError, ValueError):
        args = None
    return {
        "key": e.key,
        "task": e.task,
        "status": str(e.status),
        "due": e.due.isoformat(),
        "attempt": e.attempt,
        "occurrence": e.occurrence,
        "deliveries": e.deliveries,
        "last_error": e.last_error,
        "schedule": e.schedule,
        "args": args,
    }


def _table(rows: list[Entry], *, plain: bool) -> None:
    headers = ("key", "task", "status", "due", "attempt", "last error")
    cells = [
        (
            e.key,
            e.task,
            str(e.status),
            e.due.strftime("%Y-%m-%d %H:%M:%S"),
            str(e.attempt),
            (e.last_error or "")[:80],
        )
        for e in rows
    ]
    if not plain:
        try:
            from rich.console import Console
            from rich.table import Table
        except ImportError:
            pass
        else:
            table = Table(*headers, title=f"{len(rows)} entries")
            for row in cells:
                table.add_row(*row)
            Console().print(table)
            return
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    print("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in cells:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    print(f"({len(rows)} entries)")
