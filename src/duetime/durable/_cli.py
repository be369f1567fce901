"""``python -m duetime worker``, and the store commands (``entries``,
``dead-letters``, ``retry``, ``delete``, ``abort``, in :mod:`._cli_store`).

``worker MODULE:REGISTRY --store URL`` imports the module the operator named,
takes its :class:`~duetime.durable.TaskRegistry`, and runs stored
entries until SIGINT or SIGTERM, honoured at any moment (:func:`_serve`): it
stops claiming, gives running async tasks ``--grace`` seconds, releases their
leases, and waits for sync tasks' threads (renewing their leases); a second
signal exits at once.
Every command ends an operator's error (a bad URL, an unreachable or refused
store, a file that is not a store) with one line on stderr and exit status 2
(:mod:`._cli_run`), with no credential of the store URL in it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NoReturn, Protocol

from ._cli_dashboard import add_dashboard_command, run_dashboard
from ._cli_run import STORE_LOST, WORKER_EXIT_CODES, guarded
from ._cli_show import entry_json
from ._cli_store import STORE_COMMANDS, add_store_commands, run_store_command
from ._log import worker_log
from ._redact import redact_text

if TYPE_CHECKING:
    import anyio

    from ._registry import TaskRegistry
    from ._worker import Worker

# redact_text: for the usage errors of python -m duetime's parser.
__all__ = [
    "COMMANDS",
    "MetricsServer",
    "ServeMetrics",
    "add_commands",
    "entry_json",
    "redact_text",
    "run_command",
    "run_dashboard",
]

#: The subcommands this module adds and runs.
COMMANDS = ("worker", *STORE_COMMANDS)

logger = worker_log


def add_commands(sub: Any) -> None:
    """Add the ``worker`` and store subcommands to an argparse subparsers object."""
    worker = sub.add_parser(
        "worker",
        help="run stored durable entries until SIGINT/SIGTERM",
        epilog=WORKER_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    worker.add_argument("target", metavar="MODULE:REGISTRY", help="e.g. app.tasks:tasks")
    worker.add_argument("--store", required=True, metavar="URL", help="e.g. sqlite:///jobs.db")
    worker.add_argument("--concurrency", type=int, default=16, help="tasks run at once (16)")
    worker.add_argument(
        "--grace",
        type=float,
        default=30.0,
        help="seconds running async tasks get at shutdown before they are cancelled and "
        "their leases released; sync tasks' threads are waited for (30)",
    )
    worker.add_argument("--backend", choices=["asyncio", "trio"], default="asyncio")
    worker.add_argument("--quiet", action="store_true", help="log warnings and errors only")
    worker.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics on http://HOST:PORT/metrics (0: any free port, "
        "logged); needs the prometheus extra",
    )
    worker.add_argument(
        "--metrics-host",
        default="127.0.0.1",
        metavar="HOST",
        help="the address --metrics-port binds (127.0.0.1: this host only)",
    )
    add_store_commands(sub)
    add_dashboard_command(sub)  # run by duetime.__main__ with the dashboard's server


class MetricsServer(Protocol):
    """A running ``/metrics`` endpoint (``duetime.otel.MetricsServer``)."""

    host: str
    port: int

    def close(self) -> None:
        """Stop serving."""


#: Starts the ``/metrics`` endpoint of ``worker --metrics-port``: ``(host, port)``.
ServeMetrics = Callable[[str, int], MetricsServer]


def run_command(args: argparse.Namespace, serve_metrics: ServeMetrics | None = None) -> int:
    """Run a parsed ``worker`` or store command; return the exit status.

    An operator's error is one line on stderr and status 2; see :mod:`._cli_run`.

    :param serve_metrics: starts the worker's ``/metrics`` endpoint (``--metrics-port``)
    """
    return guarded(args.command, args.store, lambda: _run(args, serve_metrics))


def _run(args: argparse.Namespace, serve_metrics: ServeMetrics | None = None) -> int:
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
        # The Redis client logs each reconnection attempt at INFO; the worker logs
        # an outage once when it starts and once when it ends (duetime.durable.store).
        logging.getLogger("coredis").setLevel(logging.WARNING)
        import anyio

        metrics: MetricsServer | None = None
        if args.metrics_port is not None:
            if serve_metrics is None:  # pragma: no cover - python -m duetime passes it
                raise ValueError("--metrics-port is not available here")
            try:
                metrics = serve_metrics(args.metrics_host, args.metrics_port)
            except OSError as exc:  # in use, not an address of this host
                raise ValueError(
                    f"--metrics-port: cannot listen on {args.metrics_host}:{args.metrics_port}"
                    f" ({exc.strerror or exc})"
                ) from None
            logger.info(
                "serving Prometheus metrics on http://%s:%d/metrics", metrics.host, metrics.port
            )
        try:
            status: int = anyio.run(
                _serve,
                registry,
                args.store,
                args.concurrency,
                max(args.grace, 0.0),
                backend=args.backend,
            )
        finally:
            if metrics is not None:
                metrics.close()
        return status
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


#: After the first signal, how long the shutdown may take beyond the grace while
#: no sync task's thread runs (store calls that hang) before the process exits.
SHUTDOWN_CAP = 60.0


class _Life:
    """What the signal watcher needs to know of the worker it stops."""

    def __init__(self, main: anyio.CancelScope, stop: anyio.Event, grace: float) -> None:
        self.main = main  # cancelled: give up opening the store
        self.stop = stop  # set: stop the worker (a graceful stop)
        self.grace = grace
        self.worker: Worker | None = None  # set once the store answered
        self.opening = True


def _force_exit(signum: int, why: str, life: _Life) -> NoReturn:
    """End the process now: the leases it still holds lapse (nothing is lost:
    another worker runs those entries once their leases end)."""
    threads = life.worker.threads_running if life.worker is not None else 0
    logger.warning(
        "%s: exiting now (%s); %d task thread(s) abandoned; the leases this worker "
        "still holds lapse after their lease",
        signal.Signals(signum).name,
        why,
        threads,
    )
    logging.shutdown()
    sys.stderr.flush()
    os._exit(128 + signum)


async def _watch_signals(received: Any, life: _Life) -> None:
    """Honour SIGINT and SIGTERM at any moment: while the store is being opened,
    give the open up; while running, stop gracefully; while stopping, a second
    signal (or a shutdown that outlasts its bound while no thread runs) ends the
    process at once."""
    import anyio

    from ._worker import STOP_CAP

    signum = await received.__anext__()
    name = signal.Signals(signum).name
    if life.opening:
        logger.info("%s while opening the store: not starting", name)
        life.main.cancel()
        # A cancelled open that still hangs (a library that ignores it) must not
        # keep the process alive.
        await anyio.sleep(STOP_CAP)
        _force_exit(signum, "the store's open did not give up", life)
    logger.info(
        "%s: stopping (async tasks get a grace of %.1f s, then are cancelled and their "
        "leases released; sync tasks' threads are waited for; a second signal exits now)",
        name,
        life.grace,
    )
    life.stop.set()
    while True:
        with anyio.move_on_after(life.grace + SHUTDOWN_CAP):
            second = await received.__anext__()
            _force_exit(second, f"second {signal.Signals(second).name}", life)
        worker = life.worker
        if worker is not None and worker.threads_running:
            await worker.wait_threads()  # a thread is waited for as long as it runs
            continue
        _force_exit(signum, f"the shutdown took over {life.grace + SHUTDOWN_CAP:.0f} s", life)


async def _serve(registry: TaskRegistry, url: str, concurrency: int, grace: float) -> int:
    """Run a worker until SIGINT or SIGTERM; return the exit status (0, or 4: store lost).

    The signals are handled from the start, before the store is opened: a
    signal while the store does not answer gives the open up and exits.  Once
    running, the first signal stops claiming, gives async tasks ``grace``
    seconds, cancels them and releases their leases, and waits for sync tasks'
    threads (which cannot be interrupted) while renewing their leases.  A
    second signal, or a shutdown that takes ``SHUTDOWN_CAP`` seconds beyond the
    grace while no thread runs, ends the process at once with status
    128 + the signal's number; the leases it still holds then lapse.  A store
    lost under the worker (its SQLite file deleted or replaced) stops it at once
    with status :data:`~._cli_run.STORE_LOST` (4), the store having logged one
    ERROR: restarting it opens what is there now.
    """
    import anyio

    from ._redact import redact_url
    from ._session import StoreSession
    from ._store import StoreLost
    from ._url import open_store

    lost = False
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as received:
        async with anyio.create_task_group() as tg:
            main = anyio.CancelScope()
            life = _Life(main, anyio.Event(), grace)
            tg.start_soon(_watch_signals, received, life, name="duetime worker signals")
            with main:
                store = open_store(url)
                try:
                    async with StoreSession(
                        store, registry, worker=True, concurrency=concurrency, grace=grace
                    ) as session:  # it logs when it is ready and when it stopped
                        life.worker = session.worker
                        life.opening = False
                        await life.stop.wait()
                except StoreLost:  # logged once by the store: nothing more to say
                    lost = True
            tg.cancel_scope.cancel()
    if lost:
        return STORE_LOST
    if life.worker is None:
        logger.info("duetime worker stopped before the store %s answered", redact_url(url))
    return 0
