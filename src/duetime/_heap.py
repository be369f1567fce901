"""The timer heap: ``(when, seq, handle)`` tuples with lazy cancellation.

Cancelling an entry is O(1): the handle is marked and its tuple stays in the heap
until it is popped or until the heap is compacted.  Compaction runs when more than
half of the tuples are dead, so a cancel storm gives its memory back (asyncio's
heap keeps cancelled timers until they are due).  The scheduler reads
``entries`` directly in its hot loop; everything else goes through methods.

``dead`` may over-count, never under-count: a cancelled handle whose tuple has
already left the heap (a ``call_soon`` FIFO entry, or one in a due batch) is
still counted, and compaction, which recounts from scratch, corrects it.  Each
over-count is one real cancel, so compactions stay amortized O(1) per cancel;
an under-count could skip compaction and keep a cancel storm's memory.
"""

from __future__ import annotations

from bisect import bisect_right
from heapq import heapify
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
    when`` (the tuple's float is the very object the handle holds; a rescheduled
    handle gets a new float, which makes its old tuple stale).
    """

    __slots__ = ("dead", "entries")

    def __init__(self) -> None:
        self.entries: list[tuple[float, int, Any]] = []
        self.dead = 0

    def __len__(self) -> int:
        """The number of tuples in the heap, dead ones included."""
        return len(self.entries)

    def note_dead(self) -> None:
        """Record that one tuple in the heap no longer refers to a live entry."""
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
