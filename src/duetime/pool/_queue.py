"""WorkerPool's queue: producers and idle workers wait on separate lists.

lionherd-core's PriorityQueue deadlocks with ``maxsize=1`` and several
producers because puts and gets share one Condition woken with ``notify(1)``: a
put can wake another put.  Here each wake-up goes to a waiter that can use it:
taking an item wakes one producer, a submit that finds an idle worker hands the
item over directly, and a woken producer that leaves passes its wake-up on.
"""

from __future__ import annotations

import contextlib
import heapq
import math
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from anyio import ClosedResourceError, Event, WouldBlock
from anyio.lowlevel import cancel_shielded_checkpoint, checkpoint_if_cancelled

from .._exceptions import DeadlineExpired
from .._handle import CANCELLED, COMPLETED, EXPIRED, QUEUED, Handle
from .._util import NEW, OPEN

__all__ = ["PoolQueue", "expired", "number"]

ItemT = TypeVar("ItemT")
T = TypeVar("T")


class _Getter:
    """An idle worker waiting for an item; a submit hands the item over directly."""

    __slots__ = ("event", "gone", "handle")

    def __init__(self) -> None:
        self.event = Event()
        self.handle: Handle[Any] | None = None
        self.gone = False


class PoolQueue(Generic[ItemT, T]):
    """The submitting half of :class:`WorkerPool` (a mixin, like the Scheduler's Executor).

    Queued items are QUEUED and sit in ``_fifo`` or ``_heap``; a cancelled one
    stays until popped (lazy removal), so ``_live`` is the occupancy that
    backpressure counts.  An item handed straight to an idle worker keeps the
    PENDING code: it does not occupy the queue.
    """

    _state: int
    _clock: Callable[[], float]
    _deadline: float | None
    _handler: Callable[[ItemT], Any]
    _priority: bool
    _maxsize: float
    _fifo: deque[Handle[Any]]
    _heap: list[tuple[float, int, Handle[Any]]]
    _live: int
    _getters: deque[_Getter]
    _putters: deque[Event]
    _submitted: int
    _queued: int

    if TYPE_CHECKING:

        def _settle(
            self,
            h: Handle[Any],
            st: int,
            result: object,
            ran: float | None = None,
            cut: bool = False,
        ) -> None: ...

        def _needed(self) -> float: ...

        def _cancel_pending(self, h: Handle[Any]) -> bool: ...

        def _cancel_running(self, h: Handle[Any]) -> bool: ...

    # ------------------------------------------------------------------ submitting

    async def submit(self, item: ItemT, *, priority: float | None = None) -> Handle[T]:
        """Queue ``item``, waiting while the queue is full (backpressure).

        An item that could not finish before the pool's deadline is not queued:
        its handle is returned already EXPIRED.

        This is a checkpoint, as trio's and anyio's ``send`` are: a cancelled
        caller gets the backend's cancellation before the item is accepted, and
        once it is accepted the call still yields to other tasks, shielded, so
        the caller never loses a handle to an item that will run.

        :param priority: with ``WorkerPool(priority=True)``, lower runs first
            (default 0); FIFO among equal priorities
        :return: the item's :class:`Handle`
        :raises anyio.ClosedResourceError: if the pool is closed (also while waiting)
        :raises RuntimeError: if the pool has not been entered
        :raises TypeError: if ``priority`` is not a real number
        :raises ValueError: if ``priority`` is NaN, or given to a pool made
            without ``priority=True``
        """
        await checkpoint_if_cancelled()
        prio = self._check_submit(priority)
        if not self._putters:
            h = self._try_submit(item, prio)
            if h is not None:
                await cancel_shielded_checkpoint()
                return h
        ev = Event()
        self._putters.append(ev)
        try:
            while True:
                await ev.wait()
                self._check_open()
                h = self._try_submit(item, prio)
                if h is not None:
                    if self._putters and self._has_room():
                        self._wake_putter()
                    return h
                # Somebody else took the room: wait again, first in line.
                ev = Event()
                self._putters.appendleft(ev)
        except BaseException:
            if ev.is_set():
                # Woken but leaving: pass the wake-up on so no room goes unused.
                self._wake_putter()
            else:
                with contextlib.suppress(ValueError):
                    self._putters.remove(ev)
            raise

    def submit_nowait(self, item: ItemT, *, priority: float | None = None) -> Handle[T]:
        """Queue ``item`` if there is room.

        :return: the item's :class:`Handle` (already EXPIRED if it could not
            finish before the deadline)
        :raises anyio.WouldBlock: if the queue is full
        :raises anyio.ClosedResourceError: if the pool is closed
        :raises RuntimeError: if the pool has not been entered
        :raises TypeError: if ``priority`` is not a real number
        :raises ValueError: if ``priority`` is NaN, or given to a pool made
            without ``priority=True``
        """
        prio = self._check_submit(priority)
        h = None if self._putters else self._try_submit(item, prio)
        if h is None:
            raise WouldBlock
        return h

    def _check_open(self) -> None:
        if self._state == NEW:
            raise RuntimeError("the WorkerPool has not been entered")
        if self._state != OPEN:
            raise ClosedResourceError("the WorkerPool is closed")

    def _check_submit(self, priority: float | None) -> float:
        if priority is None:
            prio = 0.0
        else:
            if not self._priority:
                raise ValueError("priority= needs WorkerPool(..., priority=True)")
            prio = number(priority, "priority")
            if math.isnan(prio):
                raise ValueError("priority must not be NaN")
        self._check_open()
        return prio

    def _has_room(self) -> bool:
        if self._live < self._maxsize:
            return True
        return any(not g.gone for g in self._getters)

    def _try_submit(self, item: ItemT, prio: float) -> Handle[T] | None:
        """Accept ``item`` if there is room (or it is already too late for it)."""
        now = self._clock()
        deadline = self._deadline
        if deadline is not None and now + self._needed() >= deadline:
            h: Handle[T] = Handle(now, self._handler, (item,), self)
            self._submitted += 1
            self._queued += 1
            self._settle(h, EXPIRED, expired(h))
            return h
        getters = self._getters
        while getters:
            g = getters.popleft()
            if g.gone:
                continue
            # An idle worker: hand the item over.  PENDING (not QUEUED) marks it
            # as not occupying the queue.
            h = Handle(now, self._handler, (item,), self)
            self._submitted += 1
            self._queued += 1
            g.handle = h
            g.event.set()
            return h
        if self._live >= self._maxsize:
            return None
        h = Handle(now, self._handler, (item,), self)
        h._st = QUEUED
        self._submitted += 1
        self._queued += 1
        self._live += 1
        if self._priority:
            heapq.heappush(self._heap, (prio, h._id, h))
        else:
            self._fifo.append(h)
        return h

    def _wake_putter(self) -> None:
        if self._putters:
            self._putters.popleft().set()

    # ------------------------------------------------------------------ workers

    def _pop(self) -> Handle[Any] | None:
        fifo, heap = self._fifo, self._heap
        while fifo or heap:
            h = fifo.popleft() if fifo else heapq.heappop(heap)[2]
            if h._st == QUEUED:
                self._live -= 1
                self._wake_putter()
                return h
        return None

    async def _get(self) -> Handle[Any] | None:
        """The next item to run, or None once the pool is closing and empty."""
        while True:
            h = self._pop()
            if h is not None:
                return h
            if self._state != OPEN:
                return None
            g = _Getter()
            self._getters.append(g)
            # Room appeared for a producer waiting on maxsize=0 (a handover).
            self._wake_putter()
            try:
                await g.event.wait()
            except BaseException:
                g.gone = True
                if g.handle is not None and g.handle._st < COMPLETED:
                    self._settle(g.handle, CANCELLED, None)
                raise
            if g.handle is not None:
                return g.handle


def number(value: object, what: str) -> float:
    """``value`` as a float, or TypeError naming ``what`` (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number, not {type(value).__name__}")
    return float(value)


def expired(h: Handle[Any]) -> DeadlineExpired:
    return DeadlineExpired(f"{h.name} could not finish before the pool's deadline")
