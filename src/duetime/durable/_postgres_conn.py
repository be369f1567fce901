"""PostgreSQL connections driven on the event loop through psycopg's libpq layer.

psycopg's own async classes wait on sockets through asyncio (``loop.add_reader``),
so they do not run on trio.  This module drives the documented ``psycopg.pq``
layer instead: a non-blocking ``PGconn`` sends a query, and the calling task
waits on its socket with ``anyio.wait_readable``/``wait_writable``, so the same
code runs on asyncio and trio with no thread hop per query.  Opening a
connection is libpq's non-blocking connect (``PQconnectStart`` in a worker
thread, as it resolves the host name, then ``PQconnectPoll`` on the loop for
TCP, TLS and authentication): a server that accepts the TCP connection and
never answers (a frozen server) holds it for at most ``connect_timeout``, and
cancelling it (a store that closes) ends it at once.  Nothing here speaks the
wire protocol: libpq does.

Parameters and results travel as text (libpq's format 0); :func:`array` and
:func:`text_or_none` encode parameters, :class:`Rows` reads results.  A task
cancelled while a query is in flight closes that connection (what the server
does with the statement is then up to it, as with any driver): the pool never
hands out a connection in an unknown state.
"""

from __future__ import annotations

import logging
import math
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import anyio.to_thread
import psycopg
import psycopg.conninfo
import psycopg.errors
from psycopg import pq

__all__ = ["Conn", "Pool", "Rows", "array", "conninfo", "connect_timeout", "text_or_none"]

logger = logging.getLogger("duetime.durable")

_OK = (pq.ExecStatus.TUPLES_OK, pq.ExecStatus.COMMAND_OK)
_NUMBERS = {int, float}
_NONE = {type(None)}


def _nul(text: str) -> ValueError:
    return ValueError(f"PostgreSQL text cannot hold a NUL character, got {text[:100]!r}")


def array(values: Sequence[Any]) -> bytes:
    """A PostgreSQL array literal (text format) of ``values``: str, int, float or None.

    :raises ValueError: a str holding a NUL character (libpq would end the
        text there: another key)
    """
    if values:
        # The common arrays (all text, all numbers) are escaped and joined by C
        # loops; a NUL separates the texts while escaping (PostgreSQL text
        # cannot hold one: a text that does take the general way below).
        try:
            joined = "\0".join(values)
        except TypeError:
            types = set(map(type, values))
            if types <= _NUMBERS:
                # One number in every element (a batch's delay, lease...): written once.
                # Equal numbers of one type have one repr, but for 0.0 and -0.0.
                first = values[0]
                if len(types) == 1 and first and values.count(first) == len(values):
                    return ("{" + ",".join([repr(first)] * len(values)) + "}").encode()
                return ("{" + ",".join(map(repr, values)) + "}").encode()
            if types == _NONE:
                return ("{" + ",".join(["NULL"] * len(values)) + "}").encode()
        else:
            if joined.count("\0") == len(values) - 1:
                body = joined.replace("\\", "\\\\").replace('"', '\\"').replace("\0", '","')
                return ('{"' + body + '"}').encode("utf-8", "surrogatepass")
    parts = []
    for v in values:
        if v is None:
            parts.append("NULL")
        elif type(v) is str:
            if "\0" in v:
                raise _nul(v)
            parts.append('"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"')
        elif type(v) is float:
            parts.append(repr(v))
        else:
            parts.append(str(v))
    return ("{" + ",".join(parts) + "}").encode("utf-8", "surrogatepass")


def conninfo(dsn: str, connect_timeout: float) -> str:
    """The libpq connection string of a store's connections: ``dsn`` (a URL or
    ``key=value`` pairs) with UTF-8 text, ``connect_timeout``, and defaults the
    DSN may override: TCP keepalives, so that a server that vanished without
    closing (a partition) is noticed within about 25 s where the kernel's
    default takes hours, and ``application_name=duetime`` (pg_stat_activity).
    A shorter ``connect_timeout`` in the DSN is kept (the stricter limit wins).

    :raises psycopg.ProgrammingError: a DSN libpq cannot parse (its message may
        quote the DSN)
    """
    given = psycopg.conninfo.conninfo_to_dict(dsn)
    connect_timeout = min(connect_timeout, _seconds_of(given.get("connect_timeout")))
    defaults = {
        "application_name": "duetime",
        "keepalives": "1",
        "keepalives_idle": "10",
        "keepalives_interval": "5",
        "keepalives_count": "3",
    }
    return psycopg.conninfo.make_conninfo(
        dsn,
        **{k: v for k, v in defaults.items() if k not in given},
        connect_timeout=max(1, math.ceil(connect_timeout)),
        client_encoding="UTF8",
    )


def text_or_none(value: Any) -> bytes | None:
    """One query parameter in text format (None is SQL NULL).

    :raises ValueError: a str holding a NUL character (libpq would end the
        text there: another key)
    """
    if value is None:
        return None
    if type(value) is str:
        if "\0" in value:
            raise _nul(value)
        return value.encode("utf-8", "surrogatepass")
    if type(value) is float:
        return repr(value).encode()
    if type(value) is bool:
        return b"t" if value else b"f"
    return str(value).encode()


class Rows:
    """The rows of one result, as bytes or None per value (the caller decodes)."""

    __slots__ = ("count", "rows")

    def __init__(self, res: pq.abc.PGresult) -> None:
        n, m = res.ntuples, res.nfields
        get = res.get_value
        self.rows: list[list[bytes | None]] = [[get(i, j) for j in range(m)] for i in range(n)]
        status = res.command_status or b""
        tail = status.rpartition(b" ")[2]
        self.count = int(tail) if tail.isdigit() else n


def _error(res: pq.abc.PGresult, conn: pq.abc.PGconn) -> psycopg.Error:
    """The psycopg exception class of a failed result, with the server's message."""
    state = res.error_field(pq.DiagnosticField.SQLSTATE)
    message = (res.error_message or conn.error_message or b"").decode("utf-8", "replace").strip()
    cls: type[psycopg.Error] = psycopg.errors.lookup(state.decode()) if state else psycopg.Error
    return cls(message)


class Conn:
    """One non-blocking libpq connection; one query at a time (the pool sees to it)."""

    __slots__ = ("pg", "prepared")

    def __init__(self, pg: pq.abc.PGconn) -> None:
        self.pg = pg
        self.prepared: set[bytes] = set()

    @classmethod
    async def open(cls, conninfo: str, timeout: float = math.inf) -> Conn:
        """Connect without blocking the loop, and switch to non-blocking mode.

        :param timeout: how long connecting may take, in seconds (libpq leaves
            its own ``connect_timeout`` to the caller of a non-blocking connect)
        :raises psycopg.OperationalError: the server cannot be reached or refused us,
            or did not finish the connection within ``timeout``
        """
        # PQconnectStart resolves the host name: the one step that blocks.
        pg = await anyio.to_thread.run_sync(_connect_start, conninfo)
        try:
            with anyio.move_on_after(timeout):
                await _connect_poll(pg)
                pg.nonblocking = 1
                return cls(pg)
            raise psycopg.OperationalError(
                f"connecting to the PostgreSQL server took over {timeout:g} s (connect_timeout)"
            )
        except BaseException:
            pg.finish()
            raise

    @property
    def broken(self) -> bool:
        return self.pg.status != pq.ConnStatus.OK

    def close(self) -> None:
        try:
            self.pg.finish()
        except Exception:  # closing must never fail
            logger.debug("closing a PostgreSQL connection failed", exc_info=True)

    async def _flush(self) -> None:
        pg = self.pg
        while pg.flush():
            await anyio.wait_writable(pg.socket)

    async def _results(self) -> list[pq.abc.PGresult]:
        pg = self.pg
        pg.consume_input()
        while pg.is_busy():
            await anyio.wait_readable(pg.socket)
            pg.consume_input()
        out = []
        while (res := pg.get_result()) is not None:
            out.append(res)
            if pg.is_busy():  # more results on the way (a multi-statement query)
                while pg.is_busy():
                    await anyio.wait_readable(pg.socket)
                    pg.consume_input()
        return out

    async def _round_trip(self) -> pq.abc.PGresult:
        await self._flush()
        results = await self._results()
        if not results:
            raise psycopg.OperationalError(self._lost_message())
        for res in results:
            if res.status not in _OK:
                raise _error(res, self.pg)
        return results[-1]

    def _lost_message(self) -> str:
        text = (self.pg.error_message or b"").decode("utf-8", "replace").strip()
        return f"the PostgreSQL connection was lost ({text or 'no reply'})"

    async def query(self, sql: bytes, params: Sequence[bytes | None] = ()) -> Rows:
        """Run one statement with text parameters; its rows.

        A statement runs as a prepared statement on this connection after its
        first use (its plan is kept).

        :raises psycopg.Error: the server's error (its class by SQLSTATE)
        :raises psycopg.OperationalError: the connection was lost
        """
        pg = self.pg
        if pg.status != pq.ConnStatus.OK:
            raise psycopg.OperationalError(self._lost_message())
        name = b"d%x" % (hash(sql) & 0xFFFFFFFFFFFF)
        if name not in self.prepared:
            pg.send_prepare(name, sql)
            await self._round_trip()
            self.prepared.add(name)
        pg.send_query_prepared(name, params)
        return Rows(await self._round_trip())

    async def script(self, sql: bytes) -> None:
        """Run statements without parameters (the simple query protocol)."""
        self.pg.send_query(sql)
        await self._round_trip()


def _connect_start(conninfo: str) -> pq.abc.PGconn:
    pg = pq.PGconn.connect_start(conninfo.encode("utf-8"))
    if pg.status == pq.ConnStatus.BAD:
        message = (pg.error_message or b"").decode("utf-8", "replace").strip()
        pg.finish()
        raise psycopg.OperationalError(message or "cannot connect")
    return pg


async def _connect_poll(pg: pq.abc.PGconn) -> None:
    """Drive a started connection to its end (libpq tries each host and
    address of the DSN in turn; its socket may change between polls).

    :raises psycopg.OperationalError: every host failed or refused us
    """
    while True:
        status = pg.connect_poll()
        if status == pq.PollingStatus.OK:
            return
        if status == pq.PollingStatus.READING:
            await anyio.wait_readable(pg.socket)
        elif status == pq.PollingStatus.WRITING:
            await anyio.wait_writable(pg.socket)
        else:
            message = (pg.error_message or b"").decode("utf-8", "replace").strip()
            raise psycopg.OperationalError(message or "cannot connect")


def connect_timeout(conninfo: str) -> float:
    """The ``connect_timeout`` of a libpq connection string, in seconds
    (libpq's rule: none, 0 or less means no limit, and at least 2 s)."""
    return _seconds_of(psycopg.conninfo.conninfo_to_dict(conninfo).get("connect_timeout"))


def _seconds_of(value: Any) -> float:
    try:
        seconds = int(str(value))
    except ValueError:
        return math.inf
    return math.inf if seconds <= 0 else float(max(2, seconds))


class Pool:
    """Up to ``size`` connections, each used by one task at a time.

    :param conninfo: a libpq connection string (the DSN)
    :param size: the most connections open at once
    :param setup: statements run on each new connection (simple protocol)
    :param on_open: called with each new connection
    :param timeout: how long one query (or transaction), the wait for a free
        connection included, may take, in seconds
    :param translate: turns a server error into the exception to raise
        instead (None: raise it as it is)
    """

    def __init__(
        self,
        conninfo: str,
        size: int,
        setup: bytes = b"",
        on_open: Callable[[Conn], None] | None = None,
        timeout: float = math.inf,
        translate: Callable[[psycopg.Error], Exception | None] | None = None,
    ) -> None:
        self.conninfo = conninfo
        self.connect_timeout = connect_timeout(conninfo)
        self.timeout = timeout
        self.translate = translate
        self.setup = setup
        self.on_open = on_open
        self._idle: list[Conn] = []
        self._limit = anyio.Semaphore(size)
        self._closed = False

    @asynccontextmanager
    async def conn(self) -> AsyncIterator[Conn]:
        """A connection for a run of queries; a broken or interrupted one is closed."""
        async with self._limit:
            conn = self._take_idle() or await self._open()
            try:
                yield conn
            finally:
                self._put_back(conn)

    def _take_idle(self) -> Conn | None:
        """An idle connection that is still alive, or None.  Reading what the
        socket holds (non-blocking ``recv``) tells a connection the server
        closed while it sat idle (a restart) from a live one, before a
        statement is sent on it."""
        while self._idle:
            conn = self._idle.pop()
            try:
                # Twice: a server that goes away sends its last message (an
                # error), and libpq sees the end of the stream only on the
                # next read.
                conn.pg.consume_input()
                conn.pg.consume_input()
            except psycopg.OperationalError:
                pass
            if not conn.broken:
                return conn
            conn.close()
        return None

    async def _open(self) -> Conn:
        conn = await Conn.open(self.conninfo, self.connect_timeout)
        if self.setup:
            try:
                await conn.script(self.setup)
            except BaseException:
                conn.close()
                raise
        if self.on_open is not None:
            self.on_open(conn)
        return conn

    async def query(self, sql: bytes, params: Sequence[bytes | None] = ()) -> Rows:
        """Run one statement on a pooled connection (autocommit).

        :raises TimeoutError: no reply within ``timeout`` seconds (the
            connection is closed: the server may still run the statement)
        """
        with anyio.move_on_after(self.timeout):
            try:
                # What conn() does, inline: this is every statement's path.
                limit = self._limit
                try:
                    limit.acquire_nowait()  # the query's own wait is the checkpoint
                except anyio.WouldBlock:
                    await limit.acquire()
                try:
                    conn = self._take_idle() or await self._open()
                    try:
                        return await conn.query(sql, params)
                    finally:
                        self._put_back(conn)
                finally:
                    limit.release()
            except psycopg.Error as exc:
                raise self._translated(exc) from exc
        raise self._timed_out()

    def _put_back(self, conn: Conn) -> None:
        """Keep ``conn`` for the next query, or close it: broken, left inside a
        transaction (interrupted), or the pool closed."""
        idle = conn.pg.transaction_status == pq.TransactionStatus.IDLE
        if conn.broken or not idle or self._closed:
            conn.close()
        else:
            self._idle.append(conn)

    def _translated(self, exc: psycopg.Error) -> Exception:
        if self.translate is not None:
            return self.translate(exc) or exc
        return exc

    def _timed_out(self) -> TimeoutError:
        return TimeoutError(f"PostgreSQL: no reply within {self.timeout:g} s (timeout)")

    async def transaction(self, work: Callable[[Conn], Any]) -> Any:
        """Run ``await work(conn)`` between BEGIN and COMMIT (ROLLBACK if it raises).

        :raises TimeoutError: not done within ``timeout`` seconds
        """
        with anyio.move_on_after(self.timeout):
            try:
                return await self._transaction(work)
            except psycopg.Error as exc:
                raise self._translated(exc) from exc
        raise self._timed_out()

    async def _transaction(self, work: Callable[[Conn], Any]) -> Any:
        async with self.conn() as conn:
            await conn.script(b"BEGIN")
            try:
                result = await work(conn)
            except BaseException:
                with anyio.CancelScope(shield=True):
                    if not conn.broken:
                        try:
                            await conn.script(b"ROLLBACK")
                        except Exception:
                            conn.close()
                raise
            await conn.script(b"COMMIT")
            return result

    def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
