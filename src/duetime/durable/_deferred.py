"""Durable handles: :class:`Deferred`, and the one watcher per session that wakes them.

A :class:`Deferred` names a stored entry by key.  Awaiting it waits until the
entry is finished, in whatever process ran it, and gives its outcome: the
return value (decoded by the durable codec), :exc:`~duetime.DeferredFailed`,
:exc:`~duetime.CallbackCancelled`, or :exc:`LookupError` for a key the store
does not hold.

No handle polls.  A :class:`Watcher` (one per :class:`StoreSession`, started
with the first await) keeps a dict key -> slot of the keys awaited; it waits
for the store to announce finishes (:meth:`Store.wait_finished
<duetime.durable.Store.wait_finished>`: Redis pub/sub, SQLite's
``data_version``, MemoryStore at once) and then re-reads only the awaited
keys, waking the waiters of each key that finished.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any, Generic, Protocol, TypeVar

import anyio
import anyio.abc

from .._exceptions import CallbackCancelled, DeferredFailed, SchedulerClosed
from .._vocab import Status
from ._codec import PayloadError, decode_result
from ._log import describe, worker_log
from ._store import ABORTED, RESULT_DROPPED, Entry, Store

__all__ = ["Deferred", "Watcher", "outcome"]

T_co = TypeVar("T_co", covariant=True)

#: The watcher re-reads the awaited keys at least this often, even if no
#: announcement came (one lost in a reconnect, a store without announcements).
SAFETY_POLL = 10.0
#: At most this many reads of awaited keys run at once.
_READS = 64

_CLOSED = "the scheduler's durable store closed while awaiting a durable entry"
_FINISHED = (Status.COMPLETED, Status.FAILED, Status.CANCELLED)


class _Slot:
    """The waiters of one key: woken together once its entry has finished."""

    __slots__ = ("entry", "event", "waiters")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.entry: Entry | None = None
        self.waiters = 0


def finished(entry: Entry | None) -> bool:
    """Whether ``entry`` has an outcome to give (None: the key is gone)."""
    return entry is None or entry.schedule is not None or entry.status in _FINISHED


class Watcher:
    """Wakes every waiter of one store in this process, from one task.

    :param store: the store whose finishes it watches
    :param task_group: where its task runs (the session's), started with the first wait
    """

    def __init__(self, store: Store, task_group: anyio.abc.TaskGroup) -> None:
        self._store = store
        self._tg = task_group
        self._slots: dict[str, _Slot] = {}
        self._running = False
        self._closed = False
        self._more: anyio.Event | None = None  # set when a key is added while idle

    @property
    def watched(self) -> int:
        """How many keys are awaited now."""
        return len(self._slots)

    async def outcome_of(self, d: Deferred[T_co]) -> T_co:
        """Wait until ``d``'s entry has finished, keep it as ``d.entry``, and give
        its outcome (see :meth:`Deferred.result`); one coroutine per awaiter.

        :raises SchedulerClosed: the session closed (before or while waiting)
        """
        key = d.key
        if self._closed:
            raise SchedulerClosed(_CLOSED)
        slot = self._slots.get(key)
        if slot is None:
            slot = self._slots[key] = _Slot()
        slot.waiters += 1
        try:
            if not self._running:
                self._running = True
                self._tg.start_soon(self._serve)
            elif self._more is not None:
                self._more.set()
            # Read once after registering: a finish before this read is seen here,
            # one after it wakes the watcher.
            entry = await self._store.get(key)
            if finished(entry):
                self._resolve(key, slot, entry)
            entry = None  # not kept while waiting: 10,000 awaiters hold no snapshots
            await slot.event.wait()
            if self._closed and slot.entry is None:
                raise SchedulerClosed(_CLOSED)
            entry = slot.entry
        finally:
            slot.waiters -= 1
            if not slot.waiters and self._slots.get(key) is slot:
                del self._slots[key]
        if entry is not None:
            d.entry = entry
            d.task = entry.task
        return outcome(key, entry, d.task)  # type: ignore[no-any-return]

    def close(self) -> None:
        """Wake every waiter with SchedulerClosed (the session is leaving)."""
        self._closed = True
        slots, self._slots = self._slots, {}
        for slot in slots.values():
            slot.event.set()

    def _resolve(self, key: str, slot: _Slot, entry: Entry | None) -> None:
        if self._slots.get(key) is slot:
            del self._slots[key]
        slot.entry = entry
        slot.event.set()

    async def _serve(self) -> None:
        """The watcher: after each announced finish, re-read the awaited keys.

        A store error is logged (once per outage) and retried after a pause
        that doubles up to :data:`SAFETY_POLL`: the awaiters wait on, and a
        store call never ends the session."""
        store = self._store
        pause = 0.0
        while True:
            try:
                await store.wait_finished(pause)  # from now on, no finish goes unannounced
                break
            except Exception as exc:
                pause = self._failed(exc, pause)
                await anyio.sleep(pause)
        pause = 0.0
        while True:
            if not self._slots:
                self._more = anyio.Event()
                await self._more.wait()
                self._more = None
            try:
                await self._read_all()
                await store.wait_finished(SAFETY_POLL)
            except Exception as exc:
                pause = self._failed(exc, pause)
                await anyio.sleep(pause)
                continue
            if pause:
                worker_log.info("durable awaiters: the store answers again")
            pause = 0.0

    @staticmethod
    def _failed(exc: Exception, pause: float) -> float:
        """Log a store error of the watcher (the first of an outage); the next pause."""
        if not pause:
            worker_log.warning(
                "durable awaiters: reading the store failed (%s); retrying", describe(exc)
            )
        return min(SAFETY_POLL, max(0.05, pause * 2))

    async def _read_all(self) -> None:
        """Read every awaited key once, at most ``_READS`` reads at once (a few
        reader tasks share one iterator of the keys)."""
        keys = iter(list(self._slots))

        async def reader() -> None:
            for key in keys:
                slot = self._slots.get(key)
                if slot is None:
                    continue
                entry = await self._store.get(key)
                if finished(entry):
                    self._resolve(key, slot, entry)

        n = min(_READS, len(self._slots))
        if n <= 1:
            await reader()
            return
        async with anyio.create_task_group() as tg:
            for _ in range(n):
                tg.start_soon(reader)


def outcome(key: str, entry: Entry | None, task: str | None) -> Any:
    """The outcome of a finished ``entry``: its decoded return value, or raise.

    :raises LookupError: no entry (never stored, deleted, or its tombstone
        expired), or a COMPLETED entry whose result is no longer kept
    :raises TypeError: a series, or a return value that was not kept (the codec
        cannot carry it, or it is too large)
    :raises DeferredFailed: the entry FAILED
    :raises CallbackCancelled: the entry was CANCELLED
    """
    if entry is None:
        raise LookupError(
            f"no durable entry {key!r}: never stored, deleted, or its tombstone expired"
        )
    name = task or entry.task
    if entry.schedule is not None:
        raise TypeError(
            f"durable entry {key!r} is a recurring series and has no single result:"
            " use Scheduler.deferred(key) to read its state"
        )
    if entry.status is Status.COMPLETED:
        if entry.result is not None:
            try:
                return decode_result(entry.result)
            except PayloadError as exc:
                raise TypeError(
                    f"task {name!r} (entry {key!r}): its stored result cannot be read: {exc}"
                ) from None
        error = entry.last_error or ""
        if error.startswith(RESULT_DROPPED):
            raise TypeError(
                f"task {name!r} (entry {key!r}) completed, but its return value was not"
                f" kept: {error[len(RESULT_DROPPED) :]}"
            )
        raise LookupError(
            f"task {name!r} (entry {key!r}) completed, but its result is no longer kept"
            " (the store's result_ttl)"
        )
    if entry.status is Status.FAILED:
        raise DeferredFailed(
            key,
            entry.error_type or "",
            entry.last_error or "",
            entry.traceback or "",
        )
    if entry.status is Status.CANCELLED:
        if entry.last_error == ABORTED:
            raise CallbackCancelled(f"durable entry {key!r} was aborted while it ran")
        raise CallbackCancelled(f"durable entry {key!r} was cancelled")
    raise RuntimeError(f"durable entry {key!r} is {entry.status}, not finished")  # pragma: no cover


class _Client(Protocol):
    """What a Deferred asks of its session's client (``_client.Client``)."""

    async def deferred(self, key: str) -> Entry | None: ...

    async def cancel_deferred(self, key: str, *, abort: bool = False) -> bool: ...

    def watcher(self) -> Watcher: ...


class Deferred(Generic[T_co]):
    """A handle on a durable entry, from any process: await it for its outcome.

    ``Scheduler.defer`` returns one (with :attr:`entry`, the entry stored);
    ``Scheduler.deferred_handle(key)`` makes one by key (no I/O until awaited).
    Awaiting it gives the task's return value; see :meth:`result`.

    :ivar key: the entry's key
    :ivar task: the registered task's name (None for a handle made by key)
    :ivar entry: the entry ``defer`` stored or found (None for a handle made by key)
    """

    __slots__ = ("_cancelled", "_client", "entry", "key", "task")

    def __init__(self, client: _Client, key: str, entry: Entry | None = None) -> None:
        self._client = client
        self.key = key
        self.entry = entry
        self.task: str | None = None if entry is None else entry.task
        self._cancelled = False

    def __repr__(self) -> str:
        task = "" if self.task is None else f" task={self.task!r}"
        return f"<Deferred {self.key!r}{task}>"

    async def refresh(self) -> Entry:
        """The entry stored under the key now (also kept as :attr:`entry`).

        :raises LookupError: the store holds no entry under the key
        :raises SchedulerClosed: outside the block that opened the store
        """
        entry = await self._client.deferred(self.key)
        if entry is None:
            raise LookupError(
                f"no durable entry {self.key!r}: never stored, deleted, or its tombstone expired"
            )
        self.entry = entry
        self.task = entry.task
        return entry

    def __await__(self) -> Generator[Any, None, T_co]:
        # The watcher's coroutine directly: one frame per awaiter, not two.
        self._check()
        return self._client.watcher().outcome_of(self).__await__()

    def _check(self) -> None:
        if self.entry is not None and self.entry.schedule is not None:
            outcome(self.key, self.entry, self.task)  # raises the series' TypeError
        if self._cancelled:
            raise CallbackCancelled(f"durable entry {self.key!r} was cancelled")

    async def result(self, timeout: float | None = None) -> T_co:
        """Wait for the entry to finish, in any process, and give its outcome.

        :param timeout: seconds to wait at most (None: no limit)
        :return: the task's return value (through the durable codec: a tuple
            comes back as a list)
        :raises TimeoutError: not finished within ``timeout`` (nothing is changed)
        :raises DeferredFailed: the entry FAILED (retries exhausted, poison, an
            unknown task, a bad payload)
        :raises CallbackCancelled: the entry was cancelled
        :raises LookupError: no entry under the key (never stored, deleted, or its
            tombstone expired), or its result is no longer kept (``result_ttl``)
        :raises TypeError: a recurring series (no single result), or a return
            value the store did not keep (the codec cannot carry it, or too large)
        :raises SchedulerClosed: outside the block that opened the store
        """
        self._check()
        watcher = self._client.watcher()
        if timeout is None:
            return await watcher.outcome_of(self)
        with anyio.fail_after(_seconds(timeout)):
            return await watcher.outcome_of(self)

    async def cancel(self, *, abort: bool = False) -> bool:
        """Cancel the entry: delete it if PENDING or FAILED (awaiting this handle
        then raises :exc:`~duetime.CallbackCancelled`; another handle on the key
        finds it gone: :exc:`LookupError`).  A RUNNING entry is left alone,
        unless ``abort`` is True: then the worker running it, in any process,
        cancels its run (a sync task sees ``current_entry().abort_requested``),
        and it ends CANCELLED: every awaiter gets
        :exc:`~duetime.CallbackCancelled`, or its value if it returned before
        the abort reached it.  A series stops; its running occurrence is aborted.
        ``abort`` defaults to False, as for ``Scheduler.cancel_deferred``.

        :param abort: abort a running entry too
        :return: True if the entry was deleted or its abort requested; False if
            absent or finished, or running and ``abort`` is False
        :raises TypeError: ``abort`` is not a bool
        :raises SchedulerClosed: outside the block that opened the store
        """
        done = await self._client.cancel_deferred(self.key, abort=abort)
        if done and (not abort or await self._client.deferred(self.key) is None):
            # Deleted (not a requested abort: that run may still complete).
            self._cancelled = True
        return done


def _seconds(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
        raise ValueError(f"timeout must be a number of seconds >= 0 or None, not {value!r}")
    return float(value)
