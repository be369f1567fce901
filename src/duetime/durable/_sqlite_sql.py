"""The SQL of a SQLiteStore, and the functions that run it in the store's thread.

Status codes in the file are stable (part of the schema): 0 PENDING, 1 RUNNING,
2 COMPLETED, 3 FAILED, 4 CANCELLED.  ``visible_at`` is when a row becomes
claimable (its due time if PENDING, its lease end if RUNNING, else NULL).

An abort request (``abort_requested = 1``) is only ever set on a RUNNING row,
and cleared when the row leaves RUNNING (so the partial index
``duetime_entries_abort`` holds the requested runs only).
Such a row never runs again: every fenced finish but :data:`DONE` first tries
its own statement on a row *without* the request (one statement, the common
case) and, when that changes nothing, :data:`ABORT_END` on a row *with* it (see
:func:`run_ops`); a claim ends the requested rows whose lease lapsed
(:data:`ABORT_LAPSED`) before it picks any.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .._exceptions import EntryExists
from .._vocab import Status
from ._fast import new_entry as made_entry
from ._sqlite_rows import (
    PROBE,
    STATUS,
    SWEEP,
    WELL_FORMED,
    claim_row,
    dead_letter_rows,
    lenient_text,
)
from ._sqlite_rows import entry as row_entry
from ._sqlite_stats import record_claims
from ._store import (
    ABORTED,
    RESULT_DROPPED,
    Aborted,
    Claim,
    Dead,
    Done,
    Entry,
    NextOccurrence,
    Outcome,
    Release,
    RetryAt,
    entry_args,
    utc,
)

__all__ = [
    "ABORT",
    "ABORTS",
    "ABORT_END",
    "ABORT_LAPSED",
    "CANCELLED_END",
    "CLAIM",
    "CLAIM_SQL",
    "CODE",
    "DEAD",
    "DONE",
    "ENTRY",
    "EXPIRED",
    "FENCE",
    "INSERT",
    "INSERT_NEW",
    "LIVE",
    "NEXT",
    "POISON",
    "RELEASE",
    "REPLACE",
    "RETRY_AT",
    "UNLEASE",
    "checkpoint",
    "claim_rows",
    "abort_row",
    "add_rows",
    "data_version",
    "entry_columns",
    "finish_op",
    "insert_new",
    "new_entry",
    "read",
    "run_ops",
    "transaction",
]

_T = TypeVar("_T")

CODE = {status: code for code, status in STATUS.items()}

ENTRY = (
    "key, task, payload, status, due, attempt, last_error, occurrence, schedule, deliveries,"
    " abort_requested"
)
CLAIM = ENTRY + ", token, lease_until, lease, rowid"
LIVE = "(expires_at IS NULL OR expires_at > ?)"

INSERT = (
    "INSERT INTO duetime_entries (key, task, payload, status, due, visible_at, lease,"
    " max_deliveries, schedule) VALUES (?, ?, ?, 0, ?, ?, ?, ?, ?)"
)
REPLACE = (
    " ON CONFLICT (key) DO UPDATE SET task = excluded.task, payload = excluded.payload,"
    " status = 0, due = excluded.due, visible_at = excluded.visible_at, lease = excluded.lease,"
    " lease_until = NULL, token = 0, owner = NULL, attempt = 1, deliveries = 0,"
    " max_deliveries = excluded.max_deliveries, occurrence = 0, schedule = excluded.schedule,"
    " last_error = NULL, expires_at = NULL, result = NULL, result_until = NULL,"
    " error_type = NULL, traceback = NULL, abort_requested = 0"
    " WHERE duetime_entries.status != 1"
)

POISON = f"""
UPDATE duetime_entries SET status = 3, visible_at = NULL, owner = NULL, lease_until = NULL,
    last_error = 'poison: delivered ' || deliveries || ' times (max_deliveries=' || max_deliveries
        || ') without a fenced finish; its worker died or lost its lease each time'
WHERE rowid IN (SELECT rowid FROM duetime_entries WHERE visible_at <= ? ORDER BY visible_at LIMIT ?)
    AND deliveries >= max_deliveries AND {WELL_FORMED}
"""
CLAIM_SQL = f"""
WITH picked AS (
    SELECT id, row_number() OVER (ORDER BY visible_at) AS rn FROM (
        SELECT rowid AS id, visible_at FROM duetime_entries
        WHERE visible_at <= :now AND deliveries < max_deliveries AND {WELL_FORMED}
        ORDER BY visible_at LIMIT :n))
UPDATE duetime_entries SET status = 1, owner = :owner, token = :base + picked.rn,
    deliveries = deliveries + 1, lease_until = :now + lease, visible_at = :now + lease
FROM picked WHERE duetime_entries.rowid = picked.id
RETURNING {CLAIM}
"""
EXPIRED = "DELETE FROM duetime_entries WHERE key = ? AND expires_at <= ?"
INSERT_NEW = INSERT + " ON CONFLICT (key) DO NOTHING"
FENCE = " WHERE key = ? AND token = ? AND status = 1"
#: The fence of every outcome but Done: only a row without an abort request.
#: (``!= 1``: a garbage value is not a request; the next claim dead-letters it.)
UNABORTED = " AND abort_requested != 1"
UNLEASE = "visible_at = NULL, lease_until = NULL, owner = NULL"
DONE = (
    f"UPDATE duetime_entries SET status = 2, {UNLEASE}, expires_at = ?, result = ?,"
    " result_until = ?, last_error = coalesce(?, last_error), abort_requested = 0"
)
#: A run ends CANCELLED (an :class:`Aborted` outcome): expires_at, last_error.
CANCELLED_END = (
    f"UPDATE duetime_entries SET status = 4, {UNLEASE}, expires_at = ?, last_error = ?,"
    " abort_requested = 0"
)
#: Any other outcome of a row with an abort request ends it CANCELLED:
#: expires_at, last_error, key, token.
ABORT_END = CANCELLED_END + FENCE + " AND abort_requested = 1"
#: Inside a claim: the requested rows whose lease lapsed end CANCELLED (their
#: worker is gone; nobody runs them again).  The partial index finds them.
ABORT_LAPSED = f"""
UPDATE duetime_entries SET status = 4, {UNLEASE}, expires_at = :now + :ttl, last_error = :aborted,
    abort_requested = 0
WHERE abort_requested = 1 AND visible_at <= :now AND +status = 1
"""
#: Delete a PENDING or FAILED row (``cancel`` and ``abort``).
ABORT = "DELETE FROM duetime_entries WHERE key = ? AND status IN (0, 3)"
#: The RUNNING rows with an abort request, and their tokens (the partial index;
#: ``+status`` keeps the planner off the status index, which holds every run).
ABORTS = "SELECT key, token FROM duetime_entries WHERE abort_requested = 1 AND +status = 1"
RETRY_AT = (
    "UPDATE duetime_entries SET status = 0, due = ?, visible_at = ?, lease_until = NULL,"
    " owner = NULL, attempt = attempt + 1, deliveries = 0, last_error = ?"
)
NEXT = (
    "UPDATE duetime_entries SET status = 0, due = ?, visible_at = ?, lease_until = NULL,"
    " owner = NULL, occurrence = occurrence + 1, attempt = 1, deliveries = 0, last_error = ?"
)
DEAD = (
    f"UPDATE duetime_entries SET status = 3, {UNLEASE}, last_error = ?, error_type = ?,"
    " traceback = ?"
)
#: What :meth:`SQLiteStore.get` reads besides :data:`ENTRY` (schema version 2).
DETAIL = ", result, result_until, error_type, traceback"
RELEASE = (
    "UPDATE duetime_entries SET status = 0, visible_at = due, lease_until = NULL, owner = NULL,"
    " deliveries = max(0, deliveries - 1)"
)


def transaction(conn: sqlite3.Connection, fn: Callable[[sqlite3.Connection], _T]) -> _T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def checkpoint(conn: sqlite3.Connection) -> None:
    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def run_ops(
    ops: Sequence[tuple[str, tuple[Any, ...], tuple[Any, ...] | None]], conn: sqlite3.Connection
) -> list[int]:
    """Run each fenced finish ``(sql, args, abort_args)``: 1 if ``sql`` changed
    its row; else, when ``abort_args`` is given, 2 if :data:`ABORT_END` with them
    did (the row had an abort request and ended CANCELLED); else 0."""
    out = []
    for sql, args, abort_args in ops:
        if conn.execute(sql, args).rowcount == 1:
            out.append(1)
        elif abort_args is not None and conn.execute(ABORT_END, abort_args).rowcount == 1:
            out.append(2)
        else:
            out.append(0)
    return out


def finish_op(
    key: str, token: int, outcome: Outcome, now: float, dedupe_ttl: float, result_ttl: float
) -> tuple[str, tuple[Any, ...], tuple[Any, ...] | None]:
    """The fenced statement that records ``outcome`` at ``now``, its parameters,
    and the parameters of :data:`ABORT_END` (None for Done and Aborted), for
    :func:`run_ops`.

    :raises TypeError: ``outcome`` is not one of the outcome types
    """
    args: tuple[Any, ...]
    if isinstance(outcome, Done):
        dropped = None if outcome.dropped is None else RESULT_DROPPED + outcome.dropped
        args = (now + dedupe_ttl, outcome.result, now + result_ttl, dropped, key, token)
        return DONE + FENCE, args, None
    if isinstance(outcome, Aborted):
        return CANCELLED_END + FENCE, (now + dedupe_ttl, outcome.reason, key, token), None
    if isinstance(outcome, RetryAt):
        sql, args = RETRY_AT, (outcome.at, outcome.at, outcome.error)
    elif isinstance(outcome, NextOccurrence):
        sql, args = NEXT, (outcome.due, outcome.due, outcome.error)
    elif isinstance(outcome, Dead):
        sql, args = DEAD, (outcome.error, outcome.error_type, outcome.traceback)
    elif isinstance(outcome, Release):
        sql, args = RELEASE, ()
    else:
        raise TypeError(f"finish() takes an outcome (Done, RetryAt, ...), not {outcome!r}")
    return sql + FENCE + UNABORTED, (*args, key, token), (now + dedupe_ttl, ABORTED, key, token)


def abort_row(key: str, conn: sqlite3.Connection) -> int:
    """``SQLiteStore.abort`` in its transaction: 1 if the PENDING or FAILED row
    ``key`` was deleted, 2 if the RUNNING row got an abort request, else 0."""
    if conn.execute(ABORT, (key,)).rowcount == 1:
        return 1
    sql = "UPDATE duetime_entries SET abort_requested = 1 WHERE key = ? AND status = 1"
    return 2 if conn.execute(sql, (key,)).rowcount == 1 else 0


def entry_columns(version: int) -> str:
    """The columns of :data:`ENTRY` as a file of schema ``version`` has them
    (before version 3 there is no abort request: 0)."""
    return ENTRY if version >= 3 else ENTRY.replace("abort_requested", "0")


def insert_new(conn: sqlite3.Connection, params: list[tuple[Any, ...]]) -> bool:
    """The common case of ``add``, new keys only: one executemany, no lookups and
    no read-back.  True if every row was inserted; else nothing was (rolled back
    to a savepoint) and the caller goes row by row."""
    if len(params) == 1:
        return conn.execute(INSERT_NEW, params[0]).rowcount == 1  # nothing to undo if not
    conn.execute("SAVEPOINT duetime_add")
    before = conn.total_changes
    conn.executemany(INSERT_NEW, params)
    if conn.total_changes - before == len(params):
        conn.execute("RELEASE duetime_add")
        return True
    conn.execute("ROLLBACK TO duetime_add")
    conn.execute("RELEASE duetime_add")
    return False


def add_rows(
    params: list[tuple[Any, ...]],
    on_conflict: str,
    now: float,
    purge: bool,
    conn: sqlite3.Connection,
) -> list[Entry]:
    """``SQLiteStore.add`` in its transaction: insert the rows of :data:`INSERT`
    parameters ``params`` at ``now`` (expired tombstones purged first if
    ``purge``); the entries now stored under their keys.

    :raises EntryExists: a conflict under ``"error"``, or a RUNNING row under ``"replace"``
    """
    if purge:
        conn.execute("DELETE FROM duetime_entries WHERE expires_at <= ?", (now,))
    if len({p[0] for p in params}) == len(params) and insert_new(conn, params):
        return [new_entry(p) for p in params]
    insert = INSERT + (REPLACE if on_conflict == "replace" else " ON CONFLICT (key) DO NOTHING")
    insert += f" RETURNING {ENTRY}"
    out = []
    for p in params:
        got = conn.execute(insert, p).fetchone()
        if got is None and conn.execute(EXPIRED, (p[0], now)).rowcount:
            got = conn.execute(insert, p).fetchone()  # it was an expired tombstone
        if got is None:
            if on_conflict == "keep":
                got = conn.execute(
                    f"SELECT {ENTRY} FROM duetime_entries WHERE key = ?", (p[0],)
                ).fetchone()
            elif on_conflict == "replace":
                raise EntryExists(f"durable entry {p[0]!r} is running and cannot be replaced")
            else:
                raise EntryExists(f"a durable entry with key {p[0]!r} already exists")
        out.append(row_entry(got))
    return out


def new_entry(p: tuple[Any, ...]) -> Entry:
    """The entry a fresh insert of ``INSERT`` parameters ``p`` stored."""
    return made_entry(
        p[0], p[1], entry_args(p[2]), utc(p[3]), Status.PENDING, 1, None, 0, p[7], 0, False
    )


def data_version(conn: sqlite3.Connection) -> int:
    return int(conn.execute("PRAGMA data_version").fetchone()[0])


def read(sql: str, args: tuple[Any, ...], conn: sqlite3.Connection) -> list[Any]:
    """Rows of a query; text that is not UTF-8 is read again as :class:`BadText`."""
    try:
        return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError as exc:
        if "decode" not in str(exc):
            raise
    conn.text_factory = lenient_text
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.text_factory = str


def claim_rows(
    owner: str,
    limit: int,
    probe_at: float,
    clock: Callable[[], float],
    ttl: float,
    conn: sqlite3.Connection,
) -> tuple[list[Claim], bool]:
    """Claim up to ``limit`` rows for ``owner`` (``SQLiteStore.claim`` in its
    thread); also whether a row ended CANCELLED (tombstones kept ``ttl`` seconds).

    A read at ``probe_at`` first: an idle worker must not take the write lock
    for nothing.  Then, in one transaction: malformed rows dead-lettered
    (:data:`SWEEP`), lapsed rows with an abort request ended CANCELLED
    (:data:`ABORT_LAPSED`), poison rows dead-lettered, the rest claimed; a row
    read back that is still malformed is dead-lettered alone.
    """
    if not conn.execute(PROBE, (probe_at,)).fetchone()[0]:
        return [], False
    ended = False

    def claim(conn: sqlite3.Connection) -> list[Claim]:
        nonlocal ended
        # The time once the lock is held: the wait for it must not eat the leases.
        now = float(clock())
        at = {"now": now, "n": limit}
        conn.execute(SWEEP, at)
        ended = conn.execute(ABORT_LAPSED, {**at, "ttl": ttl, "aborted": ABORTED}).rowcount > 0
        conn.execute(POISON, (now, limit))
        (base,) = conn.execute("SELECT v FROM duetime_meta WHERE k = 'token'").fetchone()
        got = conn.execute(CLAIM_SQL, {**at, "owner": owner, "base": base}).fetchall()
        if got:
            conn.execute("UPDATE duetime_meta SET v = v + ? WHERE k = 'token'", (len(got),))
        got.sort(key=lambda r: r[11])  # by token: the order they were picked in
        claims, bad = [], []
        for r in got:
            c = claim_row(r)
            if isinstance(c, str):
                bad.append((r[14], r[0], c))
            else:
                claims.append(c)
        if bad:
            dead_letter_rows(conn, bad)
        record_claims(conn, now, claims)  # the activity ring (inspection)
        return claims

    # Text that is not UTF-8 must reach claim_row, not fail the whole fetch.
    conn.text_factory = lenient_text
    try:
        return transaction(conn, claim), ended
    finally:
        conn.text_factory = str
