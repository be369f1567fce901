"""PostgresStore's inspection queries (what a dashboard asks), one statement each.

- counts: ``GROUP BY status, task`` over the table, less the expired
  tombstones not yet purged (through the ``expires_at`` index).  No index
  serves it: one on ``(status, task)`` would cost every claim and finish an
  entry, to halve the time of the counts on a vacuumed table (1,000,000 rows:
  120-160 ms against 245-255 ms; less where rows changed since the last
  vacuum, whose heap pages an index-only scan reads too);
- page: one keyset range on ``(status, due, key)`` (``entries_status_due``)
  under a status filter, else one per status, merged in due order
  (:func:`~._postgres_sql.each_status`); the other filters on the way;
- activity: the ``{schema}.minutes`` ring (:mod:`._postgres_minutes`), its
  shards summed per minute;
- inspect: one row, every column.
"""

from __future__ import annotations

import math
from typing import Any

from .._vocab import Status
from . import _postgres_rows as rows
from ._postgres_conn import Rows
from ._postgres_sql import DETAIL, ENTRY, each_status
from ._stats import Counts, EntryQuery, Minute, check_minutes, minutes_window
from ._store import Entry, EntryDetail, Page, page_from

__all__ = ["PostgresInspection"]

_NOW = "(extract(epoch FROM clock_timestamp())::float8 + $1::float8)"
_MAXF = "1.7976931348623157e308"
_LIVE = "(expires_at IS NULL OR expires_at > t.now)"
_LIVE_NOW = "(expires_at IS NULL OR expires_at > (SELECT now FROM t))"
_MORE = "owner, lease_until, token, lease, max_deliveries, expires_at"


def _counts_sql(e: str) -> bytes:
    return f"""
WITH t AS MATERIALIZED (SELECT {_NOW} AS now)
SELECT task, status, count(*) FROM {e} GROUP BY status, task
UNION ALL
SELECT task, status, -count(*) FROM {e}, t WHERE expires_at <= t.now GROUP BY status, task
""".encode()


def _page_sql(e: str, query: EntryQuery) -> tuple[bytes, list[Any]]:
    """The statement of one page and its parameters after ``$1`` (the offset)."""
    where = [_LIVE_NOW, f"due BETWEEN -{_MAXF} AND {_MAXF}"]  # a cursor must be a finite time
    params: list[Any] = []

    def p(value: Any, cast: str) -> str:
        params.append(value)
        return f"${len(params) + 1}::{cast}"

    if query.status is not None:
        where.append(f"status = {p(rows.CODE[query.status], 'smallint')}")
    if query.task is not None:
        where.append(f"task = {p(query.task, 'text')}")
    if query.key_prefix:
        where.append(f"starts_with(key, {p(query.key_prefix, 'text')})")
    if query.due_from is not None:
        where.append(f"due >= {p(query.due_from, 'float8')}")
    if query.due_before is not None:
        where.append(f"due < {p(query.due_before, 'float8')}")
    if query.series is not None:
        where.append("schedule IS NOT NULL" if query.series else "schedule IS NULL")
    if query.after is not None:
        due, key = query.after
        where.append(f"(due, key) > ({p(due, 'float8')}, {p(key, 'text')})")
    limit = p(query.limit + 1, "bigint")
    select, cond = f"SELECT {ENTRY} FROM {e}", " AND ".join(where)
    if query.status is not None:
        body = f"{select} WHERE {cond} ORDER BY due, key LIMIT {limit}"
    else:
        body = each_status(select, cond, limit)
    return f"WITH t AS MATERIALIZED (SELECT {_NOW} AS now)\n{body}\n".encode(), params


def _activity_sql(s: str) -> bytes:
    return f"""
WITH t AS MATERIALIZED (SELECT {_NOW} AS now)
SELECT m.minute, sum(m.started), sum(m.completed), sum(m.failed), sum(m.retried),
    sum(m.late_total), max(m.late_max), max(t.now)
FROM t LEFT JOIN {s}.minutes m ON m.minute > floor(t.now / 60)::bigint - $2::bigint
    AND m.minute <= floor(t.now / 60)::bigint
GROUP BY m.minute
""".encode()


def _inspect_sql(e: str) -> bytes:
    return f"""
WITH t AS MATERIALIZED (SELECT {_NOW} AS now)
SELECT {ENTRY}, {DETAIL}, {_MORE}, t.now FROM {e}, t WHERE key = $2 AND {_LIVE}
""".encode()


def _float(raw: bytes | None) -> float | None:
    try:
        value = rows.number(raw)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _int(raw: bytes | None) -> int:
    try:
        return int(raw) if raw is not None else 0
    except ValueError:
        return 0


class PostgresInspection:
    """The inspection half of PostgresStore (a mixin over its query helper)."""

    schema: str
    read_only: bool
    _offset: float

    async def _q(self, sql: bytes, *params: Any) -> Rows:
        raise NotImplementedError

    async def counts(self) -> Counts:
        """How many entries, per task and status (expired tombstones not counted)."""
        got = await self._q(_counts_sql(f"{self.schema}.entries"), self._offset)
        out = []
        for task, code, n in got.rows:
            status = rows.STATUS.get(code or b"")
            if status is not None:
                out.append((rows.text(task), status, _int(n)))
        return Counts.of(out)

    async def page(self, query: EntryQuery) -> Page:
        """One page of the entries ``query`` matches, in ``(due, key)`` order.

        :raises TypeError: a query that is not an EntryQuery
        """
        if not isinstance(query, EntryQuery):
            raise TypeError(f"page() takes an EntryQuery, not {type(query).__name__}")
        if "\0" in (query.task or "") + query.key_prefix:
            return page_from([], query.limit)  # PostgreSQL text cannot hold a NUL: no match
        sql, params = _page_sql(f"{self.schema}.entries", query)
        got = await self._q(sql, self._offset, *params)
        found: list[tuple[float, Entry]] = []
        for r in got.rows:
            due = _float(r[4])
            if due is not None:
                found.append((due, rows.entry(r)))
        return page_from(found, query.limit)

    async def activity(self, minutes: int = 60) -> list[Minute]:
        """The last ``minutes`` minutes of claims and finishes, oldest first.

        :raises TypeError: minutes that is not an int
        :raises ValueError: minutes outside 1 to 60
        """
        check_minutes(minutes)
        if self.read_only and not await self._has_ring():
            now = await self._now()
            return [Minute(m * 60.0) for m in minutes_window(now, minutes)]
        got = await self._q(_activity_sql(self.schema), self._offset, minutes)
        now = _float(got.rows[0][7]) or 0.0
        by_minute = {_int(r[0]): r for r in got.rows if r[0] is not None}
        out = []
        for m in minutes_window(now, minutes):
            r = by_minute.get(m)
            if r is None:
                out.append(Minute(m * 60.0))
            else:
                late = [_float(v) or 0.0 for v in r[5:7]]
                out.append(Minute(m * 60.0, *(_int(v) for v in r[1:5]), *late))
        return out

    async def _has_ring(self) -> bool:
        """True if the store has its activity ring (one an older duetime created has not)."""
        got = await self._q(b"SELECT to_regclass($1) IS NOT NULL", f"{self.schema}.minutes")
        return got.rows[0][0] == b"t"

    async def _now(self) -> float:
        got = await self._q(f"SELECT {_NOW}".encode(), self._offset)
        return _float(got.rows[0][0]) or 0.0

    async def inspect(self, key: str) -> EntryDetail | None:
        """Everything the store knows of ``key``, or None."""
        got = await self._q(_inspect_sql(f"{self.schema}.entries"), self._offset, key)
        if not got.rows:
            return None
        r = got.rows[0]
        now = _float(r[21])
        found = rows.detail(rows.entry(r[:11]), r[11:15], math.inf if now is None else now)
        owner, lease_until, token, lease, max_deliveries, expires_at = r[15:21]
        running = found.status is Status.RUNNING
        return EntryDetail(
            entry=found,
            payload=rows.text(r[2]),
            owner=rows.text(owner) if running and owner is not None else None,
            lease_until=_float(lease_until) if running else None,
            token=_int(token),
            lease=_float(lease) or 0.0,
            max_deliveries=_int(max_deliveries),
            expires_at=_float(expires_at),
        )
