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

from collections.abc import Callable
from dataclasses import fields
from datetime import datetime
from typing import Any, cast

from .._vocab import Status
from ._store import Entry, NewRow

__all__ = ["new_entry", "new_row"]


class _EntryTwin:
    __slots__ = Entry.__slots__

    def __init__(
        self,
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
    ) -> None:
        self.key = key
        self.task = task
        self.args = args
        self.due = due
        self.status = status
        self.attempt = attempt
        self.last_error = last_error
        self.occurrence = occurrence
        self.schedule = schedule
        self.deliveries = deliveries
        self.result = None
        self.error_type = None
        self.traceback = None
        self.abort_requested = abort_requested
        self.__class__ = Entry  # type: ignore[assignment]


class _NewRowTwin:
    __slots__ = NewRow.__slots__

    def __init__(
        self,
        key: str,
        task: str,
        payload: str,
        due: float | None,
        delay: float | None,
        lease: float | None,
        max_deliveries: int,
        schedule: str | None,
    ) -> None:
        self.key = key
        self.task = task
        self.payload = payload
        self.due = due
        self.delay = delay
        self.lease = lease
        self.max_deliveries = max_deliveries
        self.schedule = schedule
        self.__class__ = NewRow  # type: ignore[assignment]


#: ``Entry(key, task, args, due, status, attempt, last_error, occurrence,
#: schedule, deliveries, abort_requested=...)`` with no result, error type
#: or traceback (every argument positional and required).
new_entry = cast(
    "Callable[[str, str, tuple[Any, ...], datetime, Status, int, str | None, int,"
    " str | None, int, bool], Entry]",
    _EntryTwin,
)

#: ``NewRow(key, task, payload, due, delay, lease, max_deliveries, schedule)``
#: without NewRow's checks (every argument positional and required).
new_row = cast(
    "Callable[[str, str, str, float | None, float | None, float | None, int, str | None], NewRow]",
    _NewRowTwin,
)


def _same_fields(cls: type, twin: type, set_later: tuple[str, ...]) -> None:
    """Fail at import if ``cls`` gained, lost or reordered a field the twin sets."""
    names = tuple(f.name for f in fields(cls))
    code = vars(twin)["__init__"].__code__
    params = code.co_varnames[1 : code.co_argcount]
    if names != vars(cls)["__slots__"] or tuple(n for n in names if n not in set_later) != params:
        raise RuntimeError(f"duetime.durable._fast is out of date with {cls.__name__}'s fields")


_same_fields(Entry, _EntryTwin, ("result", "error_type", "traceback"))
_same_fields(NewRow, _NewRowTwin, ())
