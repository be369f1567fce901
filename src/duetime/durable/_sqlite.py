"""SQLiteStore: the embedded durable store (one file, several processes on one host).

Stdlib ``sqlite3`` driven through ``anyio.to_thread`` with a limiter of one, so
it runs on asyncio and trio alike (aiosqlite is asyncio-only).  One connection
per store object; WAL so readers never block the writer; every write in
``BEGIN IMMEDIATE`` so a transaction takes the write lock up front (no
read-to-write upgrade deadlock between processes) and waits ``busy_timeout``
for it.  Claims are one ``UPDATE ... FROM ... RETURNING``; fencing tokens come
from a counter row bumped in the same transaction, so they are unique for the
file's whole life.  Another process's commit is seen through ``PRAGMA
data_version``, polled every ``poll`` seconds by :meth:`SQLiteStore.wait_changed`.

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
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import anyio.to_thread

from .._exceptions import EntryExists
from .._handle import Status
from ._signal import ChangeSignal
from ._sqlite_file import NotAStore, check_existing, create_private, init_schema, open_read_only
from ._store import (
    Claim,
    Dead,
    Done,
    Entry,
    NewRow,
    NextOccurrence,
    OnConflict,
    Outcome,
    Release,
    RetryAt,
    entry_args,
    utc,
)

__all__ = ["NotAStore", "ReadOnlyStore", "SQLiteStore"]

_T = TypeVar("_T")

# Status codes in the file (stable: part of the schema).
_P, _R, _C, _F = 0, 1, 2, 3
_STATUS = {_P: Status.PENDING, _R: Status.RUNNING, _C: Status.COMPLETED, _F: Status.FAILED}

_ENTRY = "key, task, payload, status, due, attempt, last_error, occurrence, schedule, deliveries"
_CLAIM = _ENTRY + ", token, lease_until, lease"
_LIVE = "(expires_at IS NULL OR expires_at > ?)"

_INSERT = (
    "INSERT INTO duetime_entries (key, task, payload, status, due, visible_at, lease,"
    " max_deliveries, schedule) VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?)"
)
_REPLACE = (
    " ON CONFLICT (key) DO UPDATE SET task = excluded.task, payload = excluded.payload,"
    " status = 0, due = excluded.due, visible_at = excluded.visible_at, lease = excluded.lease,"
    " lease_until = NULL, token = 0, owner = NULL, attempt = 1, deliveries = 0,"
    " max_deliveries = excluded.max_deliveries, occurrence = 0, schedule = excluded.schedule,"
    " last_error = NULL, expires_at = NULL WHERE duetime_entries.status != 1"
)

_POISON = """
UPDATE duetime_entries SET status = 3, visible_at = NULL, owner = NULL, lease_until = NULL,
    last_error = 'poison: delivered ' || deliveries || ' times (max_deliveries=' || max_deliveries
        || ') without a fenced finish; its worker died or lost its lease each time'
WHERE key IN (SELECT key FROM duetime_entries WHERE visible_at <= ? ORDER BY visible_at LIMIT ?)
    AND deliveries >= max_deliveries
"""
_CLAIM_SQL = f"""
WITH picked AS (
    SELECT key, row_number() OVER (ORDER BY visible_at) AS rn FROM (
        SELECT key, visible_at FROM duetime_entries
        WHERE visible_at <= :now AND deliveries < max_deliveries
        ORDER BY visible_at LIMIT :n))
UPDATE duetime_entries SET status = 1, owner = :owner, token = :base + picked.rn,
    deliveries = deliveries + 1, lease_until = :now + lease, visible_at = :now + lease
FROM picked WHERE duetime_entries.key = picked.key
RETURNING {_CLAIM}
"""
_EXPIRED = "DELETE FROM duetime_entries WHERE key = ? AND expires_at <= ?"
_INSERT_NEW = _INSERT + " ON CONFLICT (key) DO NOTHING"
_FENCE = " WHERE key = ? AND token = ? AND status = 1"
_UNLEASE = "visible_at = NULL, lease_until = NULL, owner = NULL"
_DONE = f"UPDATE duetime_entries SET status = 2, {_UNLEASE}, expires_at = ?"
_RETRY_AT = (
    "UPDATE duetime_entries SET status = 0, due = ?, visible_at = ?, lease_until = NULL,"
    " owner = NULL, attempt = attempt + 1, deliveries = 0, last_error = ?"
)
_NEXT = (
    "UPDATE duetime_entries SET status = 0, due = ?, visible_at = ?, lease_until = NULL,"
    " owner = NULL, occurrence = occurrence + 1, attempt = 1, deliveries = 0, last_error = ?"
)
_DEAD = f"UPDATE duetime_entries SET status = 3, {_UNLEASE}, last_error = ?"
_RELEASE = (
    "UPDATE duetime_entries SET status = 0, visible_at = due, lease_until = NULL, owner = NULL,"
    " deliveries = max(0, deliveries - 1)"
)


class ReadOnlyStore(RuntimeError):
    """A write (``add``, ``claim``, ``finish``...) to a store opened ``read_only=True``."""


class SQLiteStore:
    """The embedded durable store: one SQLite file, shared safely by the processes of one host.

    Use it as ``async with SQLiteStore("jobs.db") as store`` (the Scheduler
    does this when given ``store=``).  The file is created with mode 0600
    (SQLite gives its ``-wal`` and ``-shm`` files the same mode).  Times are
    the host's wall clock (``time.time``) unless ``clock`` is given.

    :param path: the database file (str or PathLike); created if absent
    :param lease: the default lease in seconds, for rows that carry none
    :param poll: how often :meth:`wait_changed` checks for another process's
        commit (``PRAGMA data_version``, a few microseconds)
    :param dedupe_ttl: how long a completed key is kept as a tombstone
    :param busy_timeout: how long a write waits for another process's
        write lock before failing with ``sqlite3.OperationalError``
    :param clock: the store's clock in UTC epoch seconds (tests inject a
        virtual one); called on the event-loop thread
    :param read_only: open an existing store for listing only (``get``,
        ``entries``, ``head``, ``wait_changed``): the file is never created,
        changed or switched to WAL, and it may sit on a read-only file or mount;
        opening raises FileNotFoundError if it does not exist, and every
        writing method raises :class:`ReadOnlyStore`
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
        self._busy_ms = int(busy_timeout * 1000)
        self._clock = clock
        self.read_only = bool(read_only)
        self._conn: sqlite3.Connection | None = None
        self._limiter: anyio.CapacityLimiter | None = None
        self._data_version = 0
        self._changed = ChangeSignal()
        self._queue: list[list[Any]] = []  # finishes waiting for the next group commit
        self._flushing: anyio.Event | None = None
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
        self._conn = await anyio.to_thread.run_sync(self._open, limiter=self._limiter)
        self._data_version = await self._run(_data_version)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await anyio.to_thread.run_sync(conn.close, limiter=self._limiter)

    def _open(self) -> sqlite3.Connection:
        if self.read_only:
            conn = open_read_only(self.path)
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            return conn
        created = create_private(self.path)
        if not created:
            check_existing(self.path)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {self._busy_ms}")
            conn.execute("BEGIN IMMEDIATE")
            try:
                init_schema(conn, self.path)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
        except BaseException:
            conn.close()
            raise
        return conn

    # -- plumbing ---------------------------------------------------------------

    async def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        conn = self._conn
        if conn is None:
            raise RuntimeError("SQLiteStore is not open: use it as `async with store:`")
        return await anyio.to_thread.run_sync(fn, conn, limiter=self._limiter)

    async def _write(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        self._check_writable()
        return await self._run(lambda conn: _transaction(conn, fn))

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
        """
        if on_conflict not in ("keep", "replace", "error"):
            raise ValueError(
                f"on_conflict must be 'keep', 'replace' or 'error', not {on_conflict!r}"
            )
        for new in rows:
            if not isinstance(new, NewRow):
                raise TypeError(f"add() takes NewRow values, not {type(new).__name__}")
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
        insert = _INSERT + (
            _REPLACE if on_conflict == "replace" else " ON CONFLICT (key) DO NOTHING"
        )
        insert += f" RETURNING {_ENTRY}"

        # Purge expired tombstones at most once a second (an indexed delete, but not
        # free); a key whose tombstone expired since is replaced below all the same.
        purge = now - self._purged_at >= 1.0
        if purge:
            self._purged_at = now

        distinct = len({p[0] for p in params}) == len(params)

        def work(conn: sqlite3.Connection) -> list[Entry]:
            if purge:
                conn.execute("DELETE FROM duetime_entries WHERE expires_at <= ?", (now,))
            if distinct and _insert_new(conn, params):
                return [_new_entry(p) for p in params]
            out = []
            for p in params:
                got = conn.execute(insert, p).fetchone()
                if got is None and conn.execute(_EXPIRED, (p[0], now)).rowcount:
                    got = conn.execute(insert, p).fetchone()  # it was an expired tombstone
                if got is None:
                    if on_conflict == "keep":
                        got = conn.execute(
                            f"SELECT {_ENTRY} FROM duetime_entries WHERE key = ?", (p[0],)
                        ).fetchone()
                    elif on_conflict == "replace":
                        raise EntryExists(
                            f"durable entry {p[0]!r} is running and cannot be replaced"
                        )
                    else:
                        raise EntryExists(f"a durable entry with key {p[0]!r} already exists")
                out.append(_entry(got))
            return out

        entries = await self._write(work)
        self._wake()
        return entries

    async def cancel(self, key: str) -> bool:
        """Delete a PENDING or FAILED row; False if absent, RUNNING or finished."""
        sql = "DELETE FROM duetime_entries WHERE key = ? AND status IN (0, 3)"
        return await self._write(lambda c: c.execute(sql, (key,)).rowcount == 1)

    async def get(self, key: str) -> Entry | None:
        """The entry stored under ``key`` (tombstones included), or None."""
        now = self._now()
        sql = f"SELECT {_ENTRY} FROM duetime_entries WHERE key = ? AND {_LIVE}"
        got = await self._run(lambda c: c.execute(sql, (key, now)).fetchone())
        return None if got is None else _entry(got)

    async def entries(self, *, status: Status | None = None, limit: int = 1000) -> list[Entry]:
        """Entries by due time (then key), optionally only those with ``status``.

        :raises ValueError: a status no store row has (EXPIRED, CANCELLED)
        """
        now = self._now()
        where, args = _LIVE, [now]
        if status is not None:
            code = {v: k for k, v in _STATUS.items()}.get(Status(status))
            if code is None:
                return []
            where += " AND status = ?"
            args.append(code)
        sql = f"SELECT {_ENTRY} FROM duetime_entries WHERE {where} ORDER BY due, key LIMIT ?"
        got = await self._run(lambda c: c.execute(sql, (*args, max(0, limit))).fetchall())
        return [_entry(r) for r in got]

    async def claim(self, owner: str, limit: int) -> list[Claim]:
        """Lease up to ``limit`` claimable rows, earliest first, each with a new token.

        A row whose claim would exceed its ``max_deliveries`` is dead-lettered
        (FAILED, "poison") instead.

        :raises ValueError: a negative limit
        """
        if limit < 0:
            raise ValueError(f"claim limit must be >= 0, not {limit!r}")
        if limit == 0:
            return []
        self._check_writable()
        now = self._now()

        def work(conn: sqlite3.Connection) -> list[Any]:
            # A read first: an idle worker must not take the write lock for nothing.
            probe = "SELECT 1 FROM duetime_entries WHERE visible_at <= ? LIMIT 1"
            if conn.execute(probe, (now,)).fetchone() is None:
                return []

            def claim(conn: sqlite3.Connection) -> list[Any]:
                conn.execute(_POISON, (now, limit))
                (base,) = conn.execute("SELECT v FROM duetime_meta WHERE k = 'token'").fetchone()
                got = conn.execute(
                    _CLAIM_SQL, {"now": now, "n": limit, "owner": owner, "base": base}
                ).fetchall()
                if got:
                    conn.execute("UPDATE duetime_meta SET v = v + ? WHERE k = 'token'", (len(got),))
                return got

            return _transaction(conn, claim)

        got = await self._run(work)
        got.sort(key=lambda r: r[10])  # by token: the order they were picked in
        return [Claim(_entry(r), r[2], r[10], r[11], r[12]) for r in got]

    async def extend(self, claims: Sequence[tuple[str, int]]) -> list[bool]:
        """Renew the leases of ``(key, token)`` pairs to now + each row's lease, in one go."""
        pairs = [(key, token) for key, token in claims]
        if not pairs:
            return []
        now = self._now()
        sql = "UPDATE duetime_entries SET lease_until = ? + lease, visible_at = ? + lease" + _FENCE

        def work(conn: sqlite3.Connection) -> list[bool]:
            return [conn.execute(sql, (now, now, key, token)).rowcount == 1 for key, token in pairs]

        return await self._write(work)

    async def finish(self, key: str, token: int, outcome: Outcome) -> bool:
        """Apply ``outcome`` if ``token`` is still current; False (no change) otherwise.

        :raises TypeError: ``outcome`` is not one of the outcome types
        """
        sql, args = self._finish_op(key, token, outcome)
        ok = await self._finish_coalesced(sql, args)
        if ok and not isinstance(outcome, Done | Dead):
            self._wake()
        return ok

    async def finish_many(self, items: Sequence[tuple[str, int, Outcome]]) -> list[bool]:
        """:meth:`finish` for several ``(key, token, outcome)`` in one transaction,
        each fenced by its own token.

        :raises TypeError: an outcome that is not one of the outcome types
            (nothing is applied)
        """
        ops = [[*self._finish_op(key, token, outcome), None] for key, token, outcome in items]
        if not ops:
            return []
        results = await self._write(partial(_run_ops, ops))
        if any(
            ok and not isinstance(outcome, Done | Dead)
            for ok, (_k, _t, outcome) in zip(results, items, strict=True)
        ):
            self._wake()
        return results

    def _finish_op(self, key: str, token: int, outcome: Outcome) -> tuple[str, tuple[Any, ...]]:
        """The fenced statement and its parameters that record ``outcome``."""
        args: tuple[Any, ...]
        if isinstance(outcome, Done):
            sql, args = _DONE, (self._now() + self.dedupe_ttl,)
        elif isinstance(outcome, RetryAt):
            sql, args = _RETRY_AT, (outcome.at, outcome.at, outcome.error)
        elif isinstance(outcome, NextOccurrence):
            sql, args = _NEXT, (outcome.due, outcome.due, outcome.error)
        elif isinstance(outcome, Dead):
            sql, args = _DEAD, (outcome.error,)
        elif isinstance(outcome, Release):
            sql, args = _RELEASE, ()
        else:
            raise TypeError(f"finish() takes an outcome (Done, RetryAt, ...), not {outcome!r}")
        return sql + _FENCE, (*args, key, token)

    async def _finish_coalesced(self, sql: str, args: tuple[Any, ...]) -> bool:
        """Run one fenced finish, in one transaction with the finishes of this
        process's other tasks that arrive while a transaction is in flight (group
        commit: a worker running many tasks pays one commit per batch, not per task)."""
        op: list[Any] = [sql, args, None]  # the third slot receives the result
        self._queue.append(op)
        while op[2] is None:
            flushing = self._flushing
            if flushing is not None:
                await flushing.wait()
                continue
            done = self._flushing = anyio.Event()
            # Let the other tasks woken in this tick (a claim's runs end together)
            # queue their finishes first: one commit for all, not one plus the rest.
            await anyio.lowlevel.cancel_shielded_checkpoint()
            batch, self._queue = self._queue, []
            try:
                # Shielded: once taken from the queue, every op gets its result even if
                # this (flushing) caller is cancelled, so the others never hang.
                with anyio.CancelScope(shield=True):
                    try:
                        results: list[Any] = await self._write(partial(_run_ops, batch))
                    except Exception as exc:
                        results = [exc] * len(batch)
                for o, result in zip(batch, results, strict=True):
                    o[2] = result
            finally:
                self._flushing = None
                done.set()
        if isinstance(op[2], Exception):
            raise op[2]
        return bool(op[2])

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
        sql = f"DELETE FROM duetime_entries WHERE key = ? AND status != 1 AND {_LIVE}"
        return await self._write(lambda c: c.execute(sql, (key, now)).rowcount == 1)

    async def head(self) -> float | None:
        """When the earliest row becomes claimable (due time or lease end), or None."""
        sql = "SELECT min(visible_at) FROM duetime_entries WHERE visible_at IS NOT NULL"
        got = await self._run(lambda c: c.execute(sql).fetchone())
        return None if got is None or got[0] is None else float(got[0])

    async def wait_changed(self, timeout: float) -> None:
        """Return when a writer may have moved the head earlier, or after ``timeout`` seconds.

        Another process's commit is noticed within ``poll`` seconds (``PRAGMA
        data_version``); this store object's own writes wake at once.  A commit
        since the previous call returns at once (a spurious wake-up is harmless),
        and so does a write by this store object since this task's previous call.
        """
        if self._changed.missed():
            await anyio.lowlevel.checkpoint()
            return
        event = self._changed.event()
        deadline = anyio.current_time() + max(0.0, timeout)
        try:
            while True:
                version = await self._run(_data_version)
                if version != self._data_version:
                    self._data_version = version
                    return
                remaining = deadline - anyio.current_time()
                if remaining <= 0:
                    return
                with anyio.move_on_after(min(self.poll, remaining)):
                    await event.wait()
                    return
                if anyio.current_time() >= deadline:
                    # The caller's own deadline (its head is due): no poll first,
                    # it claims next anyway (a version change is seen next call).
                    return
        finally:
            self._changed.seen()


# -- helpers run in the worker thread ------------------------------------------------


def _transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], _T]) -> _T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def _run_ops(ops: list[list[Any]], conn: sqlite3.Connection) -> list[bool]:
    return [conn.execute(sql, args).rowcount == 1 for sql, args, _ in ops]


def _insert_new(conn: sqlite3.Connection, params: list[tuple[Any, ...]]) -> bool:
    """The common case of ``add``, new keys only: one executemany, no lookups and
    no read-back.  True if every row was inserted; else nothing was (rolled back
    to a savepoint) and the caller goes row by row."""
    conn.execute("SAVEPOINT duetime_add")
    before = conn.total_changes
    conn.executemany(_INSERT_NEW, params)
    if conn.total_changes - before == len(params):
        conn.execute("RELEASE duetime_add")
        return True
    conn.execute("ROLLBACK TO duetime_add")
    conn.execute("RELEASE duetime_add")
    return False


def _new_entry(p: tuple[Any, ...]) -> Entry:
    """The entry a fresh insert of ``_INSERT`` parameters ``p`` stored."""
    return Entry(p[0], p[1], entry_args(p[2]), utc(p[3]), Status.PENDING, 1, None, 0, p[7], 0)


def _data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def _entry(r: Sequence[Any]) -> Entry:
    return Entry(
        key=r[0],
        task=r[1],
        args=entry_args(r[2]),
        due=utc(r[4]),
        status=_STATUS[r[3]],
        attempt=r[5],
        last_error=r[6],
        occurrence=r[7],
        schedule=r[8],
        deliveries=r[9],
    )


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (0 < value < math.inf):
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
