"""Wakeup: in-process wake-ups for ``Store.wait_changed`` that are never lost.

A claim loop reads the head, decides how long to sleep, then calls
``wait_changed``.  A write in between (by another task of this process) must
still wake it: the wake-up counts changes and remembers, per waiting task, the
count it saw when its previous ``wait_changed`` returned, so a change since then
makes the next call return at once.  A spurious return is harmless (the loop
reads the head again); a lost one would sleep until the safety poll.
"""

from __future__ import annotations

import anyio

__all__ = ["Wakeup"]

#: Waiting tasks remembered at most (claim loops: a few per process).
_MAX_TASKS = 1024


class Wakeup:
    """Counts changes that may have moved a store's head earlier, and wakes waiters."""

    __slots__ = ("_event", "_seen", "_version")

    def __init__(self) -> None:
        self._version = 0
        self._event: anyio.Event | None = None
        self._seen: dict[int, int] = {}  # task id -> version seen when its last wait ended

    def notify(self) -> None:
        """Record a change and wake every task waiting in :meth:`wait`."""
        self._version += 1
        if self._event is not None:
            self._event.set()
            self._event = None

    async def wait(self, timeout: float) -> None:
        """Return at the next :meth:`notify`, or after ``timeout`` seconds; at once
        (after a checkpoint) if a change came since this task's previous wait ended.
        Never raises on a timeout."""
        if self.missed():
            await anyio.lowlevel.checkpoint()
            return
        event = self.event()
        try:
            with anyio.move_on_after(timeout):
                await event.wait()
        finally:
            self.seen()

    def missed(self) -> bool:
        """Whether a change came since this task's previous wait ended (and mark it seen).

        A task's first call returns False: it has no previous wait.
        """
        tid = anyio.get_current_task().id
        last = self._seen.get(tid)
        self._see(tid)
        return last is not None and last != self._version

    def event(self) -> anyio.Event:
        """The event the next :meth:`notify` sets."""
        if self._event is None:
            self._event = anyio.Event()
        return self._event

    def seen(self) -> None:
        """Mark every change so far as seen by this task (call when a wait ends)."""
        self._see(anyio.get_current_task().id)

    def _see(self, tid: int) -> None:
        if tid not in self._seen and len(self._seen) >= _MAX_TASKS:
            self._seen.clear()  # forgetting only costs a wake-up on the next change
        self._seen[tid] = self._version
