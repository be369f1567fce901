"""DurableRunner: defer registered tasks into a store, and (as a worker) run them.

The Scheduler owns one runner when it is given ``store=``: ``defer`` and friends
go through it, and with ``worker=True`` its claim loop (``_worker.WorkerSide``)
runs stored entries.  This module holds the lifecycle and the producer API.
"""

from __future__ import annotations

import math
import os
import socket
import time
import uuid
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

import anyio
from anyio import CancelScope, Event, get_cancelled_exc_class

from .._exceptions import SchedulerClosed
from .._util import check_aware, to_delay
from .._vocab import MISFIRE, OVERLAP, Misfire, Overlap, Status
from ._codec import encode_args
from ._finisher import Finisher
from ._log import StoreHealth, describe, printable, worker_log
from ._redact import redact_url
from ._registry import TaskRegistry
from ._running import _Run
from ._series import Series, trigger_grid
from ._store import Claim, Entry, NewRow, OnConflict, Store, StoreLost
from ._worker import SHIELD_CAP, STOP_CAP, WorkerSide

#: How long leaving the runner waits for the store to close.
CLOSE_CAP = 5.0

__all__ = ["DurableRunner"]

_MAX_KEY = 512
# Runners whose store was entered, so that a store object shared by two open
# Schedulers can be named as the reason when the second one cannot enter it.
_entered: weakref.WeakSet[DurableRunner] = weakref.WeakSet()
_ON_CONFLICT = ("keep", "replace", "error")


def _check_key(key: object, what: str = "key") -> str:
    if not isinstance(key, str):
        raise TypeError(f"{what} must be a str, got {key!r}")
    if not key or len(key) > _MAX_KEY or not key.isprintable():
        raise ValueError(f"{what} must be 1 to {_MAX_KEY} printable characters, got {key!r}")
    return key


def _lookup_key(key: object) -> str:
    """A key to look up or delete: any str, even one ``defer`` would refuse (a
    store may list such keys: a row another program wrote, set aside as
    malformed, must stay reachable through the Scheduler)."""
    if not isinstance(key, str):
        raise TypeError(f"key must be a str, got {key!r}")
    return key


def _new_keys(n: int) -> list[str]:
    """``n`` fresh keys, time-ordered like a UUIDv7: the time in milliseconds
    (12 hex digits), 80 random bits per call (20), and for a batch a counter (6).
    Ordered keys go to the right edge of a store's key index instead of random
    pages (SQLite writes about half as many pages per batch)."""
    head = f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"
    return [head] if n == 1 else [f"{head}{i:06x}" for i in range(n)]


def _when(
    delay: float | timedelta | None, at: datetime | None
) -> tuple[float | None, float | None]:
    """``(due, delay)`` for a NewRow from defer's ``delay=``/``at=`` (due now by default)."""
    if at is not None:
        if delay is not None:
            raise ValueError("pass delay= or at=, not both")
        if not isinstance(at, datetime):
            raise TypeError(f"at must be an aware datetime, got {at!r}")
        check_aware(at)
        return at.timestamp(), None
    return None, 0.0 if delay is None else to_delay(delay, "delay")


def _store_name(store: Store) -> str:
    """How a log line names a store: its URL without credentials, or its path."""
    url = getattr(store, "url", None)
    if isinstance(url, str):
        return redact_url(url)
    path = getattr(store, "path", None)
    if isinstance(path, str | os.PathLike):
        return printable(os.fspath(path))
    return type(store).__name__


def _explain_shared_store(runner: DurableRunner, exc: RuntimeError) -> None:
    """Raise a RuntimeError that says what to do if ``runner``'s store refused to
    open because another runner (another Scheduler) holds the same store object."""
    if any(r is not runner and r._store is runner._store for r in _entered):
        raise RuntimeError(
            f"this {type(runner._store).__name__} object is already open in another"
            " Scheduler: each Scheduler needs a store object of its own; make a second"
            " one on the same file or server (SQLiteStore(path) or open_store(url) again)"
        ) from exc


class DurableRunner(WorkerSide):
    """Defers registered tasks into a store and, as a worker, runs them.

    Use it as ``async with DurableRunner(store, tasks, worker=True) as runner:``;
    entering it enters the store, leaving it leaves the store.

    :param store: the durable store (entered and left with the runner)
    :param registry: the tasks this process may defer and run
    :param worker: run stored entries (False: only defer, e.g. a web process)
    :param concurrency: how many durable tasks run at once in this process
    :param grace: how long leaving waits for running async tasks before
        cancelling them and releasing their leases (None: as long as they take);
        a sync task's thread cannot be interrupted, so leaving waits for it,
        however long it takes, renewing its lease (a WARNING names it)
    :param on_error: ``on_error(entry, exc)`` for each final failure of a task
        (retries exhausted, an unknown task, an undecodable payload); default:
        logged at ERROR on the ``duetime.durable`` logger
    :param wall_clock: accepted for symmetry with the Scheduler; durable times
        are on the store's clock, so it is not consulted
    :param owner: this worker's name in the store (default: host, pid, random)
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
        wall_clock: Callable[[], datetime] | None = None,
        owner: str | None = None,
    ) -> None:
        if not isinstance(store, Store):
            raise TypeError(f"store must implement the duetime Store protocol, got {store!r}")
        if not isinstance(registry, TaskRegistry):
            raise TypeError(f"tasks must be a duetime.TaskRegistry, got {registry!r}")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int):
            raise TypeError(f"concurrency must be an int, got {concurrency!r}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if on_error is not None and not callable(on_error):
            raise TypeError("on_error must be callable")
        self._store = store
        self._registry = registry
        self._worker = bool(worker)
        self._concurrency = concurrency
        self._grace = None if grace is None else to_delay(grace, "grace")
        self._on_error = on_error
        self._wall_clock = wall_clock
        self.owner = (
            _check_key(owner, "owner")
            if owner is not None
            else f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        )
        self._open = False
        self._stopping = False
        self._tg: anyio.abc.TaskGroup | None = None
        self._runs: set[_Run] = set()
        self._idle: Event | None = None  # set when _runs becomes empty (shutdown waits)
        self._claim_done: Event | None = None
        # The claim loop: a poke wakes it; _wake_at is the store time it wakes
        # anyway (+inf while awake: any deferral pokes; -inf when every slot is busy).
        self._poked = False
        self._sleep_scope: CancelScope | None = None
        self._wake_at = math.inf
        self._renew_scope: CancelScope | None = None
        self._renew_at = math.inf
        self._health = StoreHealth(self._poke, self._store_lost)
        self._lost: StoreLost | None = None
        self._finisher = Finisher(store, SHIELD_CAP, self._health)
        self._threads: anyio.CapacityLimiter | None = None
        self._thread_ended: Event | None = None
        self._claim_scope: CancelScope | None = None
        self._store_scope: CancelScope | None = None
        self._queue: deque[tuple[Claim, _Run]] = deque()
        self._runners = 0
        self._idle_runners: list[Event] = []
        self._waking = 0

    # -- lifecycle -------------------------------------------------------------------

    @property
    def open(self) -> bool:
        """Whether the runner is entered and not leaving."""
        return self._open

    @property
    def grace(self) -> float | None:
        """How long leaving waits for running tasks (None: as long as they take)."""
        return self._grace

    @grace.setter
    def grace(self, value: float | None) -> None:
        self._grace = None if value is None else to_delay(value, "grace")

    async def __aenter__(self) -> DurableRunner:
        if self._open or self._stopping:
            raise RuntimeError("a DurableRunner can be entered only once")
        # The store is entered in a scope of the runner's own, entered here and
        # left after the store: leaving can then bound the store's close (a
        # client that hangs closing a connection it reopened) with a deadline,
        # while the store's task groups exit in the scope they were entered in.
        scope = CancelScope()
        scope.__enter__()
        try:
            await self._store.__aenter__()
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
        self._open = True
        if self._worker:
            worker_log.info(
                "duetime worker %s ready: %d tasks, store %s, concurrency %d",
                self.owner,
                len(self._registry),
                _store_name(self._store),
                self._concurrency,
            )
            self._claim_done = Event()
            tg.start_soon(self._claim_loop, name=f"duetime durable claim loop {self.owner}")
            tg.start_soon(self._renew_loop, name=f"duetime durable lease renewal {self.owner}")
            tg.start_soon(self._finisher.serve, name=f"duetime durable finishes {self.owner}")
        return self

    def _store_lost(self, exc: StoreLost) -> None:
        """A worker's store call raised StoreLost: stop now.  Retrying cannot help
        (every call raises it again), so the loops and runs are cancelled, and so
        is the block inside ``async with``; leaving raises the StoreLost."""
        if self._lost is not None:
            return
        self._lost = exc
        self._stopping = True
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """Stop claiming, release what did not start, give running async tasks
        ``grace``, then cancel them and release their leases; leave the store.

        A worker whose store raised :class:`~duetime.durable._store.StoreLost`
        (its file deleted or replaced) stops at once: the block inside ``async
        with`` is cancelled, nothing is released or finished, and leaving raises
        that StoreLost (the store logged it once).

        A sync task's thread cannot be interrupted: leaving waits for it after
        the grace, renewing its lease meanwhile (a WARNING names it), and records
        its outcome when it returns.  A claim in flight is waited for at most
        ``STOP_CAP`` seconds (then its rows wait out their lease), the releases
        and finishes at most ``SHIELD_CAP`` seconds, and the store's close at
        most ``CLOSE_CAP`` seconds (then its connections are abandoned)."""
        self._open = False
        self._stopping = True
        self._poke()
        try:
            if exc_type is None and self._runs and self._grace != 0:
                # Not shielded: an outer cancellation cuts the grace short.
                with anyio.move_on_after(math.inf if self._grace is None else self._grace):
                    await self._wait_idle()
        finally:
            with CancelScope(shield=True):
                if self._claim_done is not None:
                    with anyio.move_on_after(STOP_CAP):
                        await self._claim_done.wait()
                    if self._claim_scope is not None:
                        self._claim_scope.cancel()  # a store that hangs: give the claim up
                    with anyio.move_on_after(SHIELD_CAP):
                        await self._claim_done.wait()
                for run in list(self._runs):
                    if run.thread:
                        worker_log.warning(
                            "durable task %r (entry %r) still runs in a thread, which "
                            "cannot be interrupted: exit waits for it, renewing its lease",
                            run.task,
                            run.key,
                            extra={"key": run.key, "task": run.task},
                        )
                    if run.scope is not None:
                        run.scope.cancel()
                await self._wait_runs()
            # Only the loops are left; the task group must exit outside the shield.
            tg = self._tg
            assert tg is not None
            tg.cancel_scope.cancel()
            try:
                await tg.__aexit__(None, None, None)
            finally:
                assert self._store_scope is not None
                await self._close_store(self._store_scope, exc_type, exc, tb)
                if self._worker:
                    worker_log.info("duetime worker %s stopped", self.owner)
        lost = self._lost
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
            await self._store.__aexit__(exc_type, exc, tb)
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

    async def _wait_idle(self) -> None:
        while self._runs:
            self._idle = Event()
            await self._idle.wait()

    async def _wait_runs(self) -> None:
        """Wait for the runs left after cancelling: as long as a thread runs (its
        lease renewed meanwhile), then at most SHIELD_CAP for their finishes."""
        end = math.inf
        while self._runs and self._lost is None:  # a lost store records nothing
            self._idle = Event()
            if any(r.thread for r in self._runs):
                await self._idle.wait()
                continue
            if end == math.inf:
                end = anyio.current_time() + SHIELD_CAP
            with anyio.move_on_at(end) as limit:
                await self._idle.wait()
            if limit.cancelled_caught:
                return

    @property
    def threads_running(self) -> int:
        """How many sync tasks' threads run now (shutdown waits for them)."""
        return sum(1 for r in self._runs if r.thread)

    async def wait_threads(self) -> None:
        """Return once no sync task's thread runs."""
        while self.threads_running:
            self._thread_ended = Event()
            await self._thread_ended.wait()

    def _check_open(self) -> None:
        if not self._open:
            if self._stopping:
                raise SchedulerClosed(
                    "the scheduler's durable store is closed: its 'async with' block has ended"
                )
            raise SchedulerClosed(
                "the scheduler has not been entered: use"
                " 'async with Scheduler(store=..., tasks=...) as s:' and defer inside the block"
            )

    # -- producer API ------------------------------------------------------------------

    def _row(
        self,
        task: str | Callable[..., Any],
        args: Sequence[Any],
        delay: float | timedelta | None,
        at: datetime | None,
        key: str | None,
    ) -> NewRow:
        t = self._registry.resolve(task)
        self._registry.check_args(t, args)
        due, wait = _when(delay, at)
        return NewRow(
            key=_new_keys(1)[0] if key is None else _check_key(key),
            task=t.name,
            payload=encode_args(tuple(args)),
            due=due,
            delay=wait,
            lease=t.lease,
            max_deliveries=t.max_deliveries,
        )

    async def _add(self, rows: list[NewRow], on_conflict: OnConflict) -> list[Entry]:
        if on_conflict not in _ON_CONFLICT:
            raise ValueError(f"on_conflict must be one of {_ON_CONFLICT}, got {on_conflict!r}")
        self._check_open()
        entries = await self._store.add(rows, on_conflict=on_conflict)
        if self._worker and any(
            e.status is Status.PENDING and e.due.timestamp() < self._wake_at for e in entries
        ):
            self._poke()
        return entries

    async def defer(
        self,
        task: str | Callable[..., Any],
        /,
        *args: Any,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        key: str | None = None,
        on_conflict: OnConflict = "keep",
    ) -> Entry:
        """Store one entry of a registered task; it is safe in the store on return.

        :param task: the registered function, or its name
        :param args: positional arguments (JSON plus the tagged types)
        :param delay: seconds (or a timedelta) added to the store's clock
        :param at: an aware datetime (absolute; as good as this host's clock)
        :param key: the entry's key (default: a random one); an insert is
            idempotent by key
        :param on_conflict: ``"keep"`` returns an existing entry (finished ones
            included), ``"replace"`` replaces one that is not running,
            ``"error"`` raises :exc:`~duetime.EntryExists`
        :returns: the entry now stored under the key
        :raises LookupError: an unknown task name
        :raises TypeError: an unregistered function, arguments that do not bind
            to the task's signature, or an argument the codec does not carry
        :raises ValueError: a naive ``at``, a negative delay, both ``delay`` and
            ``at``, an argument the codec refuses, a payload over 64 KiB
        :raises EntryExists: see ``on_conflict``
        :raises SchedulerClosed: if the runner is not open
        """
        row = self._row(task, args, delay, at, key)
        return (await self._add([row], on_conflict))[0]

    async def defer_many(
        self,
        task: str | Callable[..., Any],
        argsets: Iterable[Sequence[Any]],
        *,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        keys: Iterable[str | None] | None = None,
        on_conflict: OnConflict = "keep",
    ) -> list[Entry]:
        """Store many entries of one task in one store call.

        Every row is checked before anything is stored.

        :param argsets: one sequence of positional arguments per entry
        :param keys: one key (or None) per entry; default: random keys
        :raises ValueError: ``keys`` of another length, or a key given twice;
            otherwise as :meth:`defer`
        """
        # The checks and the encoding of defer, done once per batch where they can
        # be (the task, the time), and per row only where they must (arguments, keys).
        t = self._registry.resolve(task)
        due, wait = _when(delay, at)
        sets = list(argsets)
        check_args = self._registry.check_args
        for args in sets:
            if type(args) is not tuple and (
                isinstance(args, str | bytes) or not isinstance(args, Sequence)
            ):
                raise TypeError(f"each item of argsets must be a tuple or list, got {args!r}")
            check_args(t, args)
        n = len(sets)
        if keys is None:
            key_list = _new_keys(n)
        else:
            given = list(keys)
            if len(given) != n:
                raise ValueError(f"got {len(given)} keys for {n} argument sets")
            fresh = iter(_new_keys(sum(1 for k in given if k is None)))
            key_list = [next(fresh) if k is None else _check_key(k) for k in given]
            if len(set(key_list)) != n:
                raise ValueError("defer_many got the same key twice")
        name, lease, max_deliveries = t.name, t.lease, t.max_deliveries
        rows = [
            NewRow(k, name, encode_args(a), due, wait, lease, max_deliveries)
            for a, k in zip(sets, key_list, strict=True)
        ]
        if not rows:
            self._check_open()
            return []
        return await self._add(rows, on_conflict)

    async def defer_every(
        self,
        trigger: float | timedelta | Any,
        task: str | Callable[..., Any],
        /,
        *args: Any,
        key: str,
        start: float | timedelta | datetime | None = None,
        misfire: Misfire = "coalesce",
        overlap: Overlap = "skip",
        on_conflict: OnConflict = "keep",
    ) -> Entry:
        """Store a recurring series: one row, on a drift-free grid.

        :param trigger: an interval (seconds or a timedelta; point ``k`` is due
            at ``start + k * interval``) or a ``duetime.Cron``
        :param key: the series' identity (required; idempotent by key)
        :param start: when the grid starts: a delay from the store's now, or an
            aware datetime (default: now; an interval's first point is ``start``,
            a cron trigger's is its first time at or after ``start``)
        :param misfire: a point claimed a whole interval or more late:
            ``"coalesce"`` runs once for the latest point, ``"skip"`` skips,
            ``"catch_up"`` runs every missed point, one after another
        :param overlap: points that come while an occurrence runs: ``"skip"``
            them, ``"wait"`` (the first runs next), or ``"allow"`` (each point
            becomes its own entry keyed ``"{key}@{occurrence}"``)
        :raises TypeError: a bad trigger or argument
        :raises ValueError: a bad policy, interval, start, or as :meth:`defer`
        """
        t = self._registry.resolve(task)
        self._registry.check_args(t, args)
        _check_key(key)
        if misfire not in MISFIRE:
            raise ValueError(f"misfire must be one of {MISFIRE}, got {misfire!r}")
        if overlap not in OVERLAP:
            raise ValueError(f"overlap must be one of {OVERLAP}, got {overlap!r}")
        trigger_grid(trigger, 0.0)  # validate at the call site
        payload = encode_args(args)
        begin: float | None = None
        if isinstance(start, datetime):
            check_aware(start)
            begin = start.timestamp()
        elif start is not None:
            offset = to_delay(start, "start")
        self._check_open()
        if begin is None:
            begin = await self._store.time() + (0.0 if start is None else offset)
        grid = trigger_grid(trigger, begin)
        first = grid.first(begin)
        if first is None:
            raise ValueError(f"{trigger!r} has no time at or after {begin}")
        row = NewRow(
            key=key,
            task=t.name,
            payload=payload,
            due=first,
            lease=t.lease,
            max_deliveries=t.max_deliveries,
            schedule=Series(grid, misfire, overlap).dump(begin),
        )
        return (await self._add([row], on_conflict))[0]

    async def cancel_deferred(self, key: str) -> bool:
        """Delete a PENDING or FAILED entry (or series); False if absent, running or finished."""
        self._check_open()
        return await self._store.cancel(_lookup_key(key))

    async def deferred(self, key: str) -> Entry | None:
        """The entry stored under ``key`` (finished ones while kept), or None."""
        self._check_open()
        return await self._store.get(_lookup_key(key))

    async def entries(self, *, status: Status | None = None, limit: int = 1000) -> list[Entry]:
        """Stored entries by due time, optionally only those with ``status``."""
        self._check_open()
        return await self._store.entries(status=status, limit=limit)

    async def dead_letters(self, *, limit: int = 1000) -> list[Entry]:
        """FAILED entries (retries exhausted, unknown task, bad payload, poison)."""
        return await self.entries(status=Status.FAILED, limit=limit)

    async def retry_deferred(self, key: str) -> bool:
        """Make a FAILED entry PENDING again, due now, attempt 1; False if not FAILED."""
        self._check_open()
        ok = await self._store.retry(_lookup_key(key))
        if ok and self._worker:
            self._poke()
        return ok

    async def delete_deferred(self, key: str) -> bool:
        """Delete an entry that is not running (dead letters and finished ones too)."""
        self._check_open()
        return await self._store.delete(_lookup_key(key))
