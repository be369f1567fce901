"""The values of a store's inspection queries (what a dashboard asks a store).

Four queries, each answered by the store itself and bounded in cost however
many rows it holds (:class:`~duetime.durable.Store` declares them):

- ``counts()``: how many entries per task and status (:class:`Counts`), from
  counters or an index the store keeps, never a listing;
- ``page(query)``: one page of entries matching an :class:`EntryQuery`, in
  ``(due, key)`` order, with a keyset cursor to the next page (:class:`Page`);
- ``activity(minutes)``: per-minute starts, finishes and start lateness over
  the recent past (:class:`Minute`), from counters the claim and finish paths
  bump once per batch;
- ``inspect(key)``: everything the store knows of one entry
  (``EntryDetail``, in ``._store`` with ``Page``: both carry an ``Entry``):
  its lease holder, lease end, fencing token, raw payload, besides what
  ``get`` reports.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

from .._vocab import Status
from ._series import parse_schedule

__all__ = [
    "ACTIVITY_MINUTES",
    "MAX_PAGE",
    "Counts",
    "EntryQuery",
    "Minute",
    "check_minutes",
    "key_prefix_end",
    "minutes_window",
    "series_times",
]

#: The most entries one :meth:`Store.page` call returns.
MAX_PAGE = 1000
#: How many minutes of :meth:`Store.activity` a store keeps (the ring's length).
ACTIVITY_MINUTES = 60


@dataclass(frozen=True, slots=True)
class Counts:
    """How many entries a store holds, per task and status.

    :ivar groups: ``(task, status, count)`` for every pair with a count above
        zero, sorted by task then status
    """

    groups: tuple[tuple[str, Status, int], ...] = ()

    @classmethod
    def of(cls, pairs: Iterable[tuple[str, Status, int]]) -> Counts:
        """Counts from ``(task, status, count)`` triples (summed, zeros dropped)."""
        sums: dict[tuple[str, Status], int] = {}
        for task, status, n in pairs:
            sums[(task, status)] = sums.get((task, status), 0) + int(n)
        order = list(Status)
        groups = sorted(
            ((t, s, n) for (t, s), n in sums.items() if n > 0),
            key=lambda g: (g[0], order.index(g[1])),
        )
        return cls(tuple(groups))

    @property
    def total(self) -> int:
        """Every entry counted."""
        return sum(n for _, _, n in self.groups)

    @property
    def by_status(self) -> dict[Status, int]:
        """Entries per status (every status present, zeros included), in Status order."""
        out = dict.fromkeys(Status, 0)
        for _, status, n in self.groups:
            out[status] += n
        return out

    @property
    def by_task(self) -> dict[str, dict[Status, int]]:
        """Entries per task, then per status (only the statuses it has)."""
        out: dict[str, dict[Status, int]] = {}
        for task, status, n in self.groups:
            out.setdefault(task, {})[status] = n
        return out


@dataclass(frozen=True, slots=True)
class EntryQuery:
    """Which entries :meth:`Store.page` returns, and where the page starts.

    Every filter given must hold.  Entries come in ``(due, key)`` order; a page
    starts strictly after the ``after`` cursor (``Page.next`` of the page before).

    :ivar status: only entries with this status
    :ivar task: only entries of this task (exact name)
    :ivar key_prefix: only keys that start with it ("" for any)
    :ivar due_from: only entries due at or after it (epoch seconds)
    :ivar due_before: only entries due before it (epoch seconds)
    :ivar series: True for recurring series only, False for one-shot entries
        only, None for both
    :ivar after: the cursor ``(due, key)`` to start after, or None for the first page
    :ivar limit: at most this many entries (1 to :data:`MAX_PAGE`)
    :raises TypeError: a field of the wrong type
    :raises ValueError: a limit out of range, a non-finite time, a due range
        that is empty the wrong way round
    """

    status: Status | None = None
    task: str | None = None
    key_prefix: str = ""
    due_from: float | None = None
    due_before: float | None = None
    series: bool | None = None
    after: tuple[float, str] | None = None
    limit: int = 50

    def __post_init__(self) -> None:
        if self.status is not None:
            object.__setattr__(self, "status", Status(self.status))
        if self.task is not None and type(self.task) is not str:
            raise TypeError(
                f"EntryQuery.task must be a str or None, not {type(self.task).__name__}"
            )
        if type(self.key_prefix) is not str:
            raise TypeError(
                f"EntryQuery.key_prefix must be a str, not {type(self.key_prefix).__name__}"
            )
        for name in ("due_from", "due_before"):
            value = getattr(self, name)
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise TypeError(f"EntryQuery.{name} must be a number, not {type(value).__name__}")
            if not math.isfinite(value):
                raise ValueError(f"EntryQuery.{name} must be finite, not {value!r}")
            object.__setattr__(self, name, float(value))
        if self.after is not None:
            if (
                not isinstance(self.after, tuple)
                or len(self.after) != 2
                or isinstance(self.after[0], bool)
                or not isinstance(self.after[0], int | float)
                or type(self.after[1]) is not str
            ):
                raise TypeError("EntryQuery.after must be a (due, key) tuple or None")
            if not math.isfinite(self.after[0]):
                raise ValueError(f"EntryQuery.after due must be finite, not {self.after[0]!r}")
            object.__setattr__(self, "after", (float(self.after[0]), self.after[1]))
        if self.series is not None and not isinstance(self.series, bool):
            raise TypeError(f"EntryQuery.series must be a bool or None, not {self.series!r}")
        if isinstance(self.limit, bool) or not isinstance(self.limit, int):
            raise TypeError(f"EntryQuery.limit must be an int, not {type(self.limit).__name__}")
        if not 1 <= self.limit <= MAX_PAGE:
            raise ValueError(f"EntryQuery.limit must be 1 to {MAX_PAGE}, not {self.limit}")

    def matches(
        self, task: str, status: Status, key: str, due: float, schedule: str | None = None
    ) -> bool:
        """True if an entry with these fields passes every filter and lies after the cursor."""
        if self.series is not None and self.series != (schedule is not None):
            return False
        if self.status is not None and status is not self.status:
            return False
        if self.task is not None and task != self.task:
            return False
        if not key.startswith(self.key_prefix):
            return False
        if self.due_from is not None and due < self.due_from:
            return False
        if self.due_before is not None and due >= self.due_before:
            return False
        return self.after is None or (due, key) > self.after


@dataclass(frozen=True, slots=True)
class Minute:
    """What happened in one minute of the store's clock (:meth:`Store.activity`).

    :ivar start: the minute's start, epoch seconds (a multiple of 60)
    :ivar started: claims (runs handed to workers, re-deliveries included)
    :ivar completed: runs that ended COMPLETED (a series occurrence that
        completed counts here too)
    :ivar failed: runs dead-lettered (FAILED), and series occurrences that
        failed (their retries ran out; the series moved on)
    :ivar retried: runs that raised and were set to retry

    A run an abort ended (CANCELLED) counts in none of ``completed``,
    ``failed``, ``retried``; its claim counts in ``started``.
    :ivar lateness_total: the sum over the claims of how late each started
        (claim time minus due time, seconds, never negative)
    :ivar lateness_max: the largest of those
    """

    start: float
    started: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0
    lateness_total: float = 0.0
    lateness_max: float = 0.0

    @property
    def finished(self) -> int:
        """Runs that ended this minute, whatever the outcome."""
        return self.completed + self.failed + self.retried

    @property
    def lateness_mean(self) -> float:
        """The mean start lateness of the claims (0 with none)."""
        return self.lateness_total / self.started if self.started else 0.0


def check_minutes(minutes: int) -> int:
    """``activity``'s argument checked.

    :raises TypeError: not an int
    :raises ValueError: outside 1 to :data:`ACTIVITY_MINUTES`
    """
    if isinstance(minutes, bool) or not isinstance(minutes, int):
        raise TypeError(f"minutes must be an int, not {type(minutes).__name__}")
    if not 1 <= minutes <= ACTIVITY_MINUTES:
        raise ValueError(f"minutes must be 1 to {ACTIVITY_MINUTES}, not {minutes}")
    return minutes


def minutes_window(now: float, minutes: int) -> list[int]:
    """The minute numbers (epoch seconds // 60) of the last ``minutes``
    minutes, the current one last."""
    current = int(now // 60)
    return list(range(current - minutes + 1, current + 1))


def key_prefix_end(prefix: str) -> str | None:
    """The smallest string above every string that starts with ``prefix`` (for a
    range scan: ``prefix <= key < end``), or None if there is none."""
    chars = list(prefix)
    while chars:
        last = ord(chars.pop())
        if last < 0x10FFFF:
            return "".join(chars) + chr(last + 1)
    return None


def series_times(schedule: str, due: float, count: int = 5) -> list[float]:
    """The next ``count`` due times of a recurring series whose stored
    ``schedule`` (:attr:`Entry.schedule`) is due next at ``due``: ``due``
    first, then the trigger's following points (fewer if the trigger ends).

    :raises ValueError: a schedule this version cannot read, or count < 1
    """
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"count must be an int >= 1, not {count!r}")
    grid = parse_schedule(schedule).grid
    out = [float(due)]
    at = out[0]
    while len(out) < count:
        nxt = grid.after(at)
        if nxt is None:
            break
        at = nxt
        # A due time read back as a datetime (microseconds) may fall a hair before
        # its grid point: that point is the due time itself, not the next one.
        if nxt - out[-1] >= 0.001:
            out.append(nxt)
    return out
