"""The timer heap: ``(when, seq, handle)`` tuples with lazy cancellation.

Cancelling an entry is O(1): the handle is marked and its tuple stays in the heap
until it is popped or until the heap is compacted.  Compaction gives a cancel
storm's memory back once more than half of the tuples are dead.  (CPython's
asyncio does the same in ``BaseEventLoop._run_once``, once more than 100 timers
are scheduled and more than half of them are cancelled.)  It never runs inside
``cancel()``: the timer loop does it between passes, and a large heap a slice
at a time, so neither a cancel nor the loop stalls on a pass over a million
entries.

Every push and every change of the dead count go through :class:`TimerHeap`, as
in trio's ``Deadlines``.  The timer loop may *read* ``entries`` directly (the
top, and the last leaf) on its hot path.

``dead`` may over-count, never under-count: the engine counts every cancel,
also of a handle whose tuple is not in the heap (a ``call_soon`` FIFO entry,
one in a due batch or the callback tasks' queue, a running callback), and compaction,
which recounts, corrects it.  Each over-count is
one real cancel, so compactions stay amortized O(1) per cancel; an under-count
could skip compaction and keep a cancel storm's memory.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Callable
from functools import partial
from heapq import heapify, heappop, heappush
from operator import itemgetter
from typing import Any

__all__ = ["TimerHeap"]

# Below this many dead tuples compaction is not worth the pass over the list.
_MIN_COMPACT = 64
# Below this size popping due entries one by one is as cheap as a sort.
_MIN_BATCH = 256
# Tuples looked at per compaction step (a few milliseconds); a heap this small
# is compacted in one step.
_SLICE = 32768

_when_of = itemgetter(0)


def _live(e: tuple[float, int, Any]) -> bool:
    h: Any = e[2]
    return h._st == 0 and h._when is e[0]


class TimerHeap:
    """A binary heap of ``(when, seq, handle)`` with dead-entry accounting.

    An entry is *live* while ``handle._st == 0`` (pending) and ``handle._when is
    when`` (the tuple's float is the very object the handle holds; a re-keyed
    handle gets a new float, which makes its old tuple stale).

    A large compaction builds a new heap from a snapshot, a slice per
    :meth:`compact_step`, while ``entries`` stays a valid heap that the timer
    loop keeps using; pushes go to both meanwhile.  Tuples popped from
    ``entries`` meanwhile are stale copies in the new heap (their handles are no
    longer pending), counted as dead.
    """

    __slots__ = (
        "_dead_since",
        "_pos",
        "_push_plain",
        "_shadow",
        "_snapshot",
        "dead",
        "entries",
        "push",
    )

    def __init__(self) -> None:
        entries: list[tuple[float, int, Any]] = []
        self.entries = entries
        self.dead = 0
        # [new heap] while a compaction is in progress, else empty.
        shadow: list[list[tuple[float, int, Any]]] = []
        self._shadow = shadow
        self._snapshot: list[tuple[float, int, Any]] = []
        self._pos = 0
        self._dead_since = 0  # tuples that died (or left) since the snapshot
        #: ``push((when, handle._id, handle))`` adds an entry (``when`` is the very
        #: float the handle holds as ``_when``).  Outside a compaction it is
        #: ``heappush`` on the list, bound in C: the call_* hot path reads it
        #: from here at each call (a Python-level call would cost it a tenth).
        #: During a compaction it also pushes to the new heap.
        self._push_plain: Callable[[tuple[float, int, Any]], None] = partial(heappush, entries)
        self.push: Callable[[tuple[float, int, Any]], None] = self._push_plain

    def _push_both(self, e: tuple[float, int, Any]) -> None:
        heappush(self.entries, e)
        heappush(self._shadow[0], e)

    def __len__(self) -> int:
        """The number of tuples in the heap, dead ones included."""
        return len(self.entries)

    def rekey(self, handle: Any, when: float) -> None:
        """Move a pending ``handle`` to ``when``; its old tuple becomes dead."""
        handle._when = when
        self.push((when, handle._id, handle))
        self.note_dead()

    def note_dead(self, n: int = 1) -> None:
        """Record that ``n`` tuples no longer refer to a live entry.

        The engine batches cancels and hands them over once per timer-loop
        pass; :meth:`dead_until_compaction` tells it when to wake the loop.
        """
        self.dead += n
        if self._shadow:
            self._dead_since += n

    def dead_until_compaction(self) -> int:
        """How many more dead tuples make :meth:`wants_compaction` true."""
        d = self.dead
        return max(_MIN_COMPACT + 1 - d, len(self.entries) // 2 + 1 - d, 1)

    def wants_compaction(self) -> bool:
        """Whether more than half the tuples are dead, or a compaction is under way."""
        d = self.dead
        return bool(self._shadow) or (d > _MIN_COMPACT and d + d > len(self.entries))

    @property
    def compacting(self) -> bool:
        """Whether a compaction is under way (more :meth:`compact_step` calls due)."""
        return bool(self._shadow)

    def compact(self) -> None:
        """Drop every dead tuple now, in one pass."""
        self._shadow.clear()
        self._snapshot = []
        self.push = self._push_plain
        entries = self.entries
        # In place, so that a loop iterating over ``entries`` keeps the same list.
        entries[:] = [e for e in entries if _live(e)]
        heapify(entries)
        self.dead = 0

    def compact_step(self) -> None:
        """Do one slice of compaction (all of it for a heap of one slice or less)."""
        shadow = self._shadow
        if not shadow:
            if len(self.entries) <= _SLICE:
                self.compact()
                return
            self._snapshot = self.entries[:]  # one C-level copy of the pointers
            self._pos = 0
            self._dead_since = 0
            shadow.append([])
            self.push = self._push_both
        new = shadow[0]
        snapshot = self._snapshot
        pos = self._pos
        for e in snapshot[pos : pos + _SLICE]:
            if _live(e):
                heappush(new, e)
        pos += _SLICE
        if pos < len(snapshot):
            self._pos = pos
            return
        # Done: swap the contents in place (the loop holds this very list).
        self.entries[:] = new
        self.dead = self._dead_since
        shadow.clear()
        self._snapshot = []
        self.push = self._push_plain

    def pop(self) -> tuple[float, int, Any]:
        """Remove and return the top tuple (dead or not)."""
        e = heappop(self.entries)
        if self._shadow:
            self._dead_since += 1  # its copy in the new heap is stale from now on
        elif self.dead and not _live(e):
            self.dead -= 1
        return e

    def drop_dead_top(self) -> bool:
        """Pop dead tuples off the top, so the timer loop does not wake for them.

        At most a slice of them per call, so a storm that cancelled the earliest
        entries does not stall the loop either.

        :return: whether dead tuples may be left on top (call again soon)
        """
        entries = self.entries
        for _ in range(_SLICE):
            if not entries:
                return False
            when, _, top = entries[0]
            if top._st == 0 and top._when is when:
                return False
            heappop(entries)
            if self._shadow:
                self._dead_since += 1
            elif self.dead:
                self.dead -= 1
        return True

    def take_due(self, now: float) -> list[tuple[float, int, Any]] | None:
        """Remove and return, sorted, the entries due at ``now`` if there are many.

        When even the last leaf is due, most of the heap probably is: one C-level
        sort (linear on the nearly sorted arrays that sequential scheduling
        builds) and a slice beat a ``heappop`` per entry.  The rest of a sorted
        list is still a valid heap.  Returns None when popping one by one is
        the better plan.
        """
        entries = self.entries
        if len(entries) < _MIN_BATCH or entries[-1][0] > now:
            return None
        entries.sort()
        k = bisect_right(entries, now, key=_when_of)
        batch = entries[:k]
        del entries[:k]
        if self._shadow:
            self._dead_since += k
        return batch

    def live(self) -> list[Any]:
        """Return the live handles, in no particular order."""
        return [e[2] for e in self.entries if _live(e)]

    def clear(self) -> None:
        """Remove every tuple."""
        self.entries.clear()
        self.dead = 0
        self._shadow.clear()
        self._snapshot = []
        self.push = self._push_plain
