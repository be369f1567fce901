"""Reading PostgresStore rows that anything may have written: decoding that never raises.

The column types of ``{schema}.entries`` rule out text in a number column, but
another program (a script, a migration, a restore) can still write a due time
of NaN or infinity, a negative lease, an unknown status or a payload that is
not the codec's JSON; a database whose encoding is ``SQL_ASCII`` can even hold
text that is not UTF-8.  The claim statement dead-letters what SQL can see
(``_postgres_sql``); this module turns result rows (bytes per value, libpq's
text format) into :class:`Entry` and :class:`Claim` values, reports a
malformed row in listings with ``last_error`` starting with
:data:`~duetime.durable.MALFORMED`, and says why a claimed row cannot run.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from .._vocab import Status
from ._codec import decode_args
from ._fast import new_entry
from ._store import MALFORMED, Claim, Entry, entry_args

__all__ = ["CODE", "STATUS", "Raw", "claim", "detail", "entry", "number", "text"]

Raw = Sequence[bytes | None]

STATUS = {
    b"0": Status.PENDING,
    b"1": Status.RUNNING,
    b"2": Status.COMPLETED,
    b"3": Status.FAILED,
    b"4": Status.CANCELLED,
}
CODE = {
    Status.PENDING: 0,
    Status.RUNNING: 1,
    Status.COMPLETED: 2,
    Status.FAILED: 3,
    Status.CANCELLED: 4,
}

_MIN_TS, _MAX_TS = -62135596800.0, 253402300799.0  # 0001-01-01 .. 9999-12-31T23:59:59 UTC
_EPOCH = datetime.fromtimestamp(0, UTC)
_fromtimestamp = datetime.fromtimestamp
_SMALL = {b"0": 0, b"1": 1, b"2": 2}
_NO_ARGS: Mapping[str, tuple[Any, ...]] = {}


def text(raw: bytes | None) -> str:
    """Text of a value (escaped where it is not UTF-8; '' for NULL)."""
    if raw is None:
        return ""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("utf-8", "backslashreplace")


def _opt_text(raw: bytes | None) -> str | None:
    return None if raw is None else text(raw)


def number(raw: bytes | None) -> float:
    """A float8 value ('NaN' and 'Infinity' included).

    :raises ValueError: NULL or not a number
    """
    if raw is None:
        raise ValueError("NULL")
    return float(raw)


def _time(raw: bytes | None) -> datetime | None:
    try:
        ts = float(raw) if raw is not None else math.nan
    except ValueError:
        return None
    if not (_MIN_TS <= ts <= _MAX_TS):
        return None
    return datetime.fromtimestamp(ts, UTC)


def entry(r: Raw, at: int = 0, known: Mapping[str, tuple[Any, ...]] = _NO_ARGS) -> Entry:
    """The :class:`Entry` of an ``ENTRY`` row (its columns from index ``at`` of
    ``r``); never raises.  ``known`` maps payloads to their arguments (read
    once for many rows from :func:`~._codec.known_map`); others are decoded.

    A row that cannot be read as it is (text that is not UTF-8, an unknown
    status, a due time that is not a time) is reported with ``last_error``
    saying what is wrong (unless it was already dead-lettered as malformed),
    status FAILED if its status is unknown, ``due`` the epoch if unreadable.
    """
    cols = r[at : at + 11]
    key, task, payload, status, due, attempt, error, occurrence, schedule, deliveries, ab = cols
    try:
        if due is None or key is None or task is None or payload is None:
            raise ValueError
        ts = float(due.decode())
        if not _MIN_TS <= ts <= _MAX_TS:
            raise ValueError
        # Small counters (a new row's) from a table: int() of bytes costs more.
        text = payload.decode()
        return new_entry(
            key.decode(), task.decode(), known.get(text) or entry_args(text),
            _fromtimestamp(ts, UTC), STATUS[status or b""],
            _SMALL[attempt] if attempt in _SMALL else int(attempt or b""),
            None if error is None else error.decode(),
            _SMALL[occurrence] if occurrence in _SMALL else int(occurrence or b""),
            None if schedule is None else schedule.decode(),
            _SMALL[deliveries] if deliveries in _SMALL else int(deliveries or b""), ab == b"t",
        )  # fmt: skip
    except (UnicodeDecodeError, KeyError, ValueError):
        return _malformed(cols)


def _malformed(r: Raw) -> Entry:
    key, task, payload, status, due, attempt, error, occurrence, schedule, deliveries, ab = r[:11]
    problems = []
    for name, value in (("key", key), ("task", task), ("payload", payload)):
        if value is not None and text(value) != value.decode("utf-8", "ignore"):
            problems.append(f"{name} is not UTF-8 text")
    if status not in STATUS:
        problems.append(f"status {text(status)[:20]} is unknown")
    when = _time(due)
    if when is None:
        problems.append(f"due {text(due)[:40]} is not a time (epoch seconds, years 1-9999)")
    shown = _opt_text(error)
    if shown is None or not shown.startswith(MALFORMED):
        shown = MALFORMED + ("; ".join(problems) or "unreadable")
    try:
        args = entry_args(text(payload))
    except Exception:  # entry_args never raises; belt and braces for a listing
        args = ()
    return Entry(
        key=text(key),
        task=text(task),
        args=args,
        due=_EPOCH if when is None else when,
        status=STATUS.get(status or b"", Status.FAILED),
        attempt=_int(attempt, 1),
        last_error=shown,
        occurrence=_int(occurrence, 0),
        schedule=_opt_text(schedule),
        deliveries=_int(deliveries, 0),
        abort_requested=ab == b"t",
    )


def _int(raw: bytes | None, default: int) -> int:
    try:
        return int(raw) if raw is not None else default
    except ValueError:
        return default


def detail(found: Entry, d: Raw, now: float) -> Entry:
    """``found`` with its ``DETAIL`` columns: the result while ``result_until`` is
    later than ``now``, the error type and traceback.  Never raises."""
    result, until, error_type, tb = d[:4]
    try:
        kept = text(result) if result is not None and number(until) > now else None
    except ValueError:
        kept = None
    return replace(found, result=kept, error_type=_opt_text(error_type), traceback=_opt_text(tb))


def claim(r: Raw) -> Claim | str:
    """The :class:`Claim` of a claimed row (``ENTRY`` then token, lease end, lease),
    or why it cannot run (what the claim statement cannot see: text that is
    not UTF-8, a payload the durable codec cannot decode)."""
    key, task, payload, _s, due, attempt, error, occurrence, schedule, deliveries, ab = r[:11]
    try:
        when = _time(due)
        if when is None or key is None or task is None or payload is None:
            raise ValueError
        body = payload.decode()
        try:
            args = decode_args(body)
        except Exception as exc:  # the codec's own errors, or anything a payload provokes
            return f"{MALFORMED}payload cannot be decoded ({type(exc).__name__})"
        found = new_entry(
            key.decode(), task.decode(), args, when, Status.RUNNING,
            int(attempt or b""), None if error is None else error.decode(),
            int(occurrence or b""), None if schedule is None else schedule.decode(),
            int(deliveries or b""), ab == b"t",
        )  # fmt: skip
        return Claim(found, body, int(r[11] or b""), number(r[12]), number(r[13]))
    except (UnicodeDecodeError, ValueError):
        why = entry(r).last_error
        return why if why is not None and why.startswith(MALFORMED) else MALFORMED + "unreadable"
