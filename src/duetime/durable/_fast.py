"""Entry and NewRow values made without their dataclass ``__init__``, for the
paths that make thousands per call: the entries a store returns for the rows
it just wrote, and the rows ``defer_many`` hands it.

Both are frozen dataclasses with slots, whose generated ``__init__`` sets
each field through ``object.__setattr__`` (a call through a slot wrapper per
field: most of the cost of making one).  Here an instance of a twin class,
with the same slots and no frozen ``__setattr__``, gets its fields by plain
attribute stores and then becomes an :class:`Entry` (or :class:`NewRow`) by
``__class__`` assignment, which CPython allows between classes of the same
layout.  The object is the one the dataclass constructor makes from the same
values: equal to it, hashing alike, frozen from then on.  Nothing is checked
here: a caller passes values the constructor would accept as they are
(:func:`new_row` skips ``NewRow``'s own checks).
"""

from __future__ import annotations

from dataclasses import fields
from datetime import datetime
from types import FunctionType
from typing import Any

from .._vocab import Status
from ._store import Entry, NewRow

__all__ = ["new_entry", "new_row"]


class _EntrySlots:
    """:class:`Entry`'s layout, without its frozen ``__setattr__``."""

    __slots__ = Entry.__slots__
    key: str
    task: str
    args: tuple[Any, ...]
    due: datetime
    status: Status
    attempt: int
    last_error: str | None
    occurrence: int
    schedule: str | None
    deliveries: int
    result: str | None
    error_type: str | None
    traceback: str | None
    abort_requested: bool


class _NewRowSlots:
    """:class:`NewRow`'s layout, without its frozen ``__setattr__``."""

    __slots__ = NewRow.__slots__
    key: str
    task: str
    payload: str
    due: float | None
    delay: float | None
    lease: float | None
    max_deliveries: int
    schedule: str | None


def new_entry(
    key: str,
    task: str,
    args: tuple[Any, ...],
    due: datetime,
    status: Status,
    attempt: int,
    last_error: str | None,
    occurrence: int,
    schedule: str | None,
    deliveries: int,
    abort_requested: bool,
) -> Entry:
    """``Entry(key, task, args, due, status, attempt, last_error, occurrence,
    schedule, deliveries, abort_requested=abort_requested)``: no result, error
    type or traceback."""
    e = _EntrySlots()  # a class without __init__: the cheapest call that makes one
    e.key = key
    e.task = task
    e.args = args
    e.due = due
    e.status = status
    e.attempt = attempt
    e.last_error = last_error
    e.occurrence = occurrence
    e.schedule = schedule
    e.deliveries = deliveries
    e.result = None
    e.error_type = None
    e.traceback = None
    e.abort_requested = abort_requested
    e.__class__ = Entry  # type: ignore[assignment]
    return e  # type: ignore[return-value]


def new_row(
    key: str,
    task: str,
    payload: str,
    due: float | None,
    delay: float | None,
    lease: float | None,
    max_deliveries: int,
    schedule: str | None,
) -> NewRow:
    """``NewRow(key, task, payload, due, delay, lease, max_deliveries,
    schedule)`` without NewRow's checks."""
    r = _NewRowSlots()
    r.key = key
    r.task = task
    r.payload = payload
    r.due = due
    r.delay = delay
    r.lease = lease
    r.max_deliveries = max_deliveries
    r.schedule = schedule
    r.__class__ = NewRow  # type: ignore[assignment]
    return r  # type: ignore[return-value]


def _same_fields(cls: type, make: FunctionType, set_later: tuple[str, ...]) -> None:
    """Fail at import if ``cls`` gained, lost or reordered a field that ``make`` sets."""
    names = tuple(f.name for f in fields(cls))
    params = make.__code__.co_varnames[: make.__code__.co_argcount]
    if names != vars(cls)["__slots__"] or tuple(n for n in names if n not in set_later) != params:
        raise RuntimeError(f"duetime.durable._fast is out of date with {cls.__name__}'s fields")


_same_fields(Entry, new_entry, ("result", "error_type", "traceback"))  # type: ignore[arg-type]
_same_fields(NewRow, new_row, ())  # type: ignore[arg-type]
