"""Timeouts and PendingReplies: timers and reply deadlines looked up by key."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Generic, TypeVar, TypeVarTuple, Unpack

from ._handle import CANCELLED, COMPLETED, FAILED, Extra, Handle, current_run
from ._host import host_of
from ._util import callable_name, is_async, to_positive

if TYPE_CHECKING:
    from ._scheduler import Scheduler

__all__ = ["PendingReplies", "Timeouts"]

T = TypeVar("T")
PosArgsT = TypeVarTuple("PosArgsT")


class Timeouts:
    """Timers by key: watchdogs, debouncing, per-operation timeouts.

    Each key has at most one timer.  A timer that fires is removed before its
    callback runs (so the callback may set it again).  ``set``, ``reset`` and
    ``clear`` cost one heap push and/or one O(1) lazy cancel.

    :param scheduler: an entered :class:`Scheduler` that runs the callbacks
    """

    __slots__ = ("_s", "_timers")

    def __init__(self, scheduler: Scheduler) -> None:
        self._s = scheduler
        # key -> (handle, delay, func, args)
        self._timers: dict[Hashable, tuple[Handle[Any], float, Callable[..., Any], tuple[Any, ...]]]
        self._timers = {}

    def set(
        self,
        key: Hashable,
        delay: float | timedelta,
        func: Callable[[Unpack[PosArgsT]], object],
        /,
        *args: Unpack[PosArgsT],
    ) -> Handle[Any]:
        """Call ``func(*args)`` after ``delay``, replacing any timer set for ``key``.

        :return: the timer's :class:`Handle`
        :raises TypeError: as :meth:`Scheduler.call_later`
        :raises ValueError: as :meth:`Scheduler.call_later`
        """
        if not callable(func):
            raise TypeError(f"func must be callable, got {func!r}")
        seconds = delay.total_seconds() if isinstance(delay, timedelta) else delay
        h = self._schedule(key, seconds, func, args)
        old = self._timers.get(key)
        self._timers[key] = (h, float(seconds), func, args)
        if old is not None:
            old[0].cancel()
        return h

    def _schedule(
        self, key: Hashable, delay: float, func: Callable[..., Any], args: tuple[Any, ...]
    ) -> Handle[Any]:
        fire = self._fire_async if is_async(func) else self._fire_sync
        h = self._s.call_later(delay, fire, key, func, args, name=callable_name(func))
        # However it ends (fired, cancelled through its handle, scheduler exit),
        # the key lets go of it, so len() and `in` stay exact and O(1).
        h.add_done_callback(partial(self._discard, key))
        return h

    def _discard(self, key: Hashable, h: Handle[Any]) -> None:
        entry = self._timers.get(key)
        if entry is not None and entry[0] is h:
            del self._timers[key]

    def reset(self, key: Hashable) -> bool:
        """Restart the countdown for ``key`` with its original delay.

        :return: False if no timer is set for ``key``
        """
        entry = self._timers.get(key)
        if entry is None:
            return False
        old, delay, func, args = entry
        self._timers[key] = (self._schedule(key, delay, func, args), delay, func, args)
        old.cancel()
        return True

    def clear(self, key: Hashable) -> bool:
        """Cancel the timer for ``key``.

        :return: False if none was pending
        """
        entry = self._timers.pop(key, None)
        return entry is not None and entry[0].cancel()

    def get(self, key: Hashable) -> Handle[Any] | None:
        """The Handle of the timer pending for ``key``, or None."""
        entry = self._timers.get(key)
        return None if entry is None else entry[0]

    def __contains__(self, key: object) -> bool:
        entry = self._timers.get(key)
        return entry is not None and not entry[0].done()

    def __len__(self) -> int:
        return len(self._timers)

    def _take(self, key: Hashable) -> None:
        # Fired: let go of the key before the callback runs, so it may set it again.
        self._discard(key, current_run().handle)

    def _fire_sync(self, key: Hashable, func: Callable[..., Any], args: tuple[Any, ...]) -> Any:
        self._take(key)
        return func(*args)

    async def _fire_async(
        self, key: Hashable, func: Callable[..., Any], args: tuple[Any, ...]
    ) -> Any:
        self._take(key)
        return await func(*args)

    def __repr__(self) -> str:
        return f"<Timeouts pending={len(self._timers)}>"


def _awaiting_reply() -> None:
    """Stands in as the 'callback' of a PendingReplies handle (names it in reprs)."""


class PendingReplies(Generic[T]):
    """Handles for requests whose replies may never arrive: the reply reaper.

    Each pending entry expires at its own deadline, an internal entry in the
    scheduler's heap, so there is no periodic scan and nothing is kept forever.
    An expired entry fails its handle with :exc:`TimeoutError` (done-callbacks
    run with it) and counts as reaped; that is an expected outcome, never
    reported to ``on_error``.  Leaving the scheduler's block cancels what is
    still pending.

    :param scheduler: an entered :class:`Scheduler` (its clock and heap are used)
    :param timeout: the default seconds to wait for a reply (> 0)
    :raises ValueError: if ``timeout`` is not a positive finite number
    """

    def __init__(self, scheduler: Scheduler, timeout: float | timedelta = 2.0) -> None:
        self._s = host_of(scheduler)
        self._timeout = to_positive(timeout, "timeout")
        # key -> (user handle, internal expiry entry)
        self._pending: dict[Hashable, tuple[Handle[T], Handle[Any]]] = {}
        self.reaped_count = 0  #: entries that expired without a reply
        self.late_count = 0  #: replies for keys not (or no longer) pending
        # Registered with the scheduler only while entries are pending, so that
        # leaving its block cancels them, and a finished object is not kept.
        self._exit_hook = _CancelOnExit(self)

    @property
    def pending_count(self) -> int:
        """Entries waiting for their reply."""
        return len(self._pending)

    @property
    def timeout(self) -> float:
        """The default timeout in seconds."""
        return self._timeout

    def expect(self, key: Hashable, timeout: float | timedelta | None = None) -> Handle[T]:
        """Wait for the reply to ``key``: return a Handle that the reply resolves.

        :param timeout: seconds before the entry is reaped (default: the
            object's ``timeout``)
        :raises ValueError: if ``key`` is already pending, or ``timeout`` <= 0
        :raises SchedulerClosed: if the scheduler is not open
        """
        if key in self._pending:
            raise ValueError(f"a reply to {key!r} is already pending")
        seconds = self._timeout if timeout is None else to_positive(timeout, "timeout")
        s = self._s
        s.check_open()
        deadline = s.clock() + seconds
        x = Extra()
        x.name = f"reply to {key!r}"
        # _args is never called with; it keeps the key for handle.cancel().
        h: Handle[T] = Handle(deadline, _awaiting_reply, (key,), self, x)
        expiry = s.schedule_internal(deadline, partial(self._expire, key))
        if not self._pending:
            s.add_exit_hook(self._exit_hook)
        self._pending[key] = (h, expiry)
        return h

    def _take(self, key: Hashable) -> tuple[Handle[T], Handle[Any]] | None:
        entry = self._pending.pop(key, None)
        if not self._pending:
            self._s.discard_exit_hook(self._exit_hook)
        return entry

    def resolve(self, key: Hashable, value: T) -> bool:
        """Complete the entry for ``key`` with ``value``.

        :return: True if it was pending; False if late or unknown (counted in
            ``late_count``)
        """
        entry = self._take(key)
        if entry is None:
            self.late_count += 1
            return False
        h, expiry = entry
        self._s.cancel_internal(expiry)
        h._finish(COMPLETED, value)
        return True

    def fail(self, key: Hashable, exc: Exception) -> bool:
        """Fail the entry for ``key`` with ``exc`` (e.g. an error reply).

        If nobody observes the handle the exception goes to ``on_error``.

        :return: True if it was pending; False if late or unknown (counted in
            ``late_count``)
        """
        if not isinstance(exc, Exception):
            raise TypeError(f"exc must be an Exception instance, got {exc!r}")
        entry = self._take(key)
        if entry is None:
            self.late_count += 1
            return False
        h, expiry = entry
        self._s.cancel_internal(expiry)
        if not h._finish(FAILED, exc):
            self._s.hold_unobserved(h, exc)
        return True

    def cancel_all(self) -> int:
        """Cancel every pending entry; return how many there were."""
        entries = list(self._pending.values())
        self._pending.clear()
        self._s.discard_exit_hook(self._exit_hook)
        for h, expiry in entries:
            self._s.cancel_internal(expiry)
            h._finish(CANCELLED, None)
        return len(entries)

    def __contains__(self, key: object) -> bool:
        return key in self._pending

    def __len__(self) -> int:
        return len(self._pending)

    def _expire(self, key: Hashable) -> None:
        entry = self._take(key)
        assert entry is not None
        h = entry[0]
        self.reaped_count += 1
        # An expected outcome: the handle fails, nothing is reported.
        h._finish(FAILED, TimeoutError(f"no reply to {key!r} within the timeout"))

    # -- Owner protocol: how handle.cancel() reaches us ----------------------------

    def _cancel_pending(self, handle: Handle[Any]) -> bool:
        assert handle._args is not None
        entry = self._take(handle._args[0])
        if entry is not None:
            self._s.cancel_internal(entry[1])
        handle._finish(CANCELLED, None)
        return True

    def _cancel_running(self, handle: Handle[Any]) -> bool:
        return False  # never RUNNING

    def __repr__(self) -> str:
        return (
            f"<PendingReplies pending={len(self._pending)} reaped={self.reaped_count}"
            f" late={self.late_count}>"
        )


class _CancelOnExit:
    """An exit hook of the scheduler's host: its exit cancels the entries."""

    __slots__ = ("_replies",)

    def __init__(self, replies: PendingReplies[Any]) -> None:
        self._replies = replies

    def cancel(self) -> None:
        self._replies.cancel_all()
