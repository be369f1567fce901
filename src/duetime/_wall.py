"""The wall-clock watchdog: datetime entries survive clock steps and suspends."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from heapq import heappush
from typing import TYPE_CHECKING, Any

from ._handle import Handle
from ._heap import TimerHeap

__all__ = ["WallClockWatch"]

# The watchdog re-checks this often while datetime entries are pending.
WALL_CHECK_INTERVAL = 1.0
# A change of (wall time - loop time) beyond this is a clock step or a suspend.
WALL_STEP_TOLERANCE = 0.1


class WallClockWatch:
    """Keeps datetime-based entries on time when wall and loop clocks diverge.

    An aware datetime is turned into a loop time when it is scheduled.  If the
    system clock is stepped, or the machine sleeps (the monotonic loop clock
    stops, the wall clock does not), that loop time is wrong.  One internal
    heap entry per scheduler re-checks ``wall - loop`` once a second, only while
    datetime entries are pending, and re-keys them all when it has moved.
    """

    _entries: list[tuple[float, int, Any]]
    _heap: TimerHeap
    _clock: Callable[[], float]
    _wall_clock: Callable[[], datetime]
    _wake_at: float
    _wall_handles: dict[Handle[Any], None]
    _wall_offset: float
    _watchdog: Handle[Any] | None

    if TYPE_CHECKING:

        def _rearm(self, when: float) -> None: ...

        def _schedule_internal(self, when: float, func: Callable[[], object]) -> Handle[Any]: ...

    def _track_wall(self, h: Handle[Any]) -> None:
        if not self._wall_handles:
            self._wall_offset = self._wall_clock().timestamp() - self._clock()
        self._wall_handles[h] = None
        if self._watchdog is None:
            self._watchdog = self._schedule_internal(
                self._clock() + WALL_CHECK_INTERVAL, self._check_wall
            )

    def _untrack_wall(self, h: Handle[Any]) -> None:
        x = h._x
        if x is not None and x.wall is not None:
            x.wall = None
            self._wall_handles.pop(h, None)

    def _check_wall(self) -> None:
        """The watchdog: re-key datetime entries after a clock step or a suspend.

        One internal entry for the whole scheduler, re-armed once a second only
        while datetime entries are pending; a normal tick costs O(1).
        """
        self._watchdog = None
        if not self._wall_handles:
            return
        now = self._clock()
        wall_now = self._wall_clock()
        offset = wall_now.timestamp() - now
        if abs(offset - self._wall_offset) > WALL_STEP_TOLERANCE:
            self._wall_offset = offset
            for h in list(self._wall_handles):
                x = h._x
                assert x is not None
                new_when = now + max((x.wall - wall_now).total_seconds(), 0.0)
                if abs(new_when - h._when) > WALL_STEP_TOLERANCE:
                    # The old tuple goes stale (its float is no longer h._when).
                    h._when = new_when
                    heappush(self._entries, (new_when, h._id, h))
                    self._heap.note_dead()
                    if new_when < self._wake_at:
                        self._rearm(new_when)
        self._watchdog = self._schedule_internal(now + WALL_CHECK_INTERVAL, self._check_wall)
