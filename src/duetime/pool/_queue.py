"""WorkerPool's queue: producers and idle workers wait on separate lists.

lionherd-core's PriorityQueue deadlocks with ``maxsize=1`` and several
producers because puts and gets share one Condition woken with ``notify(1)``: a
put can wake another put.  Here each wake-up goes to a waiter that can use it:
taking an item wakes one producer, a put that finds an idle worker hands the
item over directly, and a woken producer that leaves passes its wake-up on.
"""

from __future__ import annotations

import contextlib
import heapq
from collections import deque
from collections.abc import Callable
from typing import Any, TypeVar

from anyio import Event

from .._exceptions import DeadlineExpired
from .._handle import COMPLETED, QUEUED, Handle

__all__ = ["ItemQueue", "expired", "number"]

H = TypeVar("H", bound=Handle[Any])


class _Getter:
    """An idle worker waiting for an item; a put hands the item over directly."""

    __slots__ = ("event", "gone", "handle")

    def __init__(self) -> None:
        self.event = Event()
        self.handle: Handle[Any] | None = None
        self.gone = False


class ItemQueue:
    """The items a :class:`WorkerPool` has accepted and not yet started.

    Queued items are QUEUED and sit in a FIFO or, with ``priority``, a heap of
    ``(priority, id, handle)``; a cancelled one stays until popped (lazy
    removal), so :attr:`live` is the occupancy that backpressure counts.  An
    item handed straight to an idle worker keeps the PENDING code: it does not
    occupy the queue.

    :param maxsize: how many items may wait (``math.inf``: no limit)
    :param priority: order by the priority given to :meth:`put` (lower first)
    """

    __slots__ = ("_fifo", "_getters", "_heap", "_maxsize", "_priority", "_putters", "live")

    def __init__(self, maxsize: float, priority: bool) -> None:
        self._maxsize = maxsize
        self._priority = priority
        self._fifo: deque[Handle[Any]] = deque()
        self._heap: list[tuple[float, int, Handle[Any]]] = []
        #: Queued items not cancelled: what counts against ``maxsize``.
        self.live = 0
        # Idle workers and blocked producers wait on separate lists, each woken
        # one at a time, and only by an event that concerns it.
        self._getters: deque[_Getter] = deque()
        self._putters: deque[Event] = deque()

    # ------------------------------------------------------------------ producers

    @property
    def producers_waiting(self) -> bool:
        """Whether a producer is waiting for room (a new put must queue behind it)."""
        return bool(self._putters)

    def accepts(self) -> bool:
        """Whether :meth:`put` would take an item now (an idle worker, or room)."""
        getters = self._getters
        while getters and getters[0].gone:
            getters.popleft()
        return bool(getters) or self.live < self._maxsize

    def has_room(self) -> bool:
        """Whether a woken producer could put an item (room, or a live idle worker)."""
        if self.live < self._maxsize:
            return True
        return any(not g.gone for g in self._getters)

    def put(self, h: Handle[Any], priority: float) -> None:
        """Hand ``h`` to an idle worker, else queue it (call only if :meth:`accepts`)."""
        getters = self._getters
        while getters:
            g = getters.popleft()
            if g.gone:
                continue
            g.handle = h
            g.event.set()
            return
        h._st = QUEUED
        self.live += 1
        if self._priority:
            heapq.heappush(self._heap, (priority, h._id, h))
        else:
            self._fifo.append(h)

    async def put_waiting(self, attempt: Callable[[], H | None]) -> H:
        """Wait in line for room, then return what ``attempt()`` accepted.

        ``attempt`` is called each time this producer is woken; it returns the
        accepted item's handle, or None when another producer took the room
        (then this one waits again, first in line).  Whatever it raises is
        raised here, and a wake-up this producer cannot use is passed on.
        """
        ev = Event()
        self._putters.append(ev)
        try:
            while True:
                await ev.wait()
                h = attempt()
                if h is not None:
                    if self._putters and self.has_room():
                        self.wake_putter()
                    return h
                ev = Event()
                self._putters.appendleft(ev)
        except BaseException:
            if ev.is_set():
                # Woken but leaving: pass the wake-up on so no room goes unused.
                self.wake_putter()
            else:
                with contextlib.suppress(ValueError):
                    self._putters.remove(ev)
            raise

    def wake_putter(self) -> None:
        """Wake the first producer waiting for room, if any."""
        if self._putters:
            self._putters.popleft().set()

    def release_putters(self) -> None:
        """Wake every waiting producer (the pool closed, or its deadline passed)."""
        for ev in self._putters:
            ev.set()
        self._putters.clear()

    def release_all(self) -> None:
        """Wake every idle worker and every waiting producer: the pool is closing."""
        for g in self._getters:
            g.event.set()
        self._getters.clear()
        self.release_putters()

    def forget(self, h: Handle[Any]) -> None:
        """A queued ``h`` is being cancelled: its room goes to a waiting producer."""
        if h._st == QUEUED:
            self.live -= 1
            self.wake_putter()

    # ------------------------------------------------------------------ workers

    def pop(self) -> Handle[Any] | None:
        """The next queued item still QUEUED, or None; wakes a producer for its room."""
        fifo, heap = self._fifo, self._heap
        while fifo or heap:
            h = fifo.popleft() if fifo else heapq.heappop(heap)[2]
            if h._st == QUEUED:
                self.live -= 1
                self.wake_putter()
                return h
        return None

    async def get(
        self, is_open: Callable[[], bool], lost: Callable[[Handle[Any]], None]
    ) -> Handle[Any] | None:
        """The next item to run, or None once ``is_open()`` is false and the queue empty.

        An idle worker waits here; if it is cancelled after an item was handed
        to it, ``lost(handle)`` ends that item.
        """
        while True:
            h = self.pop()
            if h is not None:
                return h
            if not is_open():
                return None
            g = _Getter()
            self._getters.append(g)
            # Room appeared for a producer waiting on maxsize=0 (a handover).
            self.wake_putter()
            try:
                await g.event.wait()
            except BaseException:
                g.gone = True
                if g.handle is not None and g.handle._st < COMPLETED:
                    lost(g.handle)
                raise
            if g.handle is not None:
                return g.handle

    def take_all(self) -> list[Handle[Any]]:
        """Empty the queue; the items it held (some may be cancelled already)."""
        doomed = list(self._fifo) + [e[2] for e in self._heap]
        self._fifo.clear()
        self._heap.clear()
        self.live = 0
        return doomed


def number(value: object, what: str) -> float:
    """``value`` as a float, or TypeError naming ``what`` (bools are refused)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number, not {type(value).__name__}")
    return float(value)


def expired(h: Handle[Any]) -> DeadlineExpired:
    """The outcome of an item that could not finish before the pool's deadline."""
    return DeadlineExpired(f"{h.name} could not finish before the pool's deadline")
