"""StoreSession: a store entered once, with its client and (``worker=True``) its worker.

The Scheduler composes one when it is given ``store=``; the CLI's ``worker``
command runs one with ``worker=True``.  Entering it enters the store and opens
the client; with a worker, starts it.  Leaving it stops the worker (the grace,
then cancellation and releases), closes the client and leaves the store.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
from anyio import CancelScope, get_cancelled_exc_class

from .._util import to_delay
from ._client import Client
from ._deferred import Watcher
from ._log import describe, printable, worker_log
from ._redact import redact_url
from ._registry import TaskRegistry
from ._store import Entry, Store
from ._worker import Worker

__all__ = ["CLOSE_CAP", "StoreSession"]

#: How long leaving a session waits for the store to close.
CLOSE_CAP = 5.0

# Sessions whose store was entered, so that a store object shared by two open
# Schedulers can be named as the reason when the second one cannot enter it.
_entered: weakref.WeakSet[StoreSession] = weakref.WeakSet()


def _store_name(store: Store) -> str:
    """How a log line names a store: its URL without credentials, or its path."""
    url = getattr(store, "url", None)
    if isinstance(url, str):
        return redact_url(url)
    path = getattr(store, "path", None)
    if isinstance(path, str | os.PathLike):
        return printable(os.fspath(path))
    return type(store).__name__


def _explain_shared_store(session: StoreSession, exc: RuntimeError) -> None:
    """Raise a RuntimeError that says what to do if ``session``'s store refused to
    open because another session (another Scheduler) holds the same store object."""
    if any(s is not session and s.store is session.store for s in _entered):
        raise RuntimeError(
            f"this {type(session.store).__name__} object is already open in another"
            " Scheduler: each Scheduler needs a store object of its own; make a second"
            " one on the same file or server (SQLiteStore(path) or open_store(url) again)"
        ) from exc


class StoreSession:
    """A store entered once, its :attr:`client`, and with ``worker=True`` its :attr:`worker`.

    Use it as ``async with StoreSession(store, tasks, worker=True) as session:``
    (``Scheduler(store=..., tasks=...)`` does): entering it enters the store,
    leaving it leaves the store.

    :param store: the durable store (entered and left with the session)
    :param registry: the tasks this process may defer and run
    :param worker: run stored entries (False: only defer, e.g. a web process)
    :param concurrency: how many durable tasks run at once in this process
    :param grace: how long leaving waits for running async tasks before
        cancelling them and releasing their leases (None: as long as they take);
        then the outcomes not yet recorded get 5 s more (``STOP_CAP``), after
        which they are left to their lease; a sync task's thread cannot be
        interrupted, so leaving waits for it, however long it takes, renewing
        its lease (a WARNING names it)
    :param on_error: ``on_error(entry, exc)`` for each final failure of a task
        (retries exhausted, an unknown task, an undecodable payload); default:
        logged at ERROR on the ``duetime.durable`` logger
    :param owner: the worker's name in the store (default: host, pid, random)
    :raises TypeError: on an argument of the wrong type
    :raises ValueError: on an out-of-range value
    """

    def __init__(
        self,
        store: Store,
        registry: TaskRegistry,
        *,
        worker: bool = True,
        concurrency: int = 16,
        grace: float | None = None,
        on_error: Callable[[Entry, BaseException], object] | None = None,
        owner: str | None = None,
    ) -> None:
        if not isinstance(store, Store):
            raise TypeError(f"store must implement the duetime Store protocol, got {store!r}")
        if not isinstance(registry, TaskRegistry):
            raise TypeError(f"tasks must be a duetime.TaskRegistry, got {registry!r}")
        #: The store this session enters.
        self.store = store
        #: The worker (``worker=True``), or None.
        self.worker = (
            Worker(store, registry, concurrency=concurrency, on_error=on_error, owner=owner)
            if worker
            else None
        )
        #: The client: defer, list, cancel, retry, delete.
        self.client = Client(store, registry, self.worker)
        self._registry = registry
        self._grace = None if grace is None else to_delay(grace, "grace")
        self._tg: anyio.abc.TaskGroup | None = None
        self._store_scope: CancelScope | None = None

    @property
    def open(self) -> bool:
        """Whether the session is entered and not leaving."""
        return self.client.state == "open"

    @property
    def grace(self) -> float | None:
        """How long leaving waits for running tasks (None: as long as they take)."""
        return self._grace

    @grace.setter
    def grace(self, value: float | None) -> None:
        self._grace = None if value is None else to_delay(value, "grace")

    async def __aenter__(self) -> StoreSession:
        if self.client.state != "new":
            raise RuntimeError("a StoreSession can be entered only once")
        # The store is entered in a scope of the session's own, entered here and
        # left after the store: leaving can then bound the store's close (a
        # client that hangs closing a connection it reopened) with a deadline,
        # while the store's task groups exit in the scope they were entered in.
        scope = CancelScope()
        scope.__enter__()
        try:
            await self.store.__aenter__()
        except BaseException as exc:
            scope.__exit__(type(exc), exc, exc.__traceback__)  # never cancelled: re-raise
            if isinstance(exc, RuntimeError):
                _explain_shared_store(self, exc)
            raise
        _entered.add(self)
        tg = anyio.create_task_group()
        try:
            await tg.__aenter__()
        except BaseException:
            await self._close_store(scope, None, None, None)
            raise
        self._store_scope = scope
        self._tg = tg
        self.client.watcher_ = Watcher(self.store, tg)
        self.client.state = "open"
        worker = self.worker
        if worker is not None:
            worker_log.info(
                "duetime worker %s ready: %d tasks, store %s, concurrency %d",
                worker.owner,
                len(self._registry),
                _store_name(self.store),
                worker.concurrency,
            )
            worker.start(tg)
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """Stop the worker (:meth:`Worker.stop <duetime.durable.Worker.stop>`:
        ``grace`` for running async tasks when the block ended without an error,
        none otherwise), close the client, leave the store (at most
        :data:`CLOSE_CAP` seconds, then its connections are abandoned).

        A worker whose store raised :class:`~duetime.durable.StoreLost`
        (its file deleted or replaced) stops at once: the block inside ``async
        with`` is cancelled, nothing is released or finished, and leaving raises
        that StoreLost (the store logged it once)."""
        self.client.state = "closed"
        if self.client.watcher_ is not None:
            self.client.watcher_.close()
        worker = self.worker
        try:
            if worker is not None:
                await worker.stop(self._grace if exc_type is None else 0)
        finally:
            # Only the worker's loops are left; the task group exits outside any shield.
            tg = self._tg
            assert tg is not None
            tg.cancel_scope.cancel()
            try:
                await tg.__aexit__(None, None, None)
            finally:
                assert self._store_scope is not None
                await self._close_store(self._store_scope, exc_type, exc, tb)
                if worker is not None:
                    worker_log.info("duetime worker %s stopped", worker.owner)
        lost = worker.lost if worker is not None else None
        if lost is not None and (exc is None or isinstance(exc, get_cancelled_exc_class())):
            raise lost

    async def _close_store(self, scope: CancelScope, exc_type: Any, exc: Any, tb: Any) -> None:
        """Leave the store, at most CLOSE_CAP seconds, then leave ``scope`` (the
        scope the store was entered in: its task groups exit in it).  An error
        while closing is logged, not raised: every outcome was recorded before,
        and a client that fails to close (coredis after a reconnect, cut short
        or not) must not turn a clean stop into a crash."""
        scope.deadline = anyio.current_time() + CLOSE_CAP
        try:
            await self.store.__aexit__(exc_type, exc, tb)
        except BaseException as error:
            try:
                swallowed = scope.__exit__(type(error), error, error.__traceback__)
            except Exception as rest:  # trio re-raises a group without its own Cancelled
                swallowed, error = False, rest
            if not swallowed:
                if not isinstance(error, Exception):
                    raise
                worker_log.warning("durable store: closing it failed (%s)", describe(error))
        else:
            scope.__exit__(None, None, None)
        if scope.cancel_called:
            worker_log.warning(
                "durable store: closing it took over %g s; its connections were abandoned",
                CLOSE_CAP,
            )
