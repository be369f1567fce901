"""Transactional enqueue: defer registered tasks inside the caller's own
PostgreSQL transaction, so an entry exists if and only if that transaction commits.

:class:`PostgresEnqueue` needs no open store: a :class:`TaskRegistry` and the
store's schema name.  It checks a task and its arguments as
``Scheduler.defer`` does, then gives the store's own insert statement either
as ``(sql, params)`` for any driver (asyncpg, SQLAlchemy, psycopg) or runs it
on a psycopg connection the caller holds (sync or asyncio), never committing.

The statement takes the time from the server's clock (``delay=`` is added to
it there) and, when the new entry moves the store's head earlier, sends a
NOTIFY: PostgreSQL delivers a NOTIFY at commit and drops it on rollback, so
idle workers wake exactly when the entry becomes visible.

psycopg is imported only by the methods that run the statement: ``sql`` works
without it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any, Literal

from .._exceptions import EntryExists
from ._client import _when
from ._codec import encode_args
from ._keys import check_key, new_keys
from ._postgres_sql import check_schema_name, insert_params, insert_sql
from ._registry import TaskDef, TaskRegistry
from ._store import NewRow

if TYPE_CHECKING:
    import psycopg

__all__ = ["Paramstyle", "PostgresEnqueue"]

#: How placeholders are written: ``"numeric_dollar"`` (``$1``, a list: asyncpg,
#: libpq, psycopg's ``RawCursor``), ``"named"`` (``:p1``, a dict: SQLAlchemy
#: ``text()``), ``"pyformat"`` (``%(p1)s``, a dict: a psycopg or psycopg2 cursor).
Paramstyle = Literal["numeric_dollar", "named", "pyformat"]
_PARAMSTYLES = ("numeric_dollar", "named", "pyformat")
_ON_CONFLICT = ("keep", "error")
_PLACEHOLDER = re.compile(r"\$(\d+)")


@cache
def _statement(schema: str, paramstyle: str) -> str:
    """The store's insert for ``schema``, its placeholders in ``paramstyle``."""
    sql = insert_sql(schema)
    if paramstyle == "named":
        # A space before a cast: SQLAlchemy's text() reads ":p2::text[]" as no parameter.
        return _PLACEHOLDER.sub(r":p\1 ", sql)
    if paramstyle == "pyformat":
        return _PLACEHOLDER.sub(r"%(p\1)s", sql.replace("%", "%%"))
    return sql


def _check_paramstyle(paramstyle: object) -> str:
    if paramstyle not in _PARAMSTYLES:
        raise ValueError(f"paramstyle must be one of {_PARAMSTYLES}, got {paramstyle!r}")
    return paramstyle


class PostgresEnqueue:
    """Defers registered tasks inside a transaction the caller holds.

    ``sql`` gives the statement and its parameters for any driver;
    ``defer`` (a sync ``psycopg.Connection``) and ``defer_async`` (a
    ``psycopg.AsyncConnection``) run it on the caller's connection and never
    commit; the caller's commit stores the entries, a rollback leaves none.
    The store's schema must exist: a :class:`PostgresStore` opened once on the
    database creates it.

    Example, with FastAPI and SQLAlchemy (``session.execute``)::

        outbox = PostgresEnqueue(tasks)
        sql, params = outbox.sql(send_receipt, order_id, paramstyle="named")
        await session.execute(text(sql), params)
        await session.commit()  # the order and its job, or neither

    :param tasks: the registry the tasks deferred come from (the workers' own)
    :param schema: the store's schema (``PostgresStore(schema=...)``)
    :param lease: the lease written into entries of tasks registered without
        one; give the same as the workers' store (``PostgresStore(lease=...)``)
    :raises TypeError: ``tasks`` is not a TaskRegistry, or a bad schema or lease
    :raises ValueError: a schema name that is not a plain lower-case SQL
        identifier, or a lease that is not a positive number of seconds
    """

    __slots__ = ("lease", "schema", "tasks")

    def __init__(
        self, tasks: TaskRegistry, *, schema: str = "duetime", lease: float = 30.0
    ) -> None:
        if not isinstance(tasks, TaskRegistry):
            raise TypeError(f"tasks must be a TaskRegistry, got {tasks!r}")
        if isinstance(lease, bool) or not isinstance(lease, int | float):
            raise TypeError(f"lease must be a number of seconds, got {lease!r}")
        if not 0 < lease < math.inf:
            raise ValueError(f"lease must be > 0 and finite, got {lease!r}")
        self.tasks = tasks
        self.schema = check_schema_name(schema)
        self.lease = float(lease)

    def __repr__(self) -> str:
        return f"<PostgresEnqueue schema={self.schema!r} tasks={self.tasks!r}>"

    # -- the rows -------------------------------------------------------------------

    def _payload(self, t: TaskDef, args: Sequence[Any]) -> str:
        self.tasks.check_args(t, args)
        try:
            return encode_args(tuple(args))
        except TypeError as exc:
            raise TypeError(f"task {t.name!r}: {exc}") from None
        except ValueError as exc:
            raise ValueError(f"task {t.name!r}: {exc}") from None

    def rows(
        self,
        task: str | Callable[..., Any],
        argsets: Iterable[Sequence[Any]],
        *,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        keys: Iterable[str | None] | None = None,
    ) -> list[NewRow]:
        """The checked rows of one task's entries, one per argument set (what
        :meth:`sql` and :meth:`defer` insert).

        :param task: a registered function, or its name
        :param argsets: one sequence of positional arguments per entry
        :param delay: seconds (or a timedelta) after the server's clock at the
            insert (default: due now); not with ``at``
        :param at: an aware datetime (as good as this host's clock)
        :param keys: one key (or None for a random one) per entry
        :raises LookupError: an unknown task name
        :raises TypeError: an unregistered function, arguments that do not bind
            to the task's signature, or an argument the codec does not carry
            (the message names the task)
        :raises ValueError: a naive ``at``, a negative delay, both ``delay`` and
            ``at``, a bad key, ``keys`` of another length or a key given twice,
            an argument the codec refuses, a payload over 64 KiB
        """
        t = self.tasks.resolve(task)
        due, wait = _when(delay, at)
        sets = []
        for args in argsets:
            if isinstance(args, str | bytes) or not isinstance(args, Sequence):
                raise TypeError(f"each item of argsets must be a tuple or list, got {args!r}")
            sets.append(args)
        n = len(sets)
        if keys is None:
            key_list = new_keys(n) if n else []
        else:
            given = list(keys)
            if len(given) != n:
                raise ValueError(f"got {len(given)} keys for {n} argument sets")
            fresh = iter(new_keys(sum(1 for k in given if k is None)))
            key_list = [next(fresh) if k is None else check_key(k) for k in given]
            if len(set(key_list)) != n:
                raise ValueError("the same key was given twice")
        return [
            NewRow(k, t.name, self._payload(t, a), due, wait, t.lease, t.max_deliveries)
            for a, k in zip(sets, key_list, strict=True)
        ]

    # -- the statement, for any driver ----------------------------------------------

    def sql(
        self,
        task: str | Callable[..., Any],
        /,
        *args: Any,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        key: str | None = None,
        paramstyle: Paramstyle = "numeric_dollar",
    ) -> tuple[str, Any]:
        """The statement that defers one entry, and its parameters, for the
        caller's driver to run inside its transaction.

        A key that exists is kept (the statement stores nothing then), as
        ``defer(on_conflict="keep")``.  The result rows may be ignored.

        :param task: a registered function, or its name
        :param args: its positional arguments (JSON values or the codec's tagged types)
        :param delay: seconds (or a timedelta) after the server's clock at the insert
        :param at: an aware datetime
        :param key: the entry's key (default: a random one)
        :param paramstyle: ``"numeric_dollar"`` (``$1``; params a list: asyncpg's
            ``conn.execute(sql, *params)``), ``"named"`` (``:p1``; a dict:
            SQLAlchemy's ``session.execute(text(sql), params)``), or
            ``"pyformat"`` (``%(p1)s``; a dict: ``psycopg`` ``cursor.execute``)
        :return: ``(sql, params)``
        :raises LookupError: an unknown task name
        :raises TypeError: as :meth:`rows`
        :raises ValueError: a bad ``paramstyle``, or as :meth:`rows`
        """
        return self.sql_many(task, [args], delay=delay, at=at, keys=[key], paramstyle=paramstyle)

    def sql_many(
        self,
        task: str | Callable[..., Any],
        argsets: Iterable[Sequence[Any]],
        /,
        *,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        keys: Iterable[str | None] | None = None,
        paramstyle: Paramstyle = "numeric_dollar",
    ) -> tuple[str, Any]:
        """One statement that defers many entries of one task (all or nothing,
        with the caller's transaction), and its parameters; as :meth:`sql`.

        :param argsets: one sequence of positional arguments per entry
        :param keys: one key (or None for a random one) per entry
        :return: ``(sql, params)``
        :raises LookupError: an unknown task name
        :raises TypeError: as :meth:`rows`
        :raises ValueError: a bad ``paramstyle``, or as :meth:`rows`
        """
        style = _check_paramstyle(paramstyle)
        rows = self.rows(task, argsets, delay=delay, at=at, keys=keys)
        return _statement(self.schema, style), self._params(rows, style)

    def _params(self, rows: Sequence[NewRow], paramstyle: str) -> Any:
        values = insert_params(rows, self.lease)
        if paramstyle == "numeric_dollar":
            return values
        return {f"p{i}": v for i, v in enumerate(values, 1)}

    # -- on a psycopg connection the caller holds -------------------------------------

    def defer(
        self,
        conn: psycopg.Connection[Any],
        task: str | Callable[..., Any],
        /,
        *args: Any,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        key: str | None = None,
        on_conflict: Literal["keep", "error"] = "keep",
    ) -> str:
        """Defer one entry in ``conn``'s current transaction (not committed here).

        :param conn: a psycopg ``Connection`` in a transaction (a connection
            that is not in autocommit mode, or inside ``conn.transaction()``)
        :param on_conflict: an existing key: ``"keep"`` it (nothing stored), or
            ``"error"``: raise :exc:`~duetime.EntryExists`
        :return: the entry's key
        :raises LookupError: an unknown task name
        :raises TypeError: ``conn`` is not a psycopg Connection, or as :meth:`rows`
        :raises ValueError: ``conn`` is in autocommit mode outside a
            transaction (the entry would commit alone), a bad ``on_conflict``,
            or as :meth:`rows`
        :raises EntryExists: the key exists and ``on_conflict="error"``
        :raises psycopg.Error: the statement failed (the store's schema does
            not exist in this database, the connection broke): the caller's
            transaction is aborted, as with any failed statement
        """
        return self.defer_many(
            conn, task, [args], delay=delay, at=at, keys=[key], on_conflict=on_conflict
        )[0]

    def defer_many(
        self,
        conn: psycopg.Connection[Any],
        task: str | Callable[..., Any],
        argsets: Iterable[Sequence[Any]],
        /,
        *,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        keys: Iterable[str | None] | None = None,
        on_conflict: Literal["keep", "error"] = "keep",
    ) -> list[str]:
        """Defer many entries of one task in ``conn``'s current transaction, in
        one statement; as :meth:`defer`.

        :return: the entries' keys, in the order of ``argsets``
        :raises LookupError: an unknown task name
        :raises TypeError: as :meth:`defer`
        :raises ValueError: as :meth:`defer`
        :raises EntryExists: a key exists and ``on_conflict="error"``
        :raises psycopg.Error: as :meth:`defer`
        """
        import psycopg

        if not isinstance(conn, psycopg.Connection):
            raise TypeError(
                f"conn must be a psycopg.Connection (defer_async takes an AsyncConnection),"
                f" got {conn!r}"
            )
        rows = self._checked(conn, task, argsets, delay, at, keys, on_conflict)
        if not rows:
            return []
        with psycopg.RawCursor(conn) as cur:
            cur.execute(
                _statement(self.schema, "numeric_dollar"), self._params(rows, "numeric_dollar")
            )
            written = [bool(r[1]) for r in cur.fetchall()]
        return _keys(rows, written, on_conflict)

    async def defer_async(
        self,
        conn: psycopg.AsyncConnection[Any],
        task: str | Callable[..., Any],
        /,
        *args: Any,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        key: str | None = None,
        on_conflict: Literal["keep", "error"] = "keep",
    ) -> str:
        """:meth:`defer` on a psycopg ``AsyncConnection`` (asyncio: psycopg's
        async classes do not run on trio).

        :return: the entry's key
        :raises LookupError: an unknown task name
        :raises TypeError: ``conn`` is not a psycopg AsyncConnection, or as :meth:`rows`
        :raises ValueError: as :meth:`defer`
        :raises EntryExists: the key exists and ``on_conflict="error"``
        :raises psycopg.Error: as :meth:`defer`
        """
        keys = await self.defer_many_async(
            conn, task, [args], delay=delay, at=at, keys=[key], on_conflict=on_conflict
        )
        return keys[0]

    async def defer_many_async(
        self,
        conn: psycopg.AsyncConnection[Any],
        task: str | Callable[..., Any],
        argsets: Iterable[Sequence[Any]],
        /,
        *,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        keys: Iterable[str | None] | None = None,
        on_conflict: Literal["keep", "error"] = "keep",
    ) -> list[str]:
        """:meth:`defer_many` on a psycopg ``AsyncConnection``.

        :return: the entries' keys, in the order of ``argsets``
        :raises LookupError: an unknown task name
        :raises TypeError: as :meth:`defer_async`
        :raises ValueError: as :meth:`defer`
        :raises EntryExists: a key exists and ``on_conflict="error"``
        :raises psycopg.Error: as :meth:`defer`
        """
        import psycopg

        if not isinstance(conn, psycopg.AsyncConnection):
            raise TypeError(
                f"conn must be a psycopg.AsyncConnection (defer takes a Connection), got {conn!r}"
            )
        rows = self._checked(conn, task, argsets, delay, at, keys, on_conflict)
        if not rows:
            return []
        async with psycopg.AsyncRawCursor(conn) as cur:
            sql = _statement(self.schema, "numeric_dollar")
            await cur.execute(sql, self._params(rows, "numeric_dollar"))
            written = [bool(r[1]) for r in await cur.fetchall()]
        return _keys(rows, written, on_conflict)

    def _checked(
        self,
        conn: psycopg.Connection[Any] | psycopg.AsyncConnection[Any],
        task: str | Callable[..., Any],
        argsets: Iterable[Sequence[Any]],
        delay: float | timedelta | None,
        at: datetime | None,
        keys: Iterable[str | None] | None,
        on_conflict: str,
    ) -> list[NewRow]:
        """Every check before anything is sent: the rows."""
        from psycopg.pq import TransactionStatus

        if on_conflict not in _ON_CONFLICT:
            raise ValueError(f"on_conflict must be one of {_ON_CONFLICT}, got {on_conflict!r}")
        rows = self.rows(task, argsets, delay=delay, at=at, keys=keys)
        if conn.autocommit and conn.info.transaction_status == TransactionStatus.IDLE:
            raise ValueError(
                "conn is in autocommit mode outside a transaction: the entry would be"
                " committed on its own; defer inside 'with conn.transaction():' (or on a"
                " connection that is not in autocommit mode)"
            )
        return rows


def _keys(rows: Sequence[NewRow], written: Sequence[bool], on_conflict: str) -> list[str]:
    if on_conflict == "error":
        kept = [r.key for r, w in zip(rows, written, strict=True) if not w]
        if kept:
            raise EntryExists(f"a durable entry with key {kept[0]!r} already exists")
    return [r.key for r in rows]
