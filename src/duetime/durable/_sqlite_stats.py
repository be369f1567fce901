"""SQLiteStore's inspection queries, and the schema and writes they need.

- counts: ``GROUP BY status, task`` over the covering index
  ``duetime_entries_status_task`` (about 60 ms for a million rows on this
  project's CI machine), less the expired tombstones not yet purged (found
  through the ``expires_at`` index);
- page: one indexed ``(status, due)`` range per status, merged in Python, so
  no query sorts the whole table;
- activity: ``duetime_minutes``, a ring of per-minute counters, bumped by one
  upsert in the claim transaction and one in the finish transaction;
- inspect: one row, every column.

Both the index and the table are created (``IF NOT EXISTS``) when a store
opens for writing; a file written only by an older duetime has neither, and
its queries fall back to a scan (counts) or report no activity.
"""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any, TypeVar

from ._sqlite_rows import STATUS, lenient_text, with_detail
from ._sqlite_rows import entry as _entry
from ._stats import (
    ACTIVITY_MINUTES,
    Counts,
    EntryQuery,
    Minute,
    check_minutes,
    key_prefix_end,
    minutes_window,
)
from ._store import (
    Claim,
    Dead,
    Done,
    Entry,
    EntryDetail,
    NextOccurrence,
    Outcome,
    Page,
    RetryAt,
    page_from,
)

__all__ = [
    "SQLiteInspection",
    "counts",
    "ensure_schema",
    "finish_recorded",
    "has_minutes",
    "inspect",
    "page",
    "record_claims",
]

_RING = ACTIVITY_MINUTES + 4

_SCHEMA = (
    "CREATE INDEX IF NOT EXISTS duetime_entries_status_task ON duetime_entries (status, task)",
    "CREATE TABLE IF NOT EXISTS duetime_minutes (slot INTEGER PRIMARY KEY, minute INTEGER NOT NULL,"
    " started INTEGER NOT NULL DEFAULT 0, completed INTEGER NOT NULL DEFAULT 0,"
    " failed INTEGER NOT NULL DEFAULT 0, retried INTEGER NOT NULL DEFAULT 0,"
    " late_total REAL NOT NULL DEFAULT 0, late_max REAL NOT NULL DEFAULT 0)",
)

# One upsert per batch: a slot of another minute starts again from this batch's numbers.
_BUMP = """
INSERT INTO duetime_minutes
    (slot, minute, started, completed, failed, retried, late_total, late_max)
VALUES (:slot, :minute, :started, :completed, :failed, :retried, :late_total, :late_max)
ON CONFLICT (slot) DO UPDATE SET
    started = excluded.started + CASE WHEN minute = excluded.minute THEN started ELSE 0 END,
    completed = excluded.completed + CASE WHEN minute = excluded.minute THEN completed ELSE 0 END,
    failed = excluded.failed + CASE WHEN minute = excluded.minute THEN failed ELSE 0 END,
    retried = excluded.retried + CASE WHEN minute = excluded.minute THEN retried ELSE 0 END,
    late_total = excluded.late_total
        + CASE WHEN minute = excluded.minute THEN late_total ELSE 0 END,
    late_max = CASE WHEN minute = excluded.minute THEN max(late_max, excluded.late_max)
        ELSE excluded.late_max END,
    minute = excluded.minute
"""

_ENTRY = (
    "key, task, payload, status, due, attempt, last_error, occurrence, schedule, deliveries,"
    " abort_requested"
)


def _entry_columns(version: int) -> str:
    # Before schema version 3 a file has no abort request column: 0.
    return _ENTRY if version >= 3 else _ENTRY.replace("abort_requested", "0")


_DETAIL = ", result, result_until, error_type, traceback"
_MORE = ", owner, lease_until, token, lease, max_deliveries, expires_at"
_LIVE = "(expires_at IS NULL OR expires_at > ?)"


def ensure_schema(conn: sqlite3.Connection) -> None:
    """Create the inspection index and the activity ring if absent (one transaction)."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for statement in _SCHEMA:
            conn.execute(statement)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def has_minutes(conn: sqlite3.Connection) -> bool:
    """True if the file has the activity ring (a file only older versions wrote has not)."""
    sql = "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'duetime_minutes'"
    return conn.execute(sql).fetchone() is not None


def _bump(conn: sqlite3.Connection, now: float, **counts: float) -> None:
    minute = int(now // 60)
    values: dict[str, float] = dict.fromkeys(
        ("started", "completed", "failed", "retried", "late_total", "late_max"), 0
    )
    values.update(counts)
    conn.execute(_BUMP, {"slot": minute % _RING, "minute": minute, **values})


def record_claims(conn: sqlite3.Connection, now: float, claims: Sequence[Claim]) -> None:
    """Inside the claim transaction: count the claims and their start lateness."""
    if not claims:
        return
    late = [max(0.0, now - c.entry.due.timestamp()) for c in claims]
    _bump(conn, now, started=len(claims), late_total=sum(late), late_max=max(late))


def finish_recorded(
    run: Any,
    items: Sequence[tuple[str, int, Outcome]],
    now: float,
    conn: sqlite3.Connection,
) -> list[int]:
    """Inside the finish transaction: ``run(conn)`` (the fenced updates: 1 applied,
    2 ended CANCELLED by an abort request, 0 not applied), then one upsert counting
    the finishes that applied (a run an abort ended counts in none of the columns)."""
    results: list[int] = run(conn)
    completed = failed = retried = 0
    for got, (_key, _token, outcome) in zip(results, items, strict=True):
        if got != 1:
            continue
        if isinstance(outcome, Done) or (
            isinstance(outcome, NextOccurrence) and outcome.error is None
        ):
            completed += 1
        elif isinstance(outcome, Dead | NextOccurrence):
            failed += 1
        elif isinstance(outcome, RetryAt):
            retried += 1
    if completed or failed or retried:
        _bump(conn, now, completed=completed, failed=failed, retried=retried)
    return results


def counts(now: float, conn: sqlite3.Connection) -> Counts:
    """Entries per task and status, expired tombstones left out."""
    groups = conn.execute(
        "SELECT task, status, count(*) FROM duetime_entries GROUP BY status, task"
    ).fetchall()
    expired = conn.execute(
        # Through the expiry index: a few rows, not a scan in (status, task) order.
        "SELECT task, status, count(*) FROM duetime_entries INDEXED BY duetime_entries_expires"
        " WHERE expires_at <= ? GROUP BY status, task",
        (now,),
    ).fetchall()
    pairs = [(t, s, n) for t, s, n in groups] + [(t, s, -n) for t, s, n in expired]
    out = []
    for task, code, n in pairs:
        status = STATUS.get(code) if type(code) is int else None
        if status is not None:
            out.append((_task(task), status, n))
    return Counts.of(out)


def _task(task: Any) -> str:
    return task if type(task) is str else repr(task)


def page(query: EntryQuery, now: float, version: int, conn: sqlite3.Connection) -> Page:
    """One page: a ``(status, due)`` index range per status, merged (``version``:
    the file's schema version)."""
    where = [_LIVE]
    args: list[Any] = [now]
    if query.task is not None:
        where.append("task = ?")
        args.append(query.task)
    if query.key_prefix:
        where.append("key >= ?")
        args.append(query.key_prefix)
        end = key_prefix_end(query.key_prefix)
        if end is not None:
            where.append("key < ?")
            args.append(end)
    if query.due_from is not None:
        where.append("due >= ?")
        args.append(query.due_from)
    if query.due_before is not None:
        where.append("due < ?")
        args.append(query.due_before)
    if query.series is not None:
        where.append("schedule IS NOT NULL" if query.series else "schedule IS NULL")
    if query.after is not None:
        due, key = query.after
        where.append("(due > ? OR (due = ? AND key > ?))")
        args += [due, due, key]
    codes = [c for c, s in STATUS.items() if query.status is None or s is query.status]
    sql = (
        f"SELECT {_entry_columns(version)} FROM duetime_entries"
        f" WHERE status = ? AND {' AND '.join(where)}"
        " ORDER BY due, key LIMIT ?"
    )
    rows: list[tuple[float, Entry]] = []
    for code in codes:
        for r in conn.execute(sql, (code, *args, query.limit + 1)).fetchall():
            if type(r[4]) in (int, float) and type(r[0]) is str:
                rows.append((float(r[4]), _entry(r)))
    rows.sort(key=lambda p: (p[0], p[1].key))
    return page_from(rows[: query.limit + 1], query.limit)


def _minutes(now: float, count: int, conn: sqlite3.Connection) -> list[Minute]:
    """The last ``count`` minutes of the ring, oldest first."""
    got = {
        r[0]: r
        for r in conn.execute(
            "SELECT minute, started, completed, failed, retried, late_total, late_max"
            " FROM duetime_minutes WHERE minute > ?",
            (int(now // 60) - count,),
        ).fetchall()
    }
    out = []
    for minute in minutes_window(now, count):
        r = got.get(minute)
        out.append(Minute(minute * 60.0) if r is None else Minute(minute * 60.0, *r[1:]))
    return out


def inspect(key: str, now: float, version: int, conn: sqlite3.Connection) -> EntryDetail | None:
    """Every column of the row under ``key``, or None."""
    detail = version >= 2  # version 1 lacks the result columns
    columns = _entry_columns(version) + (_DETAIL if detail else "") + _MORE
    r = conn.execute(
        f"SELECT {columns} FROM duetime_entries WHERE key = ? AND {_LIVE}", (key, now)
    ).fetchone()
    if r is None:
        return None
    found = _entry(r)
    if detail:
        found = with_detail(found, r[11:15], now)
    owner, lease_until, token, lease, max_deliveries, expires_at = r[-6:]
    running = found.status.value == "RUNNING"
    return EntryDetail(
        entry=found,
        payload=r[2] if type(r[2]) is str else "",
        owner=owner if running and type(owner) is str else None,
        lease_until=float(lease_until) if running and _finite(lease_until) else None,
        token=token if type(token) is int else 0,
        lease=float(lease) if _finite(lease) else 0.0,
        max_deliveries=max_deliveries if type(max_deliveries) is int else 0,
        expires_at=float(expires_at) if _finite(expires_at) else None,
    )


def _finite(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


_T = TypeVar("_T")


def _lenient(fn: Callable[[sqlite3.Connection], _T], conn: sqlite3.Connection) -> _T:
    """``fn(conn)`` reading text that is not UTF-8 as escaped text, never raising on it."""
    conn.text_factory = lenient_text
    try:
        return fn(conn)
    finally:
        conn.text_factory = str


class SQLiteInspection:
    """The inspection half of SQLiteStore (a mixin: it runs in the store's thread)."""

    _version: int  # the file's schema version (1 lacks the result columns)

    async def _run(self, fn: Callable[[sqlite3.Connection], _T]) -> _T:
        raise NotImplementedError

    def _now(self) -> float:
        raise NotImplementedError

    async def counts(self) -> Counts:
        """How many entries, per task and status (expired tombstones not counted)."""
        return await self._run(partial(_lenient, partial(counts, self._now())))

    async def page(self, query: EntryQuery) -> Page:
        """One page of the entries ``query`` matches, in ``(due, key)`` order.

        :raises TypeError: a query that is not an EntryQuery
        """
        if not isinstance(query, EntryQuery):
            raise TypeError(f"page() takes an EntryQuery, not {type(query).__name__}")
        return await self._run(partial(_lenient, partial(page, query, self._now(), self._version)))

    async def activity(self, minutes: int = 60) -> list[Minute]:
        """The last ``minutes`` minutes of claims and finishes, oldest first.

        :raises TypeError: minutes that is not an int
        :raises ValueError: minutes outside 1 to 60
        """
        check_minutes(minutes)
        now = self._now()

        def read(conn: sqlite3.Connection) -> list[Minute]:
            if not has_minutes(conn):
                return [Minute(m * 60.0) for m in minutes_window(now, minutes)]
            return _minutes(now, minutes, conn)

        return await self._run(read)

    async def inspect(self, key: str) -> EntryDetail | None:
        """Everything the store knows of ``key``, or None."""
        return await self._run(partial(_lenient, partial(inspect, key, self._now(), self._version)))
