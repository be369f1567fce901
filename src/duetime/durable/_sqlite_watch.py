"""How a SQLiteStore's waiters learn of a finish or an abort request: this
process's own at once, another process's through ``PRAGMA data_version``.

SQLite tells a connection nothing when another process commits; its
``data_version`` changes, and reading it costs a few microseconds without a
lock.  One :class:`VersionWatch` per kind of news (finishes, abort requests)
keeps the version each waiting task last saw; every waiting task of the process
reads it each ``poll`` seconds (any commit elsewhere wakes them, spuriously
for most: the waiters read the rows they care about again), and a write by this
store object wakes them at once through a :class:`~._wakeup.Wakeup`.

The claim loops wait in :class:`HeadWatch`, which reads the version of both of
the store's connections: a commit by one of them changes only the other's,
another process's changes both.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import anyio.lowlevel

from ._wakeup import Wakeup

__all__ = ["HeadWatch", "VersionWatch"]

#: Waiting tasks remembered at most (a watcher or two per process).
_MAX_TASKS = 1024


class VersionWatch:
    """Wakes the tasks waiting for one kind of change (see the module docstring)."""

    __slots__ = ("_seen", "_wakeup", "version")

    def __init__(self) -> None:
        self._wakeup = Wakeup()
        #: the latest ``data_version`` a wait saw (at first, when the store opened):
        #: what a task's first wait compares with
        self.version = 0
        self._seen: dict[int, int] = {}  # task id -> data_version its last wait saw

    def notify(self) -> None:
        """This store object made such a change: wake every waiter now."""
        self._wakeup.notify()

    async def wait(
        self, timeout: float, poll: float, read_version: Callable[[], Awaitable[int]]
    ) -> None:
        """Return after a change: at once for one since this task's previous wait,
        at :meth:`notify`, or when ``read_version()`` (``data_version``, read every
        ``poll`` seconds) differs from the last seen; else after ``timeout``
        seconds.  Never raises on a timeout."""
        wakeup = self._wakeup
        if wakeup.missed():
            await anyio.lowlevel.checkpoint()
            return
        event = wakeup.event()
        deadline = anyio.current_time() + max(0.0, timeout)
        tid = anyio.get_current_task().id
        seen = self._seen.get(tid, self.version)
        try:
            while True:
                version = await read_version()
                if version != seen:
                    if tid not in self._seen and len(self._seen) >= _MAX_TASKS:
                        self._seen.clear()  # forgetting costs a spurious return at most
                    self._seen[tid] = self.version = version
                    return
                remaining = deadline - anyio.current_time()
                if remaining <= 0:
                    return
                with anyio.move_on_after(min(poll, remaining)):
                    await event.wait()
                    return
        finally:
            wakeup.seen()


class HeadWatch:
    """Wakes the claim loops of a process (``SQLiteStore.wait_changed``)."""

    __slots__ = ("_wakeup", "inline", "version")

    def __init__(self) -> None:
        self._wakeup = Wakeup()
        #: ``data_version`` of the store's thread connection at the last wake-up
        self.version = 0
        #: ... and of its event-loop connection (None: it has none, read-only)
        self.inline: int | None = None

    def notify(self) -> None:
        """This store object wrote: wake every waiter now (its own commits do not
        change the version its own connections read)."""
        self._wakeup.notify()

    async def wait(
        self,
        timeout: float,
        poll: float,
        read_versions: Callable[[], Awaitable[tuple[int, int | None]]],
    ) -> None:
        """Return after a write by this store object (since this task's previous
        wait, or at :meth:`notify`), when both versions (``read_versions()``,
        every ``poll`` seconds) changed since the last wake-up (another process
        committed), or after ``timeout`` seconds.  Never raises on a timeout."""
        wakeup = self._wakeup
        if wakeup.missed():
            await anyio.lowlevel.checkpoint()
            return
        event = wakeup.event()
        deadline = anyio.current_time() + max(0.0, timeout)
        try:
            while True:
                version, inline = await read_versions()
                # Both changed since the last wake-up: another process committed.
                # (The baselines move only here: a commit elsewhere between the two
                # reads is then seen on the next poll, never lost.)
                if version != self.version and (inline is None or inline != self.inline):
                    self.version, self.inline = version, inline
                    return
                remaining = deadline - anyio.current_time()
                if remaining <= 0:
                    return
                with anyio.move_on_after(min(poll, remaining)):
                    await event.wait()
                    return
                if anyio.current_time() >= deadline:
                    # The caller's own deadline (its head is due): no poll first,
                    # it claims next anyway (a version change is seen next call).
                    return
        finally:
            wakeup.seen()
