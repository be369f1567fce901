"""Recurring durable series: the trigger seam and the next grid point.

A series is one row.  Its ``schedule`` column holds JSON text: the trigger
(an interval, or a cron trigger by its spec), the grid start, and the misfire
and overlap policies.  Nothing is imported by a name read from the store: a
cron spec is handed to ``duetime._cron.Cron.from_spec``, a fixed module.

All times here are store-clock UTC epoch seconds.  The grid is drift-free:
interval point ``k`` is ``start + k * interval``, computed by multiplication.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

from .._cron import Cron
from .._vocab import MISFIRE, OVERLAP, Misfire, Overlap

__all__ = ["CronGrid", "Grid", "IntervalGrid", "Series", "parse_schedule", "trigger_grid"]


#: How many cron points a misfire may step over to find the latest one due.
_MAX_STEPS = 100_000
_EPS = timedelta(microseconds=1)


class Grid(Protocol):
    """The points of a series, in store-clock epoch seconds."""

    def spec(self) -> dict[str, Any]:
        """JSON-able description (stored in the row)."""

    def first(self, start: float) -> float | None:
        """The first point at or after ``start`` (None: there is none)."""

    def after(self, t: float) -> float | None:
        """The first point strictly after ``t`` (None: there is none)."""

    def latest(self, t: float, since: float) -> float:
        """The latest point at or before ``t``, given that ``since`` is a point <= ``t``."""


@dataclass(frozen=True, slots=True)
class IntervalGrid:
    """Points ``start + k * interval`` for k >= 0."""

    start: float
    interval: float

    def spec(self) -> dict[str, Any]:
        return {"every": self.interval}

    def _point(self, k: int) -> float:
        return self.start + k * self.interval

    def first(self, start: float) -> float:
        return self._point(0) if start <= self.start else self.after(start - 1e-9)

    def after(self, t: float) -> float:
        if t < self.start:
            return self.start
        k = math.floor((t - self.start) / self.interval) + 1
        # Float rounding can put the estimate one step off either way.
        while self._point(k) <= t:
            k += 1
        while k > 0 and self._point(k - 1) > t:
            k -= 1
        return self._point(k)

    def latest(self, t: float, since: float) -> float:
        if t < self.start:
            return since
        k = math.floor((t - self.start) / self.interval)
        while self._point(k + 1) <= t:
            k += 1
        while k > 0 and self._point(k) > t:
            k -= 1
        return max(self._point(k), since)


class CronLike(Protocol):
    """What a cron trigger offers the durable layer (``duetime.Cron``)."""

    def next_after(self, when: datetime, /) -> datetime | None: ...

    def to_spec(self) -> Any: ...


@dataclass(frozen=True, slots=True)
class CronGrid:
    """The points of a cron trigger (wall-clock rules are the trigger's own)."""

    cron: CronLike

    def spec(self) -> dict[str, Any]:
        return {"cron": self.cron.to_spec()}

    def first(self, start: float) -> float | None:
        return self._next(datetime.fromtimestamp(start, UTC) - _EPS)

    def after(self, t: float) -> float | None:
        return self._next(datetime.fromtimestamp(t, UTC))

    def _next(self, when: datetime) -> float | None:
        nxt = self.cron.next_after(when)
        return None if nxt is None else nxt.timestamp()

    def latest(self, t: float, since: float) -> float:
        cur = since
        for _ in range(_MAX_STEPS):
            nxt = self.after(cur)
            if nxt is None or nxt > t:
                return cur
            cur = nxt
        return cur


def trigger_grid(trigger: object, start: float) -> Grid:
    """A grid from what ``defer_every`` was given: an interval or a cron trigger.

    :raises TypeError: for something that is neither
    :raises ValueError: for an interval that is not finite and > 0
    """
    if isinstance(trigger, timedelta):
        seconds = trigger.total_seconds()
    elif isinstance(trigger, int | float) and not isinstance(trigger, bool):
        seconds = float(trigger)
    elif callable(getattr(trigger, "next_after", None)) and callable(
        getattr(trigger, "to_spec", None)
    ):
        return CronGrid(trigger)  # type: ignore[arg-type]
    else:
        raise TypeError(
            f"a trigger is an interval (seconds or timedelta) or a duetime.Cron, got {trigger!r}"
        )
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"interval must be finite and > 0, got {trigger!r}")
    return IntervalGrid(start, seconds)


@dataclass(frozen=True, slots=True)
class Series:
    """A decoded ``schedule``: the grid and the policies."""

    grid: Grid
    misfire: Misfire
    overlap: Overlap

    def dump(self, start: float) -> str:
        """The JSON text stored in the row."""
        return json.dumps(
            {
                "v": 1,
                "trigger": self.grid.spec(),
                "start": start,
                "misfire": self.misfire,
                "overlap": self.overlap,
            },
            separators=(",", ":"),
        )

    def stands_for(self, due: float, now: float, retried: bool) -> float | None:
        """The grid point a run claimed at ``now`` stands for, or None to skip it.

        A first attempt claimed a whole point or more late applies ``misfire``:
        ``coalesce`` runs once for the latest point due, ``skip`` runs nothing,
        ``catch_up`` runs the point it was due for (the rest follow one by one).
        A retried attempt stands for its retry time (the series goes on with the
        first point after it: the point it first stood for is not stored).
        """
        if retried:
            return due
        latest = self.grid.latest(now, due)
        if latest <= due or self.misfire == "catch_up":
            return due
        return latest if self.misfire == "coalesce" else None

    def next_due(self, point: float, now: float) -> float | None:
        """When the series is due next, after a run standing for ``point`` ended at ``now``.

        Points that came while it ran are skipped (``overlap="skip"``), or the
        first of them runs next (``"wait"``; ``misfire="catch_up"`` runs them all).
        """
        nxt = self.grid.after(point)
        if nxt is None or nxt > now or self.misfire == "catch_up" or self.overlap != "skip":
            return nxt
        return self.grid.after(now)


_YEAR_9999 = 253402300799.0  # the last second of year 9999, in epoch seconds


def parse_schedule(text: str) -> Series:
    """Decode a row's ``schedule`` text.

    :raises ValueError: for text this version does not write, or a cron spec
        when this build has no cron support
    """
    try:
        raw = json.loads(text)
        trig = raw["trigger"]
        start = float(raw["start"])
        misfire = raw["misfire"]
        overlap = raw["overlap"]
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"bad schedule {text[:80]!r}: {exc}") from None
    if raw.get("v") != 1 or misfire not in MISFIRE or overlap not in OVERLAP:
        raise ValueError(f"bad schedule {text[:80]!r}")
    if not isinstance(trig, dict) or not math.isfinite(start):
        raise ValueError(f"bad schedule {text[:80]!r}")
    if not abs(start) <= _YEAR_9999:  # beyond, adding the interval may change nothing
        raise ValueError(f"start out of range in schedule {text[:80]!r}")
    grid: Grid
    if "every" in trig:
        every = trig["every"]
        if isinstance(every, bool) or not isinstance(every, int | float) or not every > 0:
            raise ValueError(f"bad interval in schedule {text[:80]!r}")
        if not math.isfinite((abs(start) + _YEAR_9999) / every):  # the grid could not count it
            raise ValueError(f"interval too small in schedule {text[:80]!r}")
        grid = IntervalGrid(start, float(every))
    elif "cron" in trig:
        try:
            grid = CronGrid(Cron.from_spec(trig["cron"]))
        except Exception as exc:
            raise ValueError(f"bad cron spec in schedule: {exc}") from None
    else:
        raise ValueError(f"unknown trigger in schedule {text[:80]!r}")
    return Series(grid, misfire, overlap)
