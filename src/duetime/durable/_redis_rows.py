"""RedisStore's side of a row: decoding each reply of the scripts on its own.

A reply is read row by row and never raises for one row: a row that cannot be
read becomes a FAILED :class:`Entry` that says why (the Lua scripts set malformed
rows aside first, so this is the second line of defence).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from .._vocab import Status
from ._fast import new_entry
from ._store import (
    RESULT_DROPPED,
    Aborted,
    Dead,
    Done,
    Entry,
    NewRow,
    NextOccurrence,
    Outcome,
    Release,
    RetryAt,
    entry_args,
    utc,
)

__all__ = ["add_args", "arg", "describe", "entry", "read", "row", "text", "unreadable"]
__all__ += ["number", "outcome_args", "seconds", "string", "timestr"]

_STATUSES = {s.value: s for s in Status}


def text(raw: bytes | str) -> str:
    """Bytes from Redis as a str.  Keys and rows are UTF-8; surrogateescape keeps
    any other byte, so a key read here goes back (through :func:`arg`) as the
    same bytes."""
    return raw if isinstance(raw, str) else raw.decode("utf-8", "surrogateescape")


def arg(value: str | int | bytes) -> bytes:
    """A key or script argument as the bytes Redis gets (see :func:`text`);
    bytes as they are."""
    if type(value) is bytes:
        return value
    return str(value).encode("utf-8", "surrogateescape")


_json_str = json.encoder.encode_basestring_ascii  # what json.dumps writes for a str
_raw_decode = json.JSONDecoder().raw_decode  # json.loads' decoder


def add_args(rows: Sequence[NewRow], default_lease: float) -> list[bytes]:
    """The ADD script's arguments for ``rows`` (checked NewRows), as bytes: per
    row its key, the JSON of its fields (as ``json.dumps`` writes
    ``{"t": ..., "p": ..., "l": ..., "md": ...}``, and ``"sch"`` if any), its due
    time and its delay ('' for the one not given)."""
    out: list[bytes] = []
    # A batch's rows mostly share all but the key and payload: the JSON around
    # the payload, and a time's text, are written again only when they change.
    shared: tuple[str, float | None, int, str | None] | None = None
    head = tail = ""
    when_was: float | None = None
    when_text = b""
    for row in rows:
        now = (row.task, row.lease, row.max_deliveries, row.schedule)
        if now != shared:
            shared = now
            lease = timestr(default_lease if row.lease is None else row.lease)
            head = f'{{"t": {_json_str(row.task)}, "p": '
            tail = f', "l": {_json_str(lease)}, "md": {int(row.max_deliveries)}'
            tail += "}" if row.schedule is None else f', "sch": {_json_str(row.schedule)}}}'
        when = row.delay if row.due is None else row.due
        if when is not when_was:
            when_was, when_text = when, timestr(when).encode()  # type: ignore[arg-type]
        out += [
            arg(row.key),
            (head + _json_str(row.payload) + tail).encode(),
            b"" if row.due is None else when_text,
            when_text if row.due is None else b"",
        ]
    return out


def string(row: dict[str, Any], name: str, *, optional: bool = False) -> Any:
    """The str field ``name`` of a decoded row (None allowed if ``optional``).

    :raises ValueError: missing or not a str
    """
    value = row.get(name)
    if (value is None and optional) or isinstance(value, str):
        return value
    raise ValueError(f"field {name!r} is not a str")


def _int(row: dict[str, Any], name: str) -> int:
    value = row.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float) or value != int(value):
        raise ValueError(f"field {name!r} is not an integer")
    return int(value)


def number(row: dict[str, Any], name: str) -> float:
    """The finite number field ``name`` of a decoded row (a JSON number or a decimal str).

    :raises ValueError: missing, not a number or not finite
    """
    value = row.get(name)
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError(f"field {name!r} is not a number")
    try:
        result = float(value)
    except ValueError:
        raise ValueError(f"field {name!r} is not a number") from None
    if not math.isfinite(result):
        raise ValueError(f"field {name!r} is not finite")
    return result


def row(raw: bytes | str) -> dict[str, Any]:
    """A row's JSON as a dict.

    :raises ValueError: not a JSON object
    """
    s = text(raw)
    try:  # a reply's rows have no white space around: no need for loads' checks
        value, end = _raw_decode(s)
    except ValueError:
        end = -1
    if end != len(s):
        value = json.loads(s)  # what it says of white space, and its error
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value


def entry(row: dict[str, Any]) -> Entry:
    """The Entry of a decoded row (the scripts checked it; this checks again).

    :raises ValueError: a missing field or one of the wrong type or range
    """
    # The common row (as the scripts write it, no abort request), checked inline;
    # anything else goes the checked way below, which says what is wrong.
    get = row.get
    k, t, p, d, a, o, dl = get("k"), get("t"), get("p"), get("d"), get("a"), get("o"), get("dl")
    e, sch, status = get("e"), get("sch"), _STATUSES.get(get("s"))  # type: ignore[arg-type]
    if (
        type(k) is str
        and type(t) is str
        and type(p) is str
        and type(d) is str
        and type(a) is int
        and type(o) is int
        and type(dl) is int
        and status is not None
        and (e is None or type(e) is str)
        and (sch is None or type(sch) is str)
        and "ab" not in row
    ):
        try:
            ts = float(d)
        except ValueError:
            ts = math.nan
        if ts - ts == 0.0:  # finite
            return new_entry(k, t, entry_args(p), utc(ts), status, a, e, o, sch, dl, False)
    status = _STATUSES.get(row.get("s"))  # type: ignore[arg-type]
    if status is None:
        raise ValueError("field 's' is not a status")
    abort = row.get("ab")
    if abort is not None and (type(abort) is not int or abort != 1 or status is not Status.RUNNING):
        raise ValueError("field 'ab' is not an abort request (1, on a RUNNING row)")
    return new_entry(
        string(row, "k"),
        string(row, "t"),
        entry_args(string(row, "p")),
        utc(number(row, "d")),
        status,
        _int(row, "a"),
        string(row, "e", optional=True),
        _int(row, "o"),
        string(row, "sch", optional=True),
        _int(row, "dl"),
        abort == 1,
    )


def read(key: bytes | str, raw: bytes | str, now: float | None = None) -> Entry:
    """The Entry of one row; a row that cannot be read is reported as a FAILED
    entry with the reason instead of raising (one bad row never hides the others).

    With ``now`` (the store's time, for ``get``) the entry carries its result
    (while ``ru`` is later than ``now``), error type and traceback: each only
    if it is text (a row another program wrote may hold anything there)."""
    try:
        fields = row(raw)
        found = entry(fields)
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        return unreadable(text(key), exc)
    if now is None:
        return found
    result, until = fields.get("r"), fields.get("ru")
    try:
        kept = type(result) is str and type(until) is str and float(until) > now
    except ValueError:
        kept = False
    error_type, tb = fields.get("et"), fields.get("tb")
    return replace(
        found,
        result=result if kept else None,
        error_type=error_type if type(error_type) is str else None,
        traceback=tb if type(tb) is str else None,
    )


def unreadable(key: str, exc: BaseException) -> Entry:
    """The FAILED Entry reported for the row under ``key`` that ``exc`` stopped."""
    return Entry(
        key=key,
        task="",
        args=(),
        due=utc(0.0),
        status=Status.FAILED,
        last_error=f"malformed row: {type(exc).__name__}: {exc}"[:300],
    )


def describe(exc: BaseException) -> str:
    """An exception as one line for an error message: its type and first line."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def seconds(value: object, what: str, *, zero: bool = False) -> float:
    """A number of seconds given as an option, checked.

    :raises TypeError: not a number
    :raises ValueError: not finite, negative, or 0 unless ``zero``
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number of seconds, not {type(value).__name__}")
    if not math.isfinite(value) or value < 0 or (value == 0 and not zero):
        raise ValueError(f"{what} must be a finite number {'>=' if zero else '>'} 0, got {value!r}")
    return float(value)


def timestr(value: float) -> str:
    """A time as a script argument."""
    # repr round-trips a float exactly; Redis parses it back with strtod.
    return repr(float(value))


def outcome_args(outcome: Outcome) -> tuple[str, str, str, str, str, str]:
    """The FINISH script's arguments of an outcome: its kind, a time or '', an
    error or '', a result or '', an error type or '', a traceback or ''.

    :raises TypeError: not an outcome
    """
    match outcome:
        case Done(result=res, dropped=dropped):
            err = "" if dropped is None else RESULT_DROPPED + dropped
            return "done", "", err, res or "", "", ""
        case RetryAt(at=when, error=err):
            return "retry", timestr(when), err, "", "", ""
        case NextOccurrence(due=when, error=err):
            return "next", timestr(when), err or "", "", "", ""
        case Dead(error=err, error_type=etype, traceback=tb):
            return "dead", "", err, "", etype or "", tb or ""
        case Release():
            return "release", "", "", "", "", ""
        case Aborted(reason=why):
            return "abort", "", why, "", "", ""
    raise TypeError(f"not an outcome: {outcome!r}")
