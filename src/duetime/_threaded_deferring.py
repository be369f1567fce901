"""ThreadedScheduler's durable methods: ``defer`` and its friends, from any thread.

:class:`ThreadedDeferring` gives a synchronous program the durable methods of
:class:`~duetime.Scheduler` (``ThreadedScheduler(store=..., tasks=...)``): each
one runs the Scheduler's method on the event loop and blocks the calling thread
until the store has answered, with the same arguments, return values and errors.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine, Iterable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple, Unpack, overload

from ._cron import Cron
from ._threaded_loop import LoopThread
from ._vocab import Misfire, Overlap, Status

if TYPE_CHECKING:
    from .durable import Deferred, Entry, OnConflict

__all__ = ["ThreadedDeferring"]

T = TypeVar("T")
PosArgsT = TypeVarTuple("PosArgsT")


class ThreadedDeferring(LoopThread):
    """Registered tasks in a durable store, for :class:`~duetime.ThreadedScheduler`.

    Each method but :meth:`deferred_handle` waits for the event loop: call it
    from any thread but the loop's own (an async job awaits the same method of
    :attr:`~duetime.ThreadedScheduler.scheduler` instead).
    """

    #: Whether the ThreadedScheduler was made with a store (set by its __init__).
    _durable: bool

    def _check_store(self) -> None:
        if not self._durable:
            raise RuntimeError(
                "this ThreadedScheduler has no durable store: create it with"
                " ThreadedScheduler(store=..., tasks=...) to defer registered tasks"
            )

    def _store_call(self, func: Callable[[], Awaitable[T]]) -> T:
        """Await ``func()`` (a method of the Scheduler) on the loop, blocking this thread."""
        self._check_store()
        return self._loop_await(func)

    @overload
    def defer(
        self,
        task: Callable[[Unpack[PosArgsT]], Coroutine[Any, Any, T]],
        /,
        *args: Unpack[PosArgsT],
        delay: float | timedelta | None = ...,
        at: datetime | None = ...,
        key: str | None = ...,
        on_conflict: OnConflict = ...,
    ) -> Deferred[T]: ...

    @overload
    def defer(
        self,
        task: Callable[[Unpack[PosArgsT]], T],
        /,
        *args: Unpack[PosArgsT],
        delay: float | timedelta | None = ...,
        at: datetime | None = ...,
        key: str | None = ...,
        on_conflict: OnConflict = ...,
    ) -> Deferred[T]: ...

    @overload
    def defer(
        self,
        task: str,
        /,
        *args: Any,
        delay: float | timedelta | None = ...,
        at: datetime | None = ...,
        key: str | None = ...,
        on_conflict: OnConflict = ...,
    ) -> Deferred[Any]: ...

    def defer(  # type: ignore[misc]  # mypy: TypeVarTuple overload impl
        self,
        task: str | Callable[..., Any],
        /,
        *args: Any,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        key: str | None = None,
        on_conflict: OnConflict = "keep",
    ) -> Deferred[Any]:
        """Store one run of a registered task; it is safe in the store on return.

        As :meth:`Scheduler.defer <duetime.Scheduler.defer>`, from any thread:
        due now unless ``delay`` (added to the store's clock) or ``at`` is given;
        delivery is at least once.

        :param task: a function registered in ``tasks``, or its name
        :param args: positional arguments: JSON values or an aware datetime,
            date, UUID, Decimal or bytes (64 KiB encoded at most)
        :param delay: seconds or a timedelta from now
        :param at: an aware datetime
        :param key: the entry's identity (default: a random key); an insert is
            idempotent by key, and a finished key is kept as a tombstone for the
            store's ``dedupe_ttl``
        :param on_conflict: when ``key`` exists (tombstones included):
            ``"keep"`` returns that entry and stores nothing, ``"replace"``
            replaces it unless it is running, ``"error"`` raises
        :return: a :class:`~duetime.Deferred` on the entry: its ``entry`` is the
            :class:`~duetime.Entry` now stored under the key.  Awaiting it needs
            the event loop (an async job); from a thread, :meth:`deferred` reads
            the entry's state
        :raises RuntimeError: the ThreadedScheduler has no store, or this is the
            event loop's own thread
        :raises SchedulerClosed: before :meth:`start` or after :meth:`shutdown`
        :raises LookupError: an unknown task name
        :raises TypeError: an unregistered function, or an argument the codec
            does not carry
        :raises ValueError: a naive ``at``, a negative delay, both ``delay`` and
            ``at``, a bad key or ``on_conflict``, a payload over 64 KiB
        :raises EntryExists: as ``on_conflict`` says
        """
        s = self._scheduler
        return self._store_call(
            partial(s.defer, task, *args, delay=delay, at=at, key=key, on_conflict=on_conflict)
        )

    def defer_many(
        self,
        task: str | Callable[..., Any],
        argsets: Iterable[Sequence[Any]],
        /,
        *,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        keys: Iterable[str | None] | None = None,
        on_conflict: OnConflict = "keep",
    ) -> list[Deferred[Any]]:
        """Store many runs of one task in one store transaction (all or nothing).

        :param argsets: one sequence of positional arguments per run
        :param keys: one key (or None for a random one) per run
        :return: a :class:`~duetime.Deferred` per run (its ``entry`` the entry now
            stored), in the order of ``argsets``
        :raises ValueError: ``keys`` of another length, a key given twice;
            otherwise as :meth:`defer` (every run is checked before any is stored)
        """
        s = self._scheduler
        return self._store_call(
            partial(
                s.defer_many, task, argsets, delay=delay, at=at, keys=keys, on_conflict=on_conflict
            )
        )

    def defer_every(
        self,
        trigger: float | timedelta | Cron,
        task: str | Callable[..., Any],
        /,
        *args: Any,
        key: str,
        start: float | timedelta | datetime | None = None,
        misfire: Misfire = "coalesce",
        overlap: Overlap = "skip",
        on_conflict: OnConflict = "keep",
    ) -> Deferred[Any]:
        """Store a recurring series of a registered task: one row on a drift-free grid.

        As :meth:`Scheduler.defer_every <duetime.Scheduler.defer_every>`, from any
        thread: with several workers each occurrence runs once.

        :param trigger: an interval (seconds or a timedelta) or a :class:`~duetime.Cron`
        :param key: the series' identity (required; idempotent by key)
        :param start: a delay from now or an aware datetime where the grid
            starts (default: now)
        :param misfire: for points missed while no worker ran: ``"coalesce"``
            (one run for the latest), ``"skip"``, or ``"catch_up"`` (every one)
        :param overlap: for points that come while a run is running: ``"skip"``,
            ``"wait"`` (run next), or ``"allow"`` (each its own entry,
            keyed ``"{key}@{occurrence}"``)
        :return: a :class:`~duetime.Deferred` on the series (its ``entry`` the
            series' entry); a series has no single result
        :raises RuntimeError: the ThreadedScheduler has no store, or this is the
            event loop's own thread
        :raises TypeError: a trigger that is neither an interval nor a Cron
        :raises ValueError: a bad policy, interval or start; otherwise as :meth:`defer`
        """
        s = self._scheduler
        return self._store_call(
            partial(
                s.defer_every,
                trigger,
                task,
                *args,
                key=key,
                start=start,
                misfire=misfire,
                overlap=overlap,
                on_conflict=on_conflict,
            )
        )

    def deferred_handle(self, key: str) -> Deferred[Any]:
        """A :class:`~duetime.Deferred` on the entry stored under ``key``, by any
        process: nothing is read until it is awaited (on the event loop).

        :raises TypeError: ``key`` is not a str
        :raises RuntimeError: the ThreadedScheduler has no store
        """
        if not isinstance(key, str):
            raise TypeError(f"key must be a str, not {type(key).__name__}")
        self._check_store()
        return self._scheduler.deferred_handle(key)

    def cancel_deferred(self, key: str, *, abort: bool = False) -> bool:
        """Delete a PENDING or FAILED entry or series; with ``abort=True``, also
        abort a RUNNING one, from any process.

        As :meth:`Scheduler.cancel_deferred <duetime.Scheduler.cancel_deferred>`:
        an abort is stored with the entry and announced; the worker holding it
        cancels its run (an async task), or a sync task sees
        ``current_entry().abort_requested`` turn True and stops when it polls
        it; the entry ends CANCELLED, not retried, not dead-lettered.  A run
        that returns before the abort reaches it still completes.  A series
        stops, and its running occurrence is aborted.  Without ``abort`` (the
        default) a running entry is left alone.

        :param abort: abort a running entry too
        :return: True if deleted or its abort requested; False if absent or
            finished, or running and ``abort`` is False
        :raises TypeError: ``key`` is not a str (any str is looked up, even one
            ``defer`` would refuse: a malformed row a store lists), or
            ``abort`` is not a bool
        :raises RuntimeError: the ThreadedScheduler has no store, or this is the
            event loop's own thread
        :raises SchedulerClosed: before :meth:`start` or after :meth:`shutdown`
        """
        return self._store_call(partial(self._scheduler.cancel_deferred, key, abort=abort))

    def deferred(self, key: str) -> Entry | None:
        """The entry stored under ``key`` (finished ones while kept as tombstones), or None.

        :raises TypeError: ``key`` is not a str (any str is looked up, even one
            ``defer`` would refuse: a malformed row a store lists)
        :raises RuntimeError: the ThreadedScheduler has no store, or this is the
            event loop's own thread
        :raises SchedulerClosed: before :meth:`start` or after :meth:`shutdown`
        """
        return self._store_call(partial(self._scheduler.deferred, key))

    def deferred_entries(self, *, status: Status | None = None, limit: int = 1000) -> list[Entry]:
        """Stored entries by due time, optionally only those with ``status``.

        :raises RuntimeError: the ThreadedScheduler has no store, or this is the
            event loop's own thread
        :raises SchedulerClosed: before :meth:`start` or after :meth:`shutdown`
        """
        return self._store_call(
            partial(self._scheduler.deferred_entries, status=status, limit=limit)
        )

    def dead_letters(self, *, limit: int = 1000) -> list[Entry]:
        """FAILED entries: retries exhausted, unknown task, bad payload, or poison
        (a worker died with it ``max_deliveries`` times).

        :raises RuntimeError: the ThreadedScheduler has no store, or this is the
            event loop's own thread
        :raises SchedulerClosed: before :meth:`start` or after :meth:`shutdown`
        """
        return self._store_call(partial(self._scheduler.dead_letters, limit=limit))

    def retry_deferred(self, key: str) -> bool:
        """Make a FAILED entry PENDING again, due now, attempt 1; False if not FAILED.

        :raises TypeError: ``key`` is not a str (any str is looked up, even one
            ``defer`` would refuse: a malformed row a store lists)
        :raises RuntimeError: the ThreadedScheduler has no store, or this is the
            event loop's own thread
        :raises SchedulerClosed: before :meth:`start` or after :meth:`shutdown`
        """
        return self._store_call(partial(self._scheduler.retry_deferred, key))

    def delete_deferred(self, key: str) -> bool:
        """Delete an entry that is not running (dead letters and tombstones too).

        :raises TypeError: ``key`` is not a str (any str is looked up, even one
            ``defer`` would refuse: a malformed row a store lists)
        :raises RuntimeError: the ThreadedScheduler has no store, or this is the
            event loop's own thread
        :raises SchedulerClosed: before :meth:`start` or after :meth:`shutdown`
        """
        return self._store_call(partial(self._scheduler.delete_deferred, key))
