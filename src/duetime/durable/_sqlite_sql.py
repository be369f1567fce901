"""The SQL of a SQLiteStore, and the functions that run it in the store's thread.

Status codes in the file are stable (part of the schema): 0 PENDING, 1 RUNNING,
2 COMPLETED, 3 FAILED.  ``visible_at`` is when a row becomes claimable (its due
time if PENDING, its lease end if RUNNING, else NULL).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar

from .._vocab import Status
from ._sqlite_rows import (
    PROBE,
    STATUS,
    SWEEP,
    WELL_FORMED,
    claim_row,
    dead_letter_rows,
    lenient_text,
)
from ._sqlite_stats import record_claims
from ._store import Claim, Entry, entry_args, utc

__all__ = [
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
    "data_version",
    "insert_new",
    "new_entry",
    "read",
    "run_ops",
    "transaction",
]

_T = TypeVar("_T")

CODE = {status: code for code, status in STATUS.items()}

ENTRY = "key, task, payload, status, due, attempt, last_error, occurrence, schedule, deliveries"
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
    " error_type = NULL, traceback = NULL WHERE duetime_entries.status != 1"
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
UNLEASE = "visible_at = NULL, lease_until = NULL, owner = NULL"
DONE = (
    f"UPDATE duetime_entries SET status = 2, {UNLEASE}, expires_at = ?, result = ?,"
    " result_until = ?, last_error = coalesce(?, last_error)"
)
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


def run_ops(ops: list[list[Any]], conn: sqlite3.Connection) -> list[bool]:
    return [conn.execute(sql, args).rowcount == 1 for sql, args, _ in ops]


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


def new_entry(p: tuple[Any, ...]) -> Entry:
    """The entry a fresh insert of ``INSERT`` parameters ``p`` stored."""
    return Entry(p[0], p[1], entry_args(p[2]), utc(p[3]), Status.PENDING, 1, None, 0, p[7], 0)


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
    owner: str, limit: int, probe_at: float, clock: Callable[[], float], conn: sqlite3.Connection
) -> list[Claim]:
    """Claim up to ``limit`` rows for ``owner`` (``SQLiteStore.claim`` in its thread).

    A read at ``probe_at`` first: an idle worker must not take the write lock
    for nothing.  Then, in one transaction: malformed rows dead-lettered
    (:data:`SWEEP`), poison rows dead-lettered, the rest claimed; a row read
    back that is still malformed is dead-lettered alone.
    """
    if not conn.execute(PROBE, (probe_at,)).fetchone()[0]:
        return []

    def claim(conn: sqlite3.Connection) -> list[Claim]:
        # The time once the lock is held: the wait for it must not eat the leases.
        now = float(clock())
        at = {"now": now, "n": limit}
        conn.execute(SWEEP, at)
        conn.execute(POISON, (now, limit))
        (base,) = conn.execute("SELECT v FROM duetime_meta WHERE k = 'token'").fetchone()
        got = conn.execute(CLAIM_SQL, {**at, "owner": owner, "base": base}).fetchall()
        if got:
            conn.execute("UPDATE duetime_meta SET v = v + ? WHERE k = 'token'", (len(got),))
        got.sort(key=lambda r: r[10])  # by token: the order they were picked in
        claims, bad = [], []
        for r in got:
            c = claim_row(r)
            if isinstance(c, str):
                bad.append((r[13], r[0], c))
            else:
                claims.append(c)
        if bad:
            dead_letter_rows(conn, bad)
        record_claims(conn, now, claims)  # the activity ring (inspection)
        return claims

    # Text that is not UTF-8 must reach claim_row, not fail the whole fetch.
    conn.text_factory = lenient_text
    try:
        return transaction(conn, claim)
    finally:
        conn.text_factory = str
