"""SQLiteStore's connections: opening them, and running a read or a write on them.

Every call runs in the store's one thread (``anyio.to_thread`` with a limiter of
one) on the main connection, then checks with one ``stat`` that the file at the
path is still the one open; a short write may run on the event-loop thread
through a second connection instead (:meth:`SQLiteConnection._write_inline`).
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from typing import TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread

from ._sqlite_file import (
    file_changed,
    file_identity,
    open_inline,
    open_read_only,
    open_writable,
)
from ._sqlite_sql import checkpoint, data_version, transaction
from ._sqlite_watch import HeadWatch, VersionWatch
from ._store import ReadOnlyStore, StoreLost

__all__ = ["SQLiteConnection"]

_T = TypeVar("_T")

#: Inline commits (see SQLiteConnection._write_inline) between two checkpoints run in the
#: thread: a one-row commit appends about 18 KB to the WAL, so this keeps it near
#: SQLite's own bound (a checkpoint at 1000 pages, 4 MB).
_CHECKPOINT_EVERY = 200

logger = logging.getLogger("duetime.durable")


class SQLiteConnection:
    """The connections of a :class:`~duetime.durable.SQLiteStore` and the calls on them.

    The store's ``__init__`` sets every attribute below; ``__aenter__`` opens
    the connections with :meth:`_open`.
    """

    path: str
    read_only: bool
    _busy_ms: int
    _clock: Callable[[], float]
    _conn: sqlite3.Connection | None
    _inline: sqlite3.Connection | None
    _inline_commits: int
    _identity: tuple[int, int] | None
    _lost: str | None
    _limiter: anyio.CapacityLimiter | None
    _changed: HeadWatch
    _finished: VersionWatch
    _aborted: VersionWatch

    def _open(self) -> sqlite3.Connection:
        conn = self._connect()
        try:
            self._identity = file_identity(self.path)
            if not self.read_only:
                self._inline = open_inline(self.path)
        except BaseException:
            conn.close()
            raise
        return conn

    def _connect(self) -> sqlite3.Connection:
        if not self.read_only:
            return open_writable(self.path, self._busy_ms)
        conn = open_read_only(self.path)
        conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
        return conn

    async def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        conn = self._conn
        if conn is None:
            raise RuntimeError("SQLiteStore is not open: use it as `async with store:`")
        if self._lost is not None:
            raise StoreLost(self._lost)
        return await anyio.to_thread.run_sync(self._checked, fn, conn, limiter=self._limiter)

    def _checked(self, fn: Callable[[sqlite3.Connection], _T], conn: sqlite3.Connection) -> _T:
        """Run ``fn``, then make sure the file at the path is still the one open
        (one stat): what was read or written in a deleted or replaced file is
        lost to everyone else, so the call raises StoreLost instead."""
        result = fn(conn)
        self._check_file()
        return result

    def _check_file(self) -> None:
        """Raise StoreLost (and log it once) if the file at the path is not the one open."""
        what = file_changed(self.path, self._identity)
        if what is None:
            return
        if self._lost is None:
            self._lost = (
                f"the SQLite store {self.path!r} {what} while this process had it open;"
                " this store object stops (new entries there would reach no worker):"
                " restart the process to open the file now at that path"
            )
            logger.error("durable store lost: %s", self._lost)
        raise StoreLost(self._lost)

    async def _write(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        self._check_writable()
        return await self._run(lambda conn: transaction(conn, fn))

    async def _write_inline(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        """Run the short write ``fn`` on the event-loop thread if the write lock is
        free at once, else in the store's thread (:meth:`_write`).

        A thread hop costs more than the write itself (an awaited ``defer``
        would be bound by it).  Inline, ``BEGIN IMMEDIATE`` does not wait
        (``busy_timeout`` 0: a lock held elsewhere sends the write to the
        thread), and the commit appends to the WAL without fsync
        (``synchronous=NORMAL``) and never checkpoints: checkpoints run in the
        thread, every ``_CHECKPOINT_EVERY`` inline commits.
        """
        await anyio.lowlevel.checkpoint()  # cancellation lands here, before anything is written
        conn = self._inline
        if conn is None or self._conn is None or self._lost is not None:
            return await self._write(fn)
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError:  # busy: wait for the lock in the thread
            return await self._write(fn)
        try:
            result = fn(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.OperationalError:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            return await self._write(fn)
        self._check_file()
        self._inline_commits += 1
        if self._inline_commits >= _CHECKPOINT_EVERY:
            self._inline_commits = 0
            await self._run(checkpoint)
        return result

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyStore(
                f"SQLiteStore {self.path!r} is open read-only (read_only=True):"
                " it cannot be changed"
            )

    def _now(self) -> float:
        return float(self._clock())

    def _wake(self) -> None:
        """Wake this process's waiters (our own commits do not change data_version)."""
        self._changed.notify()

    async def _versions(self) -> tuple[int, int | None]:
        """``data_version`` of the thread connection and of the inline one (if any)."""
        version = await self._run(data_version)
        # The inline connection's read: a few microseconds, no lock, on the loop thread.
        return version, None if self._inline is None else data_version(self._inline)

    async def _data_version(self) -> int:
        return await self._run(data_version)
