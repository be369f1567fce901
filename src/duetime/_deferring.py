"""The Scheduler's durable methods: ``defer`` and its friends on a store.

:class:`Deferring` is a base of :class:`~duetime.Scheduler`: thin, typed
delegations to the client of the :class:`~duetime.durable.StoreSession` the
block enters (``Scheduler(store=..., tasks=...)``).  The durable package is
imported inside the methods that need it, not at module level (the client
makes the handles of what it stores): it is built on the core, which does not
import it back at import time.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine, Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple, Unpack, overload

from ._cron import Cron
from ._vocab import Misfire, Overlap, Status

if TYPE_CHECKING:
    from .durable import Client, Deferred, Entry, OnConflict, StoreSession

__all__ = ["Deferring"]

T = TypeVar("T")
PosArgsT = TypeVarTuple("PosArgsT")


class Deferring:
    """Registered tasks in a durable store, for a :class:`~duetime.Scheduler`.

    Every method needs the Scheduler made with ``store=`` and ``tasks=``; the
    session is ``_durable`` (None without a store), set by the Scheduler.
    """

    __slots__ = ()

    _durable: StoreSession | None

    def _client(self) -> Client:
        session = self._durable
        if session is None:
            raise RuntimeError(
                "this Scheduler has no durable store: create it with"
                " Scheduler(store=..., tasks=...) to defer registered tasks"
            )
        return session.client

    @overload
    async def defer(
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
    async def defer(
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
    async def defer(
        self,
        task: str,
        /,
        *args: Any,
        delay: float | timedelta | None = ...,
        at: datetime | None = ...,
        key: str | None = ...,
        on_conflict: OnConflict = ...,
    ) -> Deferred[Any]: ...

    async def defer(  # type: ignore[misc]  # mypy: TypeVarTuple overload impl
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

        Due now unless ``delay`` (added to the store's clock) or ``at`` is given.
        Delivery is at least once: see ``docs/guide-durable.md``.

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
            :class:`~duetime.Entry` now stored under the key; awaiting it gives
            the task's return value, whichever process runs it
        :raises RuntimeError: the Scheduler has no store
        :raises SchedulerClosed: outside the ``async with`` block
        :raises LookupError: an unknown task name
        :raises TypeError: an unregistered function, or an argument the codec
            does not carry
        :raises ValueError: a naive ``at``, a negative delay, both ``delay`` and
            ``at``, a bad key or ``on_conflict``, a payload over 64 KiB
        :raises EntryExists: as ``on_conflict`` says
        """
        client = self._client()
        entry = await client.defer(
            task, *args, delay=delay, at=at, key=key, on_conflict=on_conflict
        )
        return client.handle(entry)

    async def defer_many(
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
        client = self._client()
        entries = await client.defer_many(
            task, argsets, delay=delay, at=at, keys=keys, on_conflict=on_conflict
        )
        return client.handles(entries)

    async def defer_every(
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

        With several workers each occurrence runs once.  ``current_entry().due``
        is the grid point a run stands for.

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
            series' entry); a series has no single result: awaiting it raises
            TypeError
        :raises RuntimeError: the Scheduler has no store
        :raises TypeError: a trigger that is neither an interval nor a Cron
        :raises ValueError: a bad policy, interval or start; otherwise as :meth:`defer`
        """
        client = self._client()
        entry = await client.defer_every(
            trigger,
            task,
            *args,
            key=key,
            start=start,
            misfire=misfire,
            overlap=overlap,
            on_conflict=on_conflict,
        )
        return client.handle(entry)

    def deferred_handle(self, key: str) -> Deferred[Any]:
        """A :class:`~duetime.Deferred` on the entry stored under ``key``, by any
        process: nothing is read until it is awaited (or refreshed).

        :raises TypeError: ``key`` is not a str
        :raises RuntimeError: the Scheduler has no store
        """
        from .durable import Deferred

        if not isinstance(key, str):
            raise TypeError(f"key must be a str, not {type(key).__name__}")
        return Deferred(self._client(), key)

    async def cancel_deferred(self, key: str, *, abort: bool = False) -> bool:
        """Delete a PENDING or FAILED entry or series; with ``abort=True``, also
        abort a RUNNING one, from any process.

        An abort is stored with the entry and announced: the worker holding it
        cancels its run (an async task), or a sync task sees
        ``current_entry().abort_requested`` turn True and stops when it polls
        it; the entry ends CANCELLED, not retried, not dead-lettered, and its
        awaiters get :exc:`~duetime.CallbackCancelled`.  A run that returns
        before the abort reaches it still completes (one outcome, whatever
        races).  A series stops, and its running occurrence is aborted.
        Without ``abort`` (the default) a running entry is left alone.

        :param abort: abort a running entry too
        :return: True if deleted or its abort requested; False if absent or
            finished, or running and ``abort`` is False
        :raises TypeError: ``key`` is not a str (any str is looked up, even one
            ``defer`` would refuse: a malformed row a store lists), or
            ``abort`` is not a bool
        :raises RuntimeError: the Scheduler has no store
        """
        return await self._client().cancel_deferred(key, abort=abort)

    async def deferred(self, key: str) -> Entry | None:
        """The entry stored under ``key`` (finished ones while kept as tombstones), or None.

        :raises TypeError: ``key`` is not a str (any str is looked up, even one
            ``defer`` would refuse: a malformed row a store lists)
        :raises RuntimeError: the Scheduler has no store
        """
        return await self._client().deferred(key)

    async def deferred_entries(
        self, *, status: Status | None = None, limit: int = 1000
    ) -> list[Entry]:
        """Stored entries by due time, optionally only those with ``status``.

        :raises RuntimeError: the Scheduler has no store
        """
        return await self._client().entries(status=status, limit=limit)

    async def dead_letters(self, *, limit: int = 1000) -> list[Entry]:
        """FAILED entries: retries exhausted, unknown task, bad payload, or poison
        (a worker died with it ``max_deliveries`` times).

        :raises RuntimeError: the Scheduler has no store
        """
        return await self._client().dead_letters(limit=limit)

    async def retry_deferred(self, key: str) -> bool:
        """Make a FAILED entry PENDING again, due now, attempt 1; False if not FAILED.

        :raises TypeError: ``key`` is not a str (any str is looked up, even one
            ``defer`` would refuse: a malformed row a store lists)
        :raises RuntimeError: the Scheduler has no store
        """
        return await self._client().retry_deferred(key)

    async def delete_deferred(self, key: str) -> bool:
        """Delete an entry that is not running (dead letters and tombstones too).

        :raises TypeError: ``key`` is not a str (any str is looked up, even one
            ``defer`` would refuse: a malformed row a store lists)
        :raises RuntimeError: the Scheduler has no store
        """
        return await self._client().delete_deferred(key)
