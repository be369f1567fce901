"""The wall-clock watch: datetime entries survive clock steps and suspends."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from ._handle import Handle

if TYPE_CHECKING:
    from ._heap import TimerHeap


class WallSite(Protocol):
    """What the wall-clock watch uses of its engine (``_engine.Engine`` is one)."""

    clock: Callable[[], float]
    wall_clock: Callable[[], datetime]
    heap: TimerHeap
    wake_at: float

    def rearm(self, when: float) -> None: ...

    def schedule_internal(
        self, when: float, func: Callable[[], object], wall: datetime | None = None
    ) -> Handle[Any]: ...


__all__ = ["WallWatch"]

# The watchdog re-checks this often while datetime entries are pending.
WALL_CHECK_INTERVAL = 1.0
# A change of (wall time - loop time) beyond this is a clock step or a suspend.
WALL_STEP_TOLERANCE = 0.1
# A datetime entry still this much early on the wall clock when due on the loop
# clock is re-keyed: never early (the loop and wall clocks drift apart by
# microseconds between the watchdog's looks, and NTP slews one, not the other).
WALL_EARLY_TOLERANCE = 0.0


class WallWatch:
    """Keeps datetime-based entries on time when wall and loop clocks diverge.

    An aware datetime is turned into a loop time when it is scheduled.  If the
    system clock is stepped, or the machine sleeps (the monotonic loop clock
    stops, the wall clock does not), that loop time is wrong.  One internal
    heap entry per engine re-checks ``wall - loop`` once a second, only while
    datetime entries are pending, and re-keys them all when it has moved.
    """

    __slots__ = (
        "__weakref__",
        "_engine",
        "_handles",
        "_listening",
        "_offset",
        "_suspects",
        "_watchdog",
    )

    def __init__(self, engine: WallSite) -> None:
        self._engine = engine
        self._handles: dict[Handle[Any], None] = {}
        self._offset = 0.0
        self._watchdog: Handle[Any] | None = None
        # True once subscribed to a wall clock that announces its own steps.
        self._listening = False
        # Handles keyed while (wall - loop) differed from the last check's: a
        # step undone before the next check would otherwise leave them stale.
        self._suspects: dict[Handle[Any], None] = {}

    def track(self, h: Handle[Any]) -> None:
        """Watch a pending handle whose Extra holds its target datetime (``wall``)."""
        e = self._engine
        offset = e.wall_clock().timestamp() - e.clock()
        if not self._handles:
            self._offset = offset
        elif abs(offset - self._offset) > WALL_STEP_TOLERANCE:
            self._suspects[h] = None
        self._handles[h] = None
        if self._listening or self._watchdog is not None:
            return
        # A wall clock that follows the loop clock exactly between steps and
        # announces each step (duetime.testing.VirtualWallClock) needs no
        # watchdog: a 24 h virtual wait costs no wake-up per virtual second.
        subscribe = getattr(e.wall_clock, "add_step_listener", None)
        if subscribe is not None:
            subscribe(self._on_step)
            self._listening = True
            return
        self._watchdog = e.schedule_internal(e.clock() + WALL_CHECK_INTERVAL, self._check)

    def _on_step(self) -> None:
        """The wall clock was stepped: re-check on the loop, at once."""
        if self._handles and self._watchdog is None:
            e = self._engine
            self._watchdog = e.schedule_internal(e.clock(), self._check)

    def untrack(self, h: Handle[Any]) -> None:
        """Stop watching ``h`` (it started, or was cancelled)."""
        x = h._x
        if x is not None and x.wall is not None:
            x.wall = None
            self._handles.pop(h, None)
            self._suspects.pop(h, None)

    def early(self, h: Handle[Any], now: float) -> bool:
        """Called when ``h`` is due on the loop clock: True if it was re-keyed.

        The watchdog looks once a second; if the wall clock was stepped back
        since, running it now would be early on the wall clock.
        """
        x = h._x
        assert x is not None
        remaining = (x.wall - self._engine.wall_clock()).total_seconds()
        if remaining > WALL_EARLY_TOLERANCE:
            when = now + remaining
            h._when = when
            self._engine.heap.push((when, h._id, h))
            return True
        self.untrack(h)
        return False

    def clear(self) -> None:
        """Forget every handle (the engine is cancelling them all)."""
        self._handles.clear()
        self._suspects.clear()
        self._watchdog = None

    def _check(self) -> None:
        """The watchdog: re-key datetime entries after a clock step or a suspend.

        One internal entry for the whole engine, re-armed once a second only
        while datetime entries are pending; a normal tick costs O(1).
        """
        self._watchdog = None
        if not self._handles:
            return
        e = self._engine
        now = e.clock()
        wall_now = e.wall_clock()
        offset = wall_now.timestamp() - now
        suspects = self._suspects
        self._suspects = {}
        stepped = abs(offset - self._offset) > WALL_STEP_TOLERANCE
        if stepped or suspects:
            self._offset = offset
            for h in list(self._handles if stepped else suspects):
                x = h._x
                assert x is not None
                new_when = now + max((x.wall - wall_now).total_seconds(), 0.0)
                if abs(new_when - h._when) > WALL_STEP_TOLERANCE:
                    # The old tuple goes stale (its float is no longer h._when).
                    e.heap.rekey(h, new_when)
                    if new_when < e.wake_at:
                        e.rearm(new_when)
        if not self._listening:
            self._watchdog = e.schedule_internal(now + WALL_CHECK_INTERVAL, self._check)
