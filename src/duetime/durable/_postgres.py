"""PostgresStore: the durable store in the PostgreSQL database a service already runs.

The driver is psycopg 3's documented libpq layer (``psycopg.pq``) driven by anyio
(:mod:`._postgres_conn`): a non-blocking connection per query, its socket waited
on with ``anyio.wait_readable``, so the store runs on asyncio and trio alike.
psycopg's own async classes are asyncio-only, and the other way that runs on
both, sync connections in worker threads, measured slower here
(``benchmarks/bench_postgres_driver.py``, 2-core machine, loopback server:
awaited one-row INSERT 5.9-9.1k/s on the loop vs 2.7-3.2k/s through threads;
claim-and-finish-sized round trips by 8 tasks 1.2-1.3k/s vs 0.6-0.8k/s): a
thread hop per query costs more than the query.

Every operation is one statement (autocommit), on the server's clock: a claim
is one statement, an ``UPDATE`` of the rows a ``SELECT ... ORDER BY visible_at
LIMIT n FOR UPDATE SKIP LOCKED`` picked, that also dead-letters poison and
malformed rows; fencing tokens come from a sequence; ``finish_many`` is one
statement whose rows are each fenced by their token; ``finish_and_claim`` runs
the two in one transaction (:mod:`._postgres_work`).  Claims, finishes and
lease renewals run on connections of their own, where each statement keeps
one plan.  Lease renewals commit
without waiting for the WAL flush; claims, defers and finishes wait for it (a
claim lost in a server crash would let a second worker run the entry).
The schema (:mod:`._postgres_sql`) is created, and checked on every open,
under an advisory lock; a schema of another version or of another application
is refused and left untouched.  Wake-ups come through one ``LISTEN``
connection per store object (:mod:`._postgres_wake`); writers send a
``NOTIFY`` only when they move the head earlier, when rows finish while some
store object awaits finishes, and on aborts.
"""

from __future__ import annotations

import contextlib
import logging
import math
import uuid
from collections.abc import Sequence
from contextlib import AsyncExitStack
from typing import Any

import anyio
import anyio.lowlevel
import psycopg
import psycopg.errors

from .._exceptions import EntryExists
from .._vocab import Status
from . import _postgres_rows as rows
from ._codec import known_map
from ._postgres_conn import Conn, Pool, Rows, conninfo
from ._postgres_listen import open_schema, show_dsn
from ._postgres_sql import SESSION, WORK_SESSION, Sql, check_schema_name, insert_params, insert_sql
from ._postgres_stats import PostgresInspection
from ._postgres_wake import Listener, Waits
from ._postgres_work import WorkMixin, ensure_indexes, params
from ._row_text import check_new_rows
from ._sqlite_file import NotAStore
from ._store import (
    Entry,
    NewRow,
    OnConflict,
    ReadOnlyStore,
    StoreLost,
    check_result_ttl,
)
from ._wakeup import Wakeup

__all__ = ["NotAStore", "PostgresStore"]

logger = logging.getLogger("duetime.durable")

_CONFLICTS = ("keep", "replace", "error")
#: Connections for lease renewals (a worker runs one renewal task), besides
#: ``pool_size``.
_LEASE_CONNECTIONS = 1
#: Connections for claims and finishes (a worker's claim loop and its finisher,
#: and one to spare), besides ``pool_size``.
_WORK_CONNECTIONS = 3


def _seconds(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number of seconds, not {type(value).__name__}")
    if not (0 < value < math.inf):
        raise ValueError(f"{what} must be a positive finite number of seconds, got {value!r}")
    return float(value)


_p = params


class PostgresStore(WorkMixin, Waits, PostgresInspection):
    """A durable store in PostgreSQL that several processes and hosts share.

    Open it with ``async with`` (the Scheduler does).  Times are the server's
    clock, so the hosts' clocks need not agree.  The store keeps its tables in
    its own schema, created on first use (the role needs CREATE on the
    database then, and only USAGE and table rights afterwards).  Log lines,
    errors and the repr show the DSN without its password.

    :param dsn: a libpq connection string: ``postgresql://user:password@host:5432/db``
        (also ``postgres://``) or ``host=... dbname=... user=...``
    :param schema: the schema the store's tables live in; stores with
        different schemas share a database independently
    :param lease: the default lease in seconds, for rows that carry none
    :param poll: the safety poll: :meth:`wait_changed` reads the head at least
        this often, in case a notification was lost (a reconnect)
    :param dedupe_ttl: how long a finished key is kept as a tombstone (seconds)
    :param result_ttl: how long a COMPLETED tombstone keeps its task's return
        value (default and at most ``dedupe_ttl``)
    :param read_only: open an existing store for listing only (``get``,
        ``entries``, ``head``, ``time``, the waits): its connections are
        read-only sessions, nothing is created or purged, and every writing
        method raises :class:`~duetime.durable.ReadOnlyStore`
    :param pool_size: the most connections open at once for queries, and as
        many again for one-row adds (awaited defers), opened as needed (up to
        three more carry a worker's claims and finishes, one its lease
        renewals, and one LISTENs)
    :param connect_timeout: how long opening one connection may take (seconds; a
        shorter ``connect_timeout`` in the DSN wins)
    :param timeout: how long one call may take (seconds), the wait for a free
        connection and the opening of a new one included: a server that stops
        answering (a freeze, a partition) raises ``TimeoutError`` rather than
        hanging the caller.  It also bounds leaving: a Scheduler on this store
        leaves its ``async with`` within about ``timeout`` plus a few seconds
        (a call in flight gives up, and closing waits for no connection),
        besides what its worker spends recording the outcomes of the runs it
        cancelled (retried until their leases end)
    :raises TypeError: a parameter of the wrong type
    :raises ValueError: a DSN psycopg cannot parse, a schema name that is not a
        plain lower-case identifier, a non-positive lease, poll, ttl or size
    """

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "duetime",
        lease: float = 30.0,
        poll: float = 1.0,
        dedupe_ttl: float = 86400.0,
        result_ttl: float | None = None,
        read_only: bool = False,
        pool_size: int = 10,
        connect_timeout: float = 10.0,
        timeout: float = 30.0,
    ) -> None:
        if not isinstance(dsn, str):
            raise TypeError(f"dsn must be a str, not {type(dsn).__name__}")
        self.schema = check_schema_name(schema)
        self.lease = _seconds(lease, "lease")
        self.poll = _seconds(poll, "poll")
        self.dedupe_ttl = _seconds(dedupe_ttl, "dedupe_ttl")
        self.result_ttl = check_result_ttl(result_ttl, self.dedupe_ttl)
        self.connect_timeout = _seconds(connect_timeout, "connect_timeout")
        self.timeout = _seconds(timeout, "timeout")
        if isinstance(pool_size, bool) or not isinstance(pool_size, int):
            raise TypeError(f"pool_size must be an int, not {type(pool_size).__name__}")
        if pool_size < 1:
            raise ValueError(f"pool_size must be >= 1, got {pool_size}")
        self.read_only = bool(read_only)
        self.dsn = dsn
        try:
            self._conninfo = conninfo(dsn, self.connect_timeout)
        except Exception:  # its message may quote the DSN: not repeated here
            raise ValueError(f"PostgresStore: cannot parse the DSN {show_dsn(dsn)!r}") from None
        self._pool_size = pool_size
        self._sql = Sql(self.schema)
        self._insert = {
            "keep": insert_sql(self.schema).encode(),
            "error": insert_sql(self.schema).encode(),
            "replace": insert_sql(self.schema, replace_when="status <> 1").encode(),
        }
        self._claim, self._finish = self._sql.claim(), self._sql.finish()
        self._insert_one, self._read = self._sql.insert_one(), self._sql.read()
        self._offset = 0.0
        self._id = uuid.uuid4().hex
        self._pool: Pool | None = None
        self._leases: Pool | None = None
        self._work: Pool | None = None
        self._ones: Pool | None = None
        self._stack: AsyncExitStack | None = None
        self._listener: Listener | None = None
        self._changed = Wakeup()
        self._finished = Wakeup()
        self._aborted = Wakeup()
        self._awaiting_until = -math.inf  # loop time our interest in finishes lapses
        self._purged_at = -math.inf
        #: Backend pids of this store object's query connections (see Listener).
        self._own: set[int] = set()
        self._lost: str | None = None

    def __repr__(self) -> str:
        mode = ", read_only=True" if self.read_only else ""
        return f"PostgresStore({show_dsn(self.dsn)!r}, schema={self.schema!r}{mode})"

    # -- life --------------------------------------------------------------------

    async def __aenter__(self) -> PostgresStore:
        """Connect, create or check the schema, and start listening for wake-ups.

        :raises RuntimeError: the store is already open
        :raises NotAStore: the schema holds another application's tables of
            the same names, or a duetime store of another schema version (left
            untouched); read-only, there is no store in the schema
        :raises psycopg.OperationalError: the server cannot be reached or refused us
        """
        if self._stack is not None:
            raise RuntimeError("this PostgresStore is already open")
        ro = b"; SET default_transaction_read_only = on" if self.read_only else b""
        setup = SESSION + ro
        pool = Pool(
            self._conninfo,
            self._pool_size,
            setup,
            on_open=self._own_pid,
            timeout=self.timeout,
            translate=self._translate,
        )
        # Lease renewals commit without waiting for the WAL flush: a renewal
        # lost in a server crash leaves the previous lease end, still ahead
        # (renewals come well before it), and the next renewal moves it on.
        # Everything else waits for the flush: a claim lost in a crash would
        # let a second worker run what the first one is running.
        leases = Pool(
            self._conninfo,
            _LEASE_CONNECTIONS,
            WORK_SESSION + ro + b"; SET synchronous_commit = off",
            on_open=self._own_pid,
            timeout=self.timeout,
            translate=self._translate,
        )
        work = Pool(
            self._conninfo,
            _WORK_CONNECTIONS,
            WORK_SESSION + ro,
            on_open=self._own_pid,
            timeout=self.timeout,
            translate=self._translate,
        )
        # An awaited defer's statement has one plan whatever its values (a
        # primary-key insert): planning it anew for each call, as the query
        # connections do, took a third of its time.
        ones = Pool(
            self._conninfo,
            self._pool_size,
            WORK_SESSION + ro,
            on_open=self._own_pid,
            timeout=self.timeout,
            translate=self._translate,
        )
        stack = AsyncExitStack()
        stack.callback(pool.close)
        stack.callback(leases.close)
        stack.callback(work.close)
        stack.callback(ones.close)
        try:
            await open_schema(pool, self.schema, read_only=self.read_only, shown=show_dsn(self.dsn))
            if not self.read_only:
                await ensure_indexes(pool, self.schema)
            listener = Listener(
                self._conninfo,
                f"{self.schema}.wake",
                {"c": self._changed, "f": self._finished, "a": self._aborted},
                self._own,
            )
            tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tg.cancel_scope.cancel)
            await tg.start(listener.run)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await stack.aclose()
            raise
        self._pool, self._leases, self._stack, self._listener = pool, leases, stack, listener
        self._work, self._ones = work, ones
        self._lost = None
        self._awaiting_until = -math.inf
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        """Stop listening and close the connections."""
        stack, self._stack = self._stack, None
        pool, self._pool = self._pool, None
        self._leases = self._work = self._ones = None
        self._listener = None
        if stack is None:
            return
        if pool is not None and self._awaiting_until > -math.inf and not self.read_only:
            with anyio.move_on_after(2, shield=True):
                # Leaving must not fail: the row lapses by itself.
                with contextlib.suppress(Exception):
                    await pool.query(self._sql.not_awaiting(), _p(self._id))
        await stack.aclose()

    def _own_pid(self, conn: Conn) -> None:
        self._own.add(conn.pg.backend_pid)

    def _open_pool(self) -> Pool:
        pool = self._pool
        if pool is None:
            raise RuntimeError("the PostgresStore is not open: use `async with store:`")
        if self._lost is not None:
            raise StoreLost(self._lost)
        return pool

    def _translate(self, exc: psycopg.Error) -> Exception | None:
        """A missing table means the store's schema was dropped under this store
        object: StoreLost from now on (logged once); other errors as they are."""
        if not isinstance(exc, psycopg.errors.UndefinedTable):
            return None
        if self._lost is None:
            self._lost = (
                f"the duetime store in schema {self.schema!r} of {show_dsn(self.dsn)} was"
                " dropped while this process had it open; this store object stops (new"
                " entries there would reach no worker, and its fencing tokens would start"
                " over): restart the process to open what is there now"
            )
            logger.error("durable store lost: %s", self._lost)
        return StoreLost(self._lost)

    async def _q(self, sql: bytes, *params: Any) -> Rows:
        return await self._open_pool().query(sql, _p(*params))

    def _ones_pool(self) -> Pool:
        self._open_pool()
        assert self._ones is not None
        return self._ones

    def _work_pool(self) -> Pool:
        self._open_pool()
        assert self._work is not None
        return self._work

    async def _lease_q(self, sql: bytes, *params: Any) -> Rows:
        self._open_pool()
        assert self._leases is not None
        return await self._leases.query(sql, _p(*params))

    def _check_writable(self) -> None:
        if self.read_only:
            raise ReadOnlyStore(
                f"PostgresStore {show_dsn(self.dsn)} (schema {self.schema}) is open read-only"
                " (read_only=True): it cannot be changed"
            )

    # -- testing -----------------------------------------------------------------

    def advance_clock(self, seconds: float) -> None:
        """Test hook: move this store object's view of the server clock forward.

        Every statement adds the offset to the server's clock, so a test can
        lapse a lease or a tombstone without waiting.  Other store objects do
        not see it.  Never useful in production.

        :raises ValueError: a negative or non-finite number of seconds
        """
        if not (0 <= seconds < math.inf):
            raise ValueError(f"seconds must be a finite number >= 0, got {seconds!r}")
        self._offset += float(seconds)

    # -- the Store protocol -----------------------------------------------------

    async def time(self) -> float:
        """The store's clock: the server's ``clock_timestamp()``, in UTC epoch seconds."""
        got = await self._q(self._sql.time(), self._offset)
        return rows.number(got.rows[0][0])

    async def add(
        self, rows_: Sequence[NewRow], *, on_conflict: OnConflict = "keep"
    ) -> list[Entry]:
        """Insert rows, idempotent by key, in one statement (see ``Store.add``).

        At most one NOTIFY per call, and only if the rows move the head earlier.

        :raises EntryExists: ``on_conflict="error"`` and a key exists (tombstones
            included), or ``"replace"`` of a RUNNING entry; nothing is inserted
        :raises ValueError: an unknown ``on_conflict``, or a row whose text holds a
            lone surrogate
        :raises TypeError: a row that is not a NewRow
        :raises ReadOnlyStore: the store was opened ``read_only``
        """
        if on_conflict not in _CONFLICTS:
            raise ValueError(f"on_conflict must be one of {_CONFLICTS}, got {on_conflict!r}")
        check_new_rows(rows_)
        self._check_writable()
        if not rows_:
            return []
        pool = self._open_pool()
        await self._purge(pool)
        if on_conflict == "keep" and len(rows_) == 1:  # an awaited defer
            return [await self._add_one(self._ones_pool(), rows_[0])]
        # A key repeated in one batch conflicts with its earlier row: one row per
        # key goes to the server (the first; the last under "replace").
        first: dict[str, int] = {}
        for i, new in enumerate(rows_):
            if new.key in first and on_conflict == "error":
                raise EntryExists(f"a durable entry with key {new.key!r} already exists")
            if new.key not in first or on_conflict == "replace":
                first[new.key] = i
        unique = [rows_[i] for i in sorted(first.values())]
        if on_conflict == "keep" and len(unique) == 1:
            return [await self._add_one(self._ones_pool(), unique[0])] * len(rows_)
        params = _p(*insert_params(unique, self.lease, self._offset))
        sql = self._insert[on_conflict]
        if on_conflict == "keep":
            got = await pool.query(sql, params)
        else:

            async def work(conn: Conn) -> Rows:
                got = await conn.query(sql, params)
                for r in got.rows:
                    if r[1] != b"t":
                        key = rows.text(r[2])
                        if on_conflict == "replace":
                            raise EntryExists(
                                f"durable entry {key!r} is running and cannot be replaced"
                            )
                        raise EntryExists(f"a durable entry with key {key!r} already exists")
                return got

            got = await pool.transaction(work)
        if got.rows and got.rows[0][-1] not in (b"0", None):
            self._changed.notify()
        known = known_map()
        found = [rows.entry(r, 2, known) for r in got.rows]
        if [e.key for e in found] == [new.key for new in rows_]:  # the common batch
            return found
        stored = {e.key: e for e in found}
        return [stored[new.key] for new in rows_]

    async def _add_one(self, pool: Pool, new: NewRow) -> Entry:
        lease = self.lease if new.lease is None else new.lease
        params = _p(
            self._offset, new.key, new.task, new.payload, new.due, new.delay,
            float(lease), new.max_deliveries, new.schedule,
        )  # fmt: skip
        got = await pool.query(self._insert_one, params)
        if not got.rows:  # the key exists: keep what is stored
            got = await pool.query(self._read, _p(self._offset, new.key))
            if not got.rows:  # gone meanwhile (deleted, expired): try again
                return await self._add_one(pool, new)
            return rows.entry(got.rows[0])
        if got.rows[0][-1] not in (b"0", None):
            self._changed.notify()
        return rows.entry(got.rows[0])

    async def _purge(self, pool: Pool) -> None:
        """Delete expired tombstones, at most once a second (a lookup still treats
        an expired tombstone as absent)."""
        now = anyio.current_time()
        if now - self._purged_at < 1.0:
            return
        self._purged_at = now
        await pool.query(self._sql.purge(), _p(self._offset))

    async def cancel(self, key: str) -> bool:
        """Delete a PENDING or FAILED row; False if absent, RUNNING or finished.

        :raises ReadOnlyStore: the store was opened ``read_only``
        """
        self._check_writable()
        if "\0" in key:  # PostgreSQL text cannot hold one: no entry has it
            return False
        got = await self._q(self._sql.cancel(), self._offset, key)
        done = got.rows[0][0] == b"1"
        if done:
            self._finished.notify()
        return done

    async def abort(self, key: str) -> bool:
        """Delete a PENDING or FAILED row, or request the abort of a RUNNING one
        (announced to every store object on the channel), in one statement.

        :raises ReadOnlyStore: the store was opened ``read_only``
        """
        self._check_writable()
        if "\0" in key:  # PostgreSQL text cannot hold one: no entry has it
            return False
        got = await self._q(self._sql.abort(), self._offset, key)
        deleted, requested = got.rows[0][0] == b"1", got.rows[0][1] == b"1"
        if deleted:
            self._finished.notify()
        if requested:
            self._aborted.notify()
        return deleted or requested

    async def aborts(self, claims: Sequence[tuple[str, int]]) -> list[bool]:
        """Whether an abort was requested for each ``(key, token)``, in one query."""
        if not claims:
            return []
        keys = [k for k, _ in claims]
        tokens = [int(t) for _, t in claims]
        got = await self._q(self._sql.aborts(), keys, tokens)
        hit = {int(r[0] or b"0") for r in got.rows}
        return [i + 1 in hit for i in range(len(claims))]

    async def get(self, key: str) -> Entry | None:
        """The entry stored under ``key`` (unexpired tombstones included), or None."""
        if "\0" in key:  # PostgreSQL text cannot hold one: no entry has it
            return None
        got = await self._q(self._sql.get(), self._offset, key)
        if not got.rows:
            return None
        r = got.rows[0]
        try:
            now = rows.number(r[15])
        except ValueError:
            now = math.inf
        return rows.detail(rows.entry(r[:11]), r[11:15], now)

    async def entries(self, *, status: Status | None = None, limit: int = 1000) -> list[Entry]:
        """Entries by due time (then key), optionally only those with ``status``.

        :raises TypeError: a limit that is not an int
        :raises ValueError: a negative limit, or a value that is not a Status
        """
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"limit must be an int, not {type(limit).__name__}")
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        if limit == 0:
            return []
        if status is None:
            got = await self._q(self._sql.entries(status=False), self._offset, limit)
        else:
            code = rows.CODE.get(Status(status))
            if code is None:
                return []
            got = await self._q(self._sql.entries(status=True), self._offset, limit, code)
        return [rows.entry(r) for r in got.rows]

    async def retry(self, key: str) -> bool:
        """Make a FAILED row PENDING again, due now, attempt 1; False if not FAILED.

        :raises ReadOnlyStore: the store was opened ``read_only``
        """
        self._check_writable()
        if "\0" in key:  # PostgreSQL text cannot hold one: no entry has it
            return False
        got = await self._q(self._sql.retry(), self._offset, key)
        ok = got.rows[0][0] == b"1"
        if ok and got.rows[0][1] not in (b"0", None):
            self._changed.notify()
        return ok

    async def delete(self, key: str) -> bool:
        """Delete a row that is not RUNNING (tombstones and dead letters included).

        :raises ReadOnlyStore: the store was opened ``read_only``
        """
        self._check_writable()
        if "\0" in key:  # PostgreSQL text cannot hold one: no entry has it
            return False
        got = await self._q(self._sql.delete(), self._offset, key)
        done = got.rows[0][0] == b"1"
        if done:
            self._finished.notify()
        return done

    async def head(self) -> float | None:
        """When the earliest row becomes claimable (due time or lease end), or None.

        A row whose claimable time is not a finite number counts as claimable
        now: the next claim dead-letters it.
        """
        first, odd, now = (await self._q(self._sql.head(), self._offset)).rows[0]
        if odd == b"t":
            return rows.number(now)
        if first is None:
            return None
        value = rows.number(first)
        return value if math.isfinite(value) else rows.number(now)
