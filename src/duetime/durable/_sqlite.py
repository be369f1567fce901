"""SQLiteStore: the embedded durable store (one file, several processes on one host).

Stdlib ``sqlite3`` driven through ``anyio.to_thread`` with a limiter of one, so
it runs on asyncio and trio alike (aiosqlite is asyncio-only).  WAL so readers
never block the writer, ``synchronous=NORMAL`` (SQLite's durable setting for
WAL: a commit survives a process crash; a power loss can lose the last
commits, never corrupt the file); every write in ``BEGIN IMMEDIATE`` so a
transaction takes the write lock up front (no read-to-write upgrade deadlock
between processes) and waits ``busy_timeout`` for it.  One exception to the
thread: ``add`` of a few rows (an awaited ``defer``) first tries its short transaction on
the event-loop thread through a second connection that never waits for the
lock and never checkpoints (a thread hop costs more than the write), and
goes to the thread when the lock is taken.  Claims are one
``UPDATE ... FROM ... RETURNING``; fencing tokens come from a counter row
bumped in the same transaction, so they are unique for the file's whole
life.  Another process's commit is seen through ``PRAGMA
data_version``, polled every ``poll`` seconds by :meth:`SQLiteStore.wait_changed`,
``wait_finished`` and ``wait_aborted`` (:mod:`._sqlite_watch`).

A file that is not a duetime store (not SQLite, another application's
database, or another duetime schema version) is refused before anything is
written to it.
"""

from __future__ import annotations

import math
import os
import sqlite3
import time
from collections.abc import Callable, Sequence
from functools import partial

import anyio
import anyio.from_thread
import anyio.to_thread

from .._vocab import Status
from ._row_text import check_new_rows
from ._sqlite_conn import SQLiteConnection
from ._sqlite_file import (
    NotAStore,
    schema_version,
)
from ._sqlite_rows import (
    HEAD,
    HEAD_ARG,
    with_detail,
)
from ._sqlite_rows import entry as _entry
from ._sqlite_sql import (
    ABORT,
    ABORTS,
    CODE,
    DETAIL,
    FENCE,
    LIVE,
    abort_row,
    add_rows,
    claim_rows,
    entry_columns,
    finish_op,
    read,
    run_ops,
)
from ._sqlite_stats import SQLiteInspection, ensure_schema, finish_recorded
from ._sqlite_watch import HeadWatch, VersionWatch
from ._store import (
    Aborted,
    Claim,
    Dead,
    Done,
    Entry,
    NewRow,
    OnConflict,
    Outcome,
    ReadOnlyStore,
    check_result_ttl,
)

__all__ = ["NotAStore", "ReadOnlyStore", "SQLiteStore"]

#: The most rows an ``add`` writes on the event-loop thread (see
#: SQLiteStore._write_inline): a larger batch takes longer than a thread hop
#: costs, and would stall every other task of the loop while it is written (128
#: rows, a `defer_many` batch of 100, take about a millisecond).
_INLINE_ROWS = 128


class SQLiteStore(SQLiteConnection, SQLiteInspection):
    """The embedded durable store: one SQLite file, shared safely by the processes of one host.

    Use it as ``async with SQLiteStore("jobs.db") as store`` (the Scheduler
    does this when given ``store=``).  The file is created with mode 0600
    (SQLite gives its ``-wal`` and ``-shm`` files the same mode).  Times are
    the host's wall clock (``time.time``) unless ``clock`` is given.

    :param path: the database file (str or PathLike); created if absent
    :param lease: the default lease in seconds, for rows that carry none
    :param poll: how often :meth:`wait_changed`, :meth:`wait_finished` and
        :meth:`wait_aborted` check for another process's commit (``PRAGMA
        data_version``, a few microseconds): an abort requested by another
        process reaches a worker within about that long
    :param dedupe_ttl: how long a completed key is kept as a tombstone
    :param result_ttl: how long a COMPLETED tombstone keeps its task's return
        value (default and at most ``dedupe_ttl``)
    :param busy_timeout: how long a write waits for another process's
        write lock before failing with ``sqlite3.OperationalError``
    :param clock: the store's clock in UTC epoch seconds (tests inject a
        virtual one); called on the event-loop thread
    :param read_only: open an existing store for listing only (``get``,
        ``entries``, ``head``, ``aborts`` and the ``wait_*`` methods): the file
        is never created, changed (not even upgraded from an older schema
        version) or switched to WAL, and it may sit on a read-only file or mount
        (in a writable directory SQLite may create the empty ``-wal`` and
        ``-shm`` files beside it, with the file's mode and owner);
        opening raises FileNotFoundError if it does not exist, and every
        writing method raises :class:`ReadOnlyStore`
    Once the file at ``path`` is no longer the one opened (deleted, or
    replaced by a restore or another program), every call raises
    :class:`~duetime.durable.StoreLost` and one ERROR is logged: the
    check is one ``stat`` after each call, so an idle worker notices within
    ``poll`` seconds.  The store does not reopen by itself: fencing tokens are
    only unique within one file, so a process must be restarted to use the
    new file.

    :raises TypeError: ``path`` is not a str or PathLike
    :raises ValueError: a non-positive lease, poll, dedupe_ttl or busy_timeout
    :raises RuntimeError: the linked SQLite is older than 3.35 (no RETURNING)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        lease: float = 30.0,
        poll: float = 0.25,
        dedupe_ttl: float = 86400.0,
        result_ttl: float | None = None,
        busy_timeout: float = 30.0,
        clock: Callable[[], float] = time.time,
        read_only: bool = False,
    ) -> None:
        if not isinstance(path, str | os.PathLike):
            raise TypeError(
                f"SQLiteStore path must be a str or PathLike, not {type(path).__name__}"
            )
        for name, value in (("lease", lease), ("poll", poll), ("dedupe_ttl", dedupe_ttl)):
            _positive(name, value)
        _positive("busy_timeout", busy_timeout)
        if sqlite3.sqlite_version_info < (3, 35, 0):
            raise RuntimeError(
                "SQLiteStore needs SQLite >= 3.35 (UPDATE ... RETURNING);"
                f" this Python links {sqlite3.sqlite_version}"
            )
        self.path = os.fspath(path)
        self.lease = float(lease)
        self.poll = float(poll)
        self.dedupe_ttl = float(dedupe_ttl)
        self.result_ttl = check_result_ttl(result_ttl, self.dedupe_ttl)
        self._busy_ms = int(busy_timeout * 1000)
        self._clock = clock
        # The clock as read from the store's thread, inside a transaction.
        self._thread_clock: Callable[[], float] = (
            clock if clock is time.time else partial(anyio.from_thread.run_sync, clock)
        )
        self.read_only = bool(read_only)
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None  # file_identity() of the file opened
        self._inline: sqlite3.Connection | None = (
            None  # adds on the loop thread (see _write_inline)
        )
        self._inline_commits = 0
        self._lost: str | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._changed = HeadWatch()  # this object's writes; others' by data_version
        self._finished = VersionWatch()  # this object's finishes; others' by data_version
        self._aborted = VersionWatch()  # this object's abort requests; others' likewise
        self._version = 3  # the file's schema version (a read-only older file stays so)
        self._purged_at = -math.inf

    def __repr__(self) -> str:
        state = "open" if self._conn is not None else "closed"
        mode = " read-only" if self.read_only else ""
        return f"<SQLiteStore {self.path!r} {state}{mode} lease={self.lease}>"

    # -- opening and closing ------------------------------------------------------

    async def __aenter__(self) -> SQLiteStore:
        """Open (and if new and not ``read_only``, create) the file.

        :raises NotAStore: the file is not a duetime store of this schema version
            (or, read-only, an empty file)
        :raises FileNotFoundError: ``read_only`` and there is no file at the path
        :raises PermissionError: the file or its directory is not accessible
        :raises RuntimeError: the store is already open
        """
        if self._conn is not None:
            raise RuntimeError("this SQLiteStore is already open")
        self._limiter = anyio.CapacityLimiter(1)
        self._lost = None
        self._conn = await anyio.to_thread.run_sync(self._open, limiter=self._limiter)
        if not self.read_only:
            # Before the versions are read: this commit is no other writer's.
            await self._run(ensure_schema)  # the inspection index and activity ring
        self._changed.version, self._changed.inline = await self._versions()
        self._finished.version = self._aborted.version = self._changed.version
        self._version = await self._run(schema_version)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        conn, self._conn = self._conn, None
        inline, self._inline = self._inline, None
        if inline is not None:
            await anyio.to_thread.run_sync(inline.close, limiter=self._limiter)
        if conn is not None:
            await anyio.to_thread.run_sync(conn.close, limiter=self._limiter)

    # -- the Store protocol -----------------------------------------------------

    async def time(self) -> float:
        """The store's clock (the host's wall clock by default), in UTC epoch seconds."""
        return self._now()

    async def add(self, rows: Sequence[NewRow], *, on_conflict: OnConflict = "keep") -> list[Entry]:
        """Insert rows, idempotent by key, all in one transaction (see ``Store.add``).

        :raises EntryExists: ``on_conflict="error"`` and a key exists (tombstones
            included), or ``"replace"`` of a RUNNING entry; nothing is inserted
        :raises ValueError: an unknown ``on_conflict``
        :raises TypeError: a row that is not a NewRow
        :raises ValueError: a row whose key, task, payload or schedule is not
            valid Unicode text (a lone surrogate); nothing is inserted
        """
        if on_conflict not in ("keep", "replace", "error"):
            raise ValueError(
                f"on_conflict must be 'keep', 'replace' or 'error', not {on_conflict!r}"
            )
        check_new_rows(rows)
        if not rows:
            return []
        now = self._now()
        params = []
        for new in rows:
            due = new.due if new.due is not None else now + (new.delay or 0.0)
            lease = new.lease if new.lease is not None else self.lease
            params.append(
                (new.key, new.task, new.payload, due, due, lease, new.max_deliveries, new.schedule)
            )
        # Purge expired tombstones at most once a second (an indexed delete, but not
        # free); a key whose tombstone expired since is replaced all the same.
        purge = now - self._purged_at >= 1.0
        if purge:
            self._purged_at = now
        work = partial(add_rows, params, on_conflict, now, purge)
        write = self._write_inline if len(params) <= _INLINE_ROWS else self._write
        entries = await write(work)
        self._wake()
        return entries

    async def cancel(self, key: str) -> bool:
        """Delete a PENDING or FAILED row; False if absent, RUNNING or finished.

        :raises ReadOnlyStore: the store was opened ``read_only``
        """
        done = await self._write(lambda c: c.execute(ABORT, (key,)).rowcount == 1)
        if done:
            self._finished.notify()
        return done

    async def abort(self, key: str) -> bool:
        """Delete a PENDING or FAILED row, or request the abort of a RUNNING one
        (stored with the row; every process's :meth:`wait_aborted` wakes), in one
        transaction; False if absent or finished (see ``Store.abort``).

        :raises ReadOnlyStore: the store was opened ``read_only``
        """
        done = await self._write(partial(abort_row, key))
        if done == 1:
            self._finished.notify()
        elif done == 2:
            self._aborted.notify()
        return done != 0

    async def aborts(self, claims: Sequence[tuple[str, int]]) -> list[bool]:
        """For each ``(key, token)``, whether that RUNNING row has an abort request
        and the token is current; one query (the requested rows, by a partial index)."""
        pairs = [(key, token) for key, token in claims]
        if not pairs:
            return []
        if self._version < 3:
            return [False] * len(pairs)  # a read-only older file: no requests
        requested = set(await self._run(partial(read, ABORTS, ())))
        return [pair in requested for pair in pairs]

    async def get(self, key: str) -> Entry | None:
        """The entry stored under ``key`` (tombstones included), or None."""
        now = self._now()
        columns = entry_columns(self._version)
        if self._version >= 2:  # version 1 lacks the result columns
            columns += DETAIL
        sql = f"SELECT {columns} FROM duetime_entries WHERE key = ? AND {LIVE}"
        got = await self._run(partial(read, sql, (key, now)))
        if not got:
            return None
        found = _entry(got[0])
        if self._version < 2:
            return found
        return with_detail(found, got[0][11:], now)

    async def entries(self, *, status: Status | None = None, limit: int = 1000) -> list[Entry]:
        """Entries by due time (then key), optionally only those with ``status``.

        :raises TypeError: a limit that is not an int
        :raises ValueError: a negative limit, or a value that is not a Status
        """
        _check_limit(limit)
        now = self._now()
        where, args = LIVE, [now]
        if status is not None:
            code = CODE.get(Status(status))
            if code is None:
                return []
            where += " AND status = ?"
            args.append(code)
        columns = entry_columns(self._version)
        sql = f"SELECT {columns} FROM duetime_entries WHERE {where} ORDER BY due, key LIMIT ?"
        got = await self._run(partial(read, sql, (*args, limit)))
        return [_entry(r) for r in got]

    async def claim(self, owner: str, limit: int) -> list[Claim]:
        """Lease up to ``limit`` claimable rows, earliest first, each with a new token.

        A row whose claim would exceed its ``max_deliveries`` is dead-lettered
        (FAILED, "poison") instead, and so is a malformed row (FAILED,
        ``last_error`` "malformed row: ..."), on its own: the rest are claimed.
        The leases run from the store's time once the write lock is held, so
        a claim that waited for another process's lock hands out full leases.

        :raises ValueError: a negative limit
        :raises ReadOnlyStore: the store was opened ``read_only``
        """
        if limit < 0:
            raise ValueError(f"claim limit must be >= 0, not {limit!r}")
        if limit == 0:
            return []
        self._check_writable()
        clock = self._thread_clock
        probe_at = self._now()

        work = partial(claim_rows, owner, limit, probe_at, clock, self.dedupe_ttl)
        claims, ended = await self._run(work)
        if ended:
            self._finished.notify()
        return claims

    async def extend(self, claims: Sequence[tuple[str, int]]) -> list[bool]:
        """Renew the leases of ``(key, token)`` pairs to now + each row's lease, in one go."""
        pairs = [(key, token) for key, token in claims]
        if not pairs:
            return []
        clock = self._thread_clock
        sql = "UPDATE duetime_entries SET lease_until = ? + lease, visible_at = ? + lease" + FENCE

        def work(conn: sqlite3.Connection) -> list[bool]:
            now = float(clock())  # once the lock is held (see claim)
            return [conn.execute(sql, (now, now, key, token)).rowcount == 1 for key, token in pairs]

        return await self._write(work)

    async def finish_many(self, items: Sequence[tuple[str, int, Outcome]]) -> list[bool]:
        """Apply each ``(key, token, outcome)`` whose token is still current, in one
        transaction; each item is fenced by its own token and gets its own result.

        :raises TypeError: an outcome that is not one of the outcome types
            (nothing is applied)
        """
        now = self._now()
        ops = [
            finish_op(key, token, outcome, now, self.dedupe_ttl, self.result_ttl)
            for key, token, outcome in items
        ]
        if not ops:
            return []
        results = await self._write(
            partial(finish_recorded, partial(run_ops, ops), items, self._now())
        )
        requeued = ended = False
        for got, (_k, _t, outcome) in zip(results, items, strict=True):
            # 2: the row had an abort request and ended CANCELLED whatever the outcome.
            if got == 2 or (got and isinstance(outcome, Done | Dead | Aborted)):
                ended = True
            elif got:
                requeued = True
        if requeued:
            self._wake()
        if ended:
            self._finished.notify()
        return [got != 0 for got in results]

    async def retry(self, key: str) -> bool:
        """Make a FAILED row PENDING again, due now, attempt 1; False if not FAILED."""
        now = self._now()
        sql = (
            "UPDATE duetime_entries SET status = 0, due = ?, visible_at = ?, attempt = 1,"
            " deliveries = 0 WHERE key = ? AND status = 3"
        )
        ok = await self._write(lambda c: c.execute(sql, (now, now, key)).rowcount == 1)
        if ok:
            self._wake()
        return ok

    async def delete(self, key: str) -> bool:
        """Delete a row that is not RUNNING (tombstones and dead letters included)."""
        now = self._now()
        sql = f"DELETE FROM duetime_entries WHERE key = ? AND status != 1 AND {LIVE}"
        return await self._write(lambda c: c.execute(sql, (key, now)).rowcount == 1)

    async def head(self) -> float | None:
        """When the earliest row becomes claimable (due time or lease end), or None.

        A row whose claimable time is not a finite number counts as claimable
        now: the next claim dead-letters it.
        """
        first, odd = await self._run(lambda c: c.execute(HEAD, (HEAD_ARG,)).fetchone())
        if odd:
            return self._now()
        return None if first is None else float(first)

    async def wait_changed(self, timeout: float) -> None:
        """Return when a writer may have moved the head earlier, or after ``timeout`` seconds.

        Another process's commit is noticed within ``poll`` seconds (``PRAGMA
        data_version``, read on both of the store's connections); this store
        object's own writes wake at once.  A commit since the previous call
        returns at once (a spurious wake-up is harmless), and so does a write
        by this store object since this task's previous call.
        """
        await self._changed.wait(timeout, self.poll, self._versions)

    async def wait_finished(self, timeout: float) -> None:
        """Return when a row may have finished, or after ``timeout`` seconds.

        This store object's own finishes, cancels and deletes wake at once;
        another process's commit is noticed within ``poll`` seconds (``PRAGMA
        data_version``: any commit there wakes, spuriously for most).  A finish
        since this task's previous call returns at once.
        """
        await self._finished.wait(timeout, self.poll, self._data_version)

    async def wait_aborted(self, timeout: float) -> None:
        """Return when an abort may have been requested, or after ``timeout`` seconds.

        This store object's own requests wake at once; another process's commit
        is noticed within ``poll`` seconds, as for :meth:`wait_finished` (any
        commit there wakes, spuriously for most).  A request since this task's
        previous call returns at once.
        """
        await self._aborted.wait(timeout, self.poll, self._data_version)


def _check_limit(limit: int) -> None:
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"limit must be an int, not {type(limit).__name__}")
    if limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (0 < value < math.inf):
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
