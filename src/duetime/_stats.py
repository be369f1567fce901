"""A Scheduler's statistics: the snapshot type and how it is read off the engine."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass
from typing import Protocol

__all__ = ["Counters", "SchedulerStatistics", "snapshot"]


class Counters(Protocol):
    """The engine's outcome counters, as :func:`snapshot` reads them."""

    @property
    def pending(self) -> int:
        """Scheduled, not started."""

    running: int
    completed: int
    failed: int
    cancelled: int
    expired: int
    max_late: float
    lat: deque[float]

    @property
    def inline(self) -> object:
        """The callback running inline now, or None."""


@dataclass(frozen=True, slots=True)
class SchedulerStatistics:
    """A snapshot of a scheduler's counters.

    ``pending + running + completed + failed + cancelled + expired`` equals the
    number of callbacks ever scheduled (retries do not count as new callbacks).

    :ivar pending: scheduled, not started
    :ivar running: started, not finished
    :ivar completed: returned a value
    :ivar failed: raised (after their last retry)
    :ivar cancelled: cancelled before or while running
    :ivar expired: never started because an inherited deadline had passed
    :ivar max_lateness: the largest start delay past the due time seen, in seconds
    :ivar p99_lateness: the 99th percentile of the last 1024 start delays
    """

    pending: int
    running: int
    completed: int
    failed: int
    cancelled: int
    expired: int
    max_lateness: float
    p99_lateness: float


def snapshot(c: Counters) -> SchedulerStatistics:
    """The counters of ``c`` now, with the 99th percentile of its recent lateness."""
    lat = c.lat
    n = len(lat)
    p99 = 0.0
    if n:
        samples = sorted(lat)
        p99 = samples[min(n - 1, math.ceil(0.99 * n) - 1)]
    return SchedulerStatistics(
        pending=c.pending,
        running=c.running + (c.inline is not None),
        completed=c.completed,
        failed=c.failed,
        cancelled=c.cancelled,
        expired=c.expired,
        max_lateness=max(c.max_late, 0.0),
        p99_lateness=max(p99, 0.0),
    )
