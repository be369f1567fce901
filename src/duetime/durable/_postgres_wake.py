"""A PostgresStore's wake-ups: its LISTEN connection, and the waits it serves.

Writers send a NOTIFY on the store's channel (``{schema}.wake``) only when
someone may care: ``c`` when a write moved the head earlier, ``f`` when rows
finished while some store object awaits finishes (a row in
``{schema}.awaiting``), ``a`` on an abort.  Each store object holds one LISTEN
connection (:class:`Listener`) that turns them into in-process wake-ups; its
own writes wake its own waiters directly.  :class:`Waits` holds the three
waits of the Store protocol, mixed into :class:`~duetime.durable.PostgresStore`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import anyio
import anyio.abc
import anyio.lowlevel
import psycopg

from ._postgres_conn import Conn, Pool, connect_timeout, text_or_none
from ._postgres_sql import Sql
from ._wakeup import Wakeup

__all__ = ["AWAIT_FOR", "Listener", "Waits"]

logger = logging.getLogger("duetime.durable")

#: How long a store object's interest in finishes lasts once announced (seconds);
#: renewed by ``wait_finished`` when less than half of it is left.
AWAIT_FOR = 60.0


class Waits:
    """``wait_changed``, ``wait_finished`` and ``wait_aborted`` of a PostgresStore
    (a mixin: the store provides what is declared here)."""

    poll: float
    read_only: bool
    _changed: Wakeup
    _finished: Wakeup
    _aborted: Wakeup
    _awaiting_until: float  # loop time this store object's interest in finishes lapses
    _offset: float
    _id: str
    _sql: Sql

    def _open_pool(self) -> Pool:
        raise NotImplementedError

    async def head(self) -> float | None:
        raise NotImplementedError

    async def wait_changed(self, timeout: float) -> None:
        """Return when another writer may have moved the head earlier, or after
        ``timeout`` seconds.  Never raises on a timeout.

        A notification (another process's write), a write of this store object
        that moved the head, or a reconnect of the LISTEN connection returns at
        once, and so does one since this task's previous call.  Every ``poll``
        seconds the head is also read: an earlier head than at the start returns.
        """
        if self._changed.missed():
            await anyio.lowlevel.checkpoint()
            return
        event = self._changed.event()
        deadline = anyio.current_time() + max(0.0, timeout)
        try:
            start = await self.head() if timeout > self.poll else None
            while True:
                remaining = deadline - anyio.current_time()
                if remaining <= 0:
                    return
                with anyio.move_on_after(min(self.poll, remaining)):
                    await event.wait()
                    return
                if anyio.current_time() >= deadline:
                    return  # the caller's own deadline: it claims next anyway
                head = await self.head()  # the safety poll
                if head is not None and (start is None or head < start):
                    return
        finally:
            self._changed.seen()

    async def wait_finished(self, timeout: float) -> None:
        """Return when a row may have finished (a notification, a finish of this
        store object, a reconnect), or after ``timeout`` seconds; a finish since
        this task's previous call returns at once.  Never raises on a timeout.

        Other processes announce finishes only while some store object awaits
        them: a call renews this store object's interest (a row in
        ``{schema}.awaiting``) when it runs low, and returns at once when it had
        lapsed (finishes meanwhile went unannounced).
        """
        pool = self._open_pool()
        now = anyio.current_time()
        if not self.read_only and self._awaiting_until - now < AWAIT_FOR / 2:
            lapsed = self._awaiting_until <= now
            await pool.query(
                self._sql.awaiting(),
                [text_or_none(self._offset), text_or_none(self._id), text_or_none(AWAIT_FOR)],
            )
            self._awaiting_until = now + AWAIT_FOR
            if lapsed:
                self._finished.seen()
                return
        limit = timeout if not self.read_only else min(timeout, self.poll)
        await self._finished.wait(max(0.0, limit))

    async def wait_aborted(self, timeout: float) -> None:
        """Return when an abort may have been requested (a notification, an abort
        by this store object, a reconnect), or after ``timeout`` seconds; one
        since this task's previous call returns at once.  Never raises on a
        timeout."""
        self._open_pool()
        await self._aborted.wait(max(0.0, timeout))


class Listener:
    """The LISTEN connection of one store object: notifications become wake-ups.

    :param conninfo: the libpq connection string
    :param channel: the channel to LISTEN on
    :param wakeups: payload -> the :class:`Wakeup` it notifies
    :param own: backend pids of the store object's own query connections (kept
        up to date by the store): their notifications are skipped, the writer
        already woke this process (counting them again would be a spurious
        wake-up that arrives late)
    """

    def __init__(
        self, conninfo: str, channel: str, wakeups: Mapping[str, Wakeup], own: set[int]
    ) -> None:
        self.conninfo = conninfo
        self.channel = channel
        self.wakeups = wakeups
        self.own = own

    async def run(
        self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Listen until cancelled; reconnect (after a short pause) when the
        connection drops, and count the reconnect as a wake-up of every kind
        (notifications sent meanwhile are lost)."""
        started = False
        pause = 0.05
        while True:
            conn: Conn | None = None
            try:
                conn = await Conn.open(self.conninfo, connect_timeout(self.conninfo))
                await conn.script(f'LISTEN "{self.channel}"'.encode())
                if started:
                    logger.info("PostgresStore: LISTEN connection back")
                    for wakeup in self.wakeups.values():
                        wakeup.notify()
                else:
                    started = True
                    task_status.started()
                pause = 0.05
                await self._receive(conn)
            except Exception as exc:
                if not started:
                    raise
                logger.debug("PostgresStore: LISTEN connection lost: %s", type(exc).__name__)
            finally:
                if conn is not None:
                    conn.close()
            await anyio.sleep(pause)
            pause = min(1.0, pause * 2)

    async def _receive(self, conn: Conn) -> None:
        pg = conn.pg
        while True:
            await anyio.wait_readable(pg.socket)
            pg.consume_input()  # raises once the connection is gone
            while (note := pg.notifies()) is not None:
                if note.be_pid in self.own:
                    continue
                wakeup = self.wakeups.get(note.extra.decode("ascii", "replace"))
                if wakeup is not None:
                    wakeup.notify()
            if conn.broken:
                raise psycopg.OperationalError("the LISTEN connection was closed")
