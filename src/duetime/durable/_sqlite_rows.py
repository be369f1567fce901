"""Reading SQLiteStore rows that anything may have written: checks and decoding that never raise.

A duetime store file can be written by anything that opens it (a script, a bad
restore, another tool), so a row may hold a value of the wrong type, an
infinite or out-of-range time, an unknown status or text that is not UTF-8.
Such a row must never stop a claim batch nor make a listing raise:

- the claim transaction first dead-letters (FAILED, ``last_error`` starting
  ``malformed row:`` and saying what is wrong) the malformed rows among the
  ones it would pick, with one SQL statement (:data:`SWEEP`), then claims the
  rest; rows it reads back are decoded by :func:`claim_row`, and one that is
  still wrong (text that is not UTF-8) is dead-lettered on its own, in the
  same transaction, by :func:`dead_letter_rows`;
- a listing decodes each row with :func:`entry`, which reports a malformed
  row (as FAILED if its status is unknown) with the reason in ``last_error``.

A key that is not valid text is renamed when its row is dead-lettered (to
``malformed-row-<rowid>``, or its UTF-8 decoding with ``\\x..`` escapes), so
the row can be listed, retried and deleted through the API.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from .._vocab import Status
from ._codec import MAX_PAYLOAD
from ._fast import new_entry
from ._store import MALFORMED, Claim, Entry, entry_args, utc

__all__ = [
    "WELL_FORMED",
    "BadText",
    "SWEEP",
    "claim_row",
    "dead_letter_rows",
    "entry",
    "lenient_text",
]

STATUS = {
    0: Status.PENDING,
    1: Status.RUNNING,
    2: Status.COMPLETED,
    3: Status.FAILED,
    4: Status.CANCELLED,
}

_MAXF = "1.7976931348623157e308"  # the largest finite double: infinities and text sort above
_MIN_TS, _MAX_TS = -62135596800.0, 253402300799.0  # 0001-01-01 .. 9999-12-31T23:59:59 UTC


def _num(col: str) -> str:
    return f"typeof({col}) NOT IN ('integer', 'real')"


def _int(col: str) -> str:
    return f"typeof({col}) != 'integer'"


#: NULL for a well-formed claimable row, else why it is not (SQL expression).
_MALFORMED = f"""CASE
    WHEN typeof(key) != 'text' THEN 'key is ' || typeof(key) || ', not text'
    WHEN typeof(task) != 'text' OR task = '' THEN 'task is not a task name'
    WHEN typeof(payload) != 'text' THEN 'payload is ' || typeof(payload) || ', not JSON text'
    WHEN {_num("due")} OR NOT (due BETWEEN {_MIN_TS} AND {_MAX_TS})
        THEN 'due ' || substr(quote(due), 1, 40) || ' is not a time (epoch seconds, years 1-9999)'
    WHEN {_num("visible_at")} OR abs(visible_at) > {_MAXF} THEN 'visible_at is not a number'
    WHEN {_num("lease")} OR NOT (lease > 0 AND lease <= {_MAXF})
        THEN 'lease ' || substr(quote(lease), 1, 40) || ' is not a positive number of seconds'
    WHEN {_int("status")} OR status NOT IN (0, 1)
        THEN 'status ' || substr(quote(status), 1, 40) || ' is not PENDING (0) or RUNNING (1)'
    WHEN {_int("attempt")} OR attempt < 1 THEN 'attempt is not an integer >= 1'
    WHEN {_int("occurrence")} OR occurrence < 0 THEN 'occurrence is not an integer >= 0'
    WHEN {_int("deliveries")} OR deliveries < 0 THEN 'deliveries is not an integer >= 0'
    WHEN {_int("max_deliveries")} OR max_deliveries < 1 THEN 'max_deliveries is not an integer >= 1'
    WHEN {_int("token")} THEN 'token is not an integer'
    WHEN typeof(schedule) NOT IN ('text', 'null') THEN 'schedule is not text'
    WHEN typeof(last_error) NOT IN ('text', 'null') THEN 'last_error is not text'
    WHEN length(payload) > {MAX_PAYLOAD} THEN 'payload is over {MAX_PAYLOAD // 1024} KiB'
    WHEN {_int("abort_requested")} OR abort_requested NOT IN (0, 1)
        THEN 'abort_requested ' || substr(quote(abort_requested), 1, 40) || ' is not 0 or 1'
    WHEN abort_requested = 1 AND status != 1 THEN 'abort_requested on a row that is not RUNNING'
END"""

#: True for a row a claim may pick (the claim must not pick a row past the sweep's window).
WELL_FORMED = f"({_MALFORMED}) IS NULL"

#: Dead-letter the malformed rows among the ``:n`` a claim at ``:now`` would
#: pick, and every row whose visible_at is not a finite number (it would never
#: be picked).  A key that is not text is renamed (OR IGNORE: on a clash the
#: row is left as it is and :func:`claim_row` catches it).
SWEEP = f"""
UPDATE OR IGNORE duetime_entries SET status = 3, visible_at = NULL, owner = NULL,
    lease_until = NULL, last_error = '{MALFORMED}' || ({_MALFORMED}),
    key = CASE WHEN typeof(key) = 'text' THEN key ELSE 'malformed-row-' || rowid END
WHERE rowid IN (
    SELECT rowid FROM (
        SELECT rowid, visible_at FROM duetime_entries
        WHERE visible_at <= :now ORDER BY visible_at LIMIT :n)
    UNION ALL
    SELECT rowid FROM duetime_entries WHERE visible_at > {_MAXF} LIMIT :n)
AND ({_MALFORMED}) IS NOT NULL
"""

#: Is there a row a claim at ``?`` would pick or sweep?  (Two index probes.)
PROBE = (
    "SELECT EXISTS (SELECT 1 FROM duetime_entries WHERE visible_at <= ?)"
    f" OR EXISTS (SELECT 1 FROM duetime_entries WHERE visible_at > {_MAXF})"
)

#: When the earliest row becomes claimable; a row whose visible_at is not a
#: finite number counts as claimable now (the next claim sweeps it).
HEAD = (
    "SELECT (SELECT min(visible_at) FROM duetime_entries WHERE visible_at <= ?),"
    f" EXISTS (SELECT 1 FROM duetime_entries WHERE visible_at > {_MAXF})"
)
HEAD_ARG = float(_MAXF)


class BadText(str):
    """Stored text that is not UTF-8, decoded with ``\\x..`` escapes."""

    __slots__ = ()


def lenient_text(raw: bytes) -> str:
    """A ``text_factory`` that never raises: text that is not UTF-8 becomes a :class:`BadText`."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return BadText(raw.decode("utf-8", "backslashreplace"))


def _is_text(value: Any) -> bool:
    return type(value) is str


def _opt_text(value: Any) -> bool:
    return value is None or type(value) is str


def _problems(r: Sequence[Any]) -> list[str]:
    """What is wrong with an ``_ENTRY`` row, for a listing (empty if nothing)."""
    key, task, payload, status, due, attempt, last_error, occurrence, schedule, deliveries = r[:10]
    out = []
    if r[10] not in (0, 1) or type(r[10]) is not int:
        out.append(f"abort_requested {_short(r[10])} is not 0 or 1")
    elif r[10] == 1 and status != 1:
        out.append("abort_requested on a row that is not RUNNING")
    for name, value in (("key", key), ("task", task), ("payload", payload)):
        if not _is_text(value):
            out.append(f"{name} is not {'UTF-8 ' if isinstance(value, BadText) else ''}text")
    for name, value in (("schedule", schedule), ("last_error", last_error)):
        if not _opt_text(value):
            out.append(f"{name} is not UTF-8 text")
    if status not in STATUS or type(status) is not int:
        out.append(f"status {_short(status)} is unknown")
    if _timestamp(due) is None:
        out.append(f"due {_short(due)} is not a time (epoch seconds, years 1-9999)")
    for name, value in (("attempt", attempt), ("occurrence", occurrence)):
        if type(value) is not int:
            out.append(f"{name} is not an integer")
    if type(deliveries) is not int:
        out.append("deliveries is not an integer")
    return out


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _timestamp(value: Any) -> float | None:
    if type(value) not in (int, float) or not (_MIN_TS <= value <= _MAX_TS):
        return None
    return float(value)


def _text(value: Any) -> str:
    if type(value) is str:
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    return repr(value)


def _well_formed(r: Sequence[Any]) -> bool:
    """Whether an ``_ENTRY`` row reads as an Entry as it is (the common case, checked cheaply)."""
    key, task, payload, status, due, attempt, last_error, occurrence, schedule, deliveries = r[:10]
    return (
        type(key) is str
        and type(task) is str
        and type(payload) is str
        and type(attempt) is int
        and type(occurrence) is int
        and type(deliveries) is int
        and _opt_text(schedule)
        and _opt_text(last_error)
        and type(status) is int
        and status in STATUS
        and _timestamp(due) is not None
        and (r[10] == 0 or (r[10] == 1 and status == 1))
        and type(r[10]) is int
    )


def entry(r: Sequence[Any]) -> Entry:
    """The :class:`Entry` of an ``_ENTRY`` row; never raises.

    A malformed row is reported with ``last_error`` saying what is wrong
    (unless it was already dead-lettered as malformed), status FAILED if its
    status is unknown, ``args`` ``()`` and ``due`` the epoch if unreadable.
    """
    key, task, payload, status, due, attempt, last_error, occurrence, schedule, deliveries = r[:10]
    if _well_formed(r):
        return new_entry(
            key, task, entry_args(payload), utc(due), STATUS[status], attempt,
            last_error, occurrence, schedule, deliveries, r[10] == 1,
        )  # fmt: skip
    problems = _problems(r)
    error = _text(last_error) if last_error is not None else None
    if error is None or not error.startswith(MALFORMED):
        error = MALFORMED + "; ".join(problems)
    ts = _timestamp(due)
    return Entry(
        key=_text(key),
        task=_text(task),
        args=entry_args(payload) if type(payload) is str else (),
        due=utc(0.0 if ts is None else ts),
        status=STATUS.get(status, Status.FAILED) if type(status) is int else Status.FAILED,
        attempt=attempt if type(attempt) is int else 1,
        last_error=error,
        occurrence=occurrence if type(occurrence) is int else 0,
        schedule=schedule if type(schedule) is str else None,
        deliveries=deliveries if type(deliveries) is int else 0,
        abort_requested=type(r[10]) is int and r[10] == 1 and status == 1,
    )


def with_detail(found: Entry, detail: Sequence[Any], now: float) -> Entry:
    """``found`` with the result and failure columns (``DETAIL``) of its row: the
    result while ``result_until`` is later than ``now``; a column that is not
    text (a row another program wrote) is left out.  Never raises."""
    result, until, error_type, tb = detail
    kept = result if type(result) is str and type(until) in (int, float) and until > now else None
    return replace(
        found,
        result=kept,
        error_type=error_type if type(error_type) is str else None,
        traceback=tb if type(tb) is str else None,
    )


def claim_row(r: Sequence[Any]) -> Claim | str:
    """The :class:`Claim` of a ``_CLAIM`` row (the claim just set its status,
    token and lease), or why the row is malformed."""
    token, lease_until, lease = r[11], r[12], r[13]
    if _well_formed(r) and type(token) is int and type(lease_until) is type(lease) is float:
        return Claim(entry(r), r[2], token, lease_until, lease)
    problems = _problems(r)
    if (
        type(token) is not int
        or type(lease_until) not in (int, float)
        or type(lease)
        not in (
            int,
            float,
        )
    ):
        problems.append("lease is not a number")
    if problems:
        return MALFORMED + "; ".join(problems)
    return Claim(entry(r), r[2], token, float(lease_until), float(lease))


def dead_letter_rows(conn: sqlite3.Connection, bad: Sequence[tuple[int, Any, str]]) -> None:
    """Dead-letter ``(rowid, key, reason)`` rows; a key that is not valid text
    is renamed to its escaped decoding (kept as it is on a clash)."""
    for rowid, key, reason in bad:
        conn.execute(
            "UPDATE duetime_entries SET status = 3, visible_at = NULL, owner = NULL,"
            " lease_until = NULL, last_error = ? WHERE rowid = ?",
            (reason, rowid),
        )
        if type(key) is not str:
            conn.execute(
                "UPDATE OR IGNORE duetime_entries SET key = ? WHERE rowid = ?",
                (_text(key), rowid),
            )
