"""The timer heap: ``(when, seq, handle)`` tuples with lazy cancellation.

Cancelling an entry is O(1): the handle is marked and its tuple stays in the heap
until it is popped or the heap is compacted.  Compaction runs when more than
half of the tuples are dead, so a cancel storm gives its memory back.  (CPython's
asyncio does the same in ``BaseEventLoop._run_once``, once more than 100 timers
are scheduled and more than half of them are cancelled.)

Every push and every change of the dead count go through :class:`TimerHeap`, as
in trio's ``Deadlines``.  The timer loop may *read* ``entries`` directly (the
top, and the last leaf) on its hot path.

``dead`` may over-count, never under-count: a cancelled handle whose tuple has
already left the heap (a ``call_soon`` FIFO entry, or one in a due batch) is
still counted, and compaction, which recounts, corrects it.  Each over-count is
one real cancel, so compactions stay amortized O(1) per cancel; an under-count
could skip compaction and keep a cancel storm's memory.
"""

from __future__ import annotations

from bisect import bisect_right
from heapq import heapify, heappop, heappush
from operator import itemgetter
from typing import Any

__all__ = ["TimerHeap"]

# Below this size compaction is not worth the pass over the list.
_MIN_COMPACT = 64
# Below this size popping due entries one by one is as cheap as a sort.
_MIN_BATCH = 256

_when_of = itemgetter(0)


class TimerHeap:
    """A binary heap of ``(when, seq, handle)`` with dead-entry accounting.

    An entry is *live* while ``handle._st == 0`` (pending) and ``handle._when is
    when`` (the tuple's float is the very object the handle holds; a re-keyed
    handle gets a new float, which makes its old tuple stale).
    """

    __slots__ = ("dead", "entries", "push")

    def __init__(self) -> None:
        self.entries: list[tuple[float, int, Any]] = []
        self.dead = 0
        entries = self.entries

        def push(when: float, handle: Any) -> None:
            """Add ``handle`` due at ``when`` (the very float it holds as ``_when``)."""
            heappush(entries, (when, handle._id, handle))

        # A closure over the list, not a method: the call_* hot path calls it.
        self.push = push

    def __len__(self) -> int:
        """The number of tuples in the heap, dead ones included."""
        return len(self.entries)

    def rekey(self, handle: Any, when: float) -> None:
        """Move a pending ``handle`` to ``when``; its old tuple becomes dead."""
        handle._when = when
        heappush(self.entries, (when, handle._id, handle))
        self.note_dead()

    def note_dead(self) -> None:
        """Record that one tuple no longer refers to a live entry."""
        self.dead += 1
        if self.dead > _MIN_COMPACT and self.dead * 2 > len(self.entries):
            self.compact()

    def compact(self) -> None:
        """Drop dead tuples and restore the heap invariant, in place."""
        entries = self.entries
        # In place, so that a loop iterating over ``entries`` keeps the same list.
        entries[:] = [e for e in entries if e[2]._st == 0 and e[2]._when is e[0]]
        heapify(entries)
        self.dead = 0

    def pop(self) -> tuple[float, int, Any]:
        """Remove and return the top tuple (dead or not)."""
        e = heappop(self.entries)
        h = e[2]
        if (h._st or h._when is not e[0]) and self.dead:
            self.dead -= 1
        return e

    def drop_dead_top(self) -> None:
        """Pop dead tuples off the top, so the timer loop does not wake for them."""
        entries = self.entries
        while entries:
            when, _, top = entries[0]
            if top._st == 0 and top._when is when:
                return
            heappop(entries)
            if self.dead:
                self.dead -= 1

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
        return batch

    def live(self) -> list[Any]:
        """Return the live handles, in no particular order."""
        return [e[2] for e in self.entries if e[2]._st == 0 and e[2]._when is e[0]]

    def clear(self) -> None:
        """Remove every tuple."""
        self.entries.clear()
        self.dead = 0
