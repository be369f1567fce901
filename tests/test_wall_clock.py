"""Aware datetimes fire on the wall clock, even when it is stepped."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import anyio
import pytest

from duetime import Scheduler, Status

from .support import duetime_activity

pytestmark = pytest.mark.anyio

BASE = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


class SteppableWall:
    """A wall clock that follows loop time, plus a step we can change."""

    def __init__(self) -> None:
        self.t0 = anyio.current_time()
        self.step = 0.0
        self.reads = 0

    def __call__(self) -> datetime:
        self.reads += 1
        return BASE + timedelta(seconds=anyio.current_time() - self.t0 + self.step)


async def test_datetime_fires_at_its_wall_time() -> None:
    wall = SteppableWall()
    async with Scheduler(wall_clock=wall) as s:
        fired: list[datetime] = []
        h = s.call_at(BASE + timedelta(minutes=10), lambda: fired.append(wall()))
        await h
    assert fired[0] >= BASE + timedelta(minutes=10)
    assert fired[0] - (BASE + timedelta(minutes=10)) < timedelta(seconds=1)


async def test_other_timezones_are_fine() -> None:
    wall = SteppableWall()
    tz = timezone(timedelta(hours=5, minutes=30))
    async with Scheduler(wall_clock=wall) as s:
        h = s.call_at((BASE + timedelta(seconds=30)).astimezone(tz), wall)
        fired = await h
    assert timedelta(0) <= fired - (BASE + timedelta(seconds=30)) < timedelta(seconds=1)


@pytest.mark.parametrize("step", [3500.0, -600.0])
async def test_clock_step_is_followed_within_a_second(step: float) -> None:
    wall = SteppableWall()
    target = BASE + timedelta(hours=1)
    async with Scheduler(wall_clock=wall) as s:
        fired: list[datetime] = []
        h = s.call_at(target, lambda: fired.append(wall()))
        await anyio.sleep(10)
        wall.step = step  # the system clock jumps (or the machine slept)
        await h
    assert h.status is Status.COMPLETED
    assert fired[0] >= target  # never early on the wall clock
    assert fired[0] - target < timedelta(seconds=1.01)


async def test_past_datetime_runs_soon() -> None:
    wall = SteppableWall()
    async with Scheduler(wall_clock=wall) as s:
        start = anyio.current_time()
        await s.call_at(BASE - timedelta(days=1), lambda: None)
        assert anyio.current_time() == pytest.approx(start, abs=1e-6)


async def test_watchdog_only_runs_while_datetime_entries_pend() -> None:
    wall = SteppableWall()
    async with Scheduler(wall_clock=wall) as s:
        h = s.call_at(BASE + timedelta(seconds=5), lambda: None)
        reads = wall.reads
        await anyio.sleep(3)
        assert wall.reads > reads  # the watchdog looks at the wall clock
        await h
        await anyio.sleep(2)
        assert s.statistics().pending == 0
        with duetime_activity() as activity:  # and stops once nothing pends
            await anyio.sleep(3600)
        assert activity() == 0
        h2 = s.call_at(BASE + timedelta(hours=2), lambda: None)
        h2.cancel()
        await anyio.sleep(2)
        reads = wall.reads
        with duetime_activity() as activity:
            await anyio.sleep(3 * 3600)
        assert activity() == 0
        assert wall.reads == reads


async def test_backward_step_just_before_due_is_not_early() -> None:
    wall = SteppableWall()
    target = BASE + timedelta(seconds=10)
    async with Scheduler(wall_clock=wall) as s:
        fired: list[datetime] = []
        h = s.call_at(target, lambda: fired.append(wall()))
        await anyio.sleep(9.9)  # the watchdog last looked at t=9
        wall.step = -300  # stepped back 5 minutes, 0.1 s before the entry is due
        await h
    assert fired[0] >= target  # never early on the wall clock
    assert fired[0] - target < timedelta(seconds=1.01)


async def test_a_clock_that_announces_its_steps_needs_no_watchdog() -> None:
    from duetime.testing import VirtualWallClock
    from tests.support import duetime_activity

    wall = VirtualWallClock(BASE)
    async with Scheduler(wall_clock=wall) as s:
        h = s.call_at(BASE + timedelta(hours=24), int, 1)
        await anyio.sleep(1)
        with duetime_activity() as activity:
            await anyio.sleep(20 * 3600)  # no look once a virtual second
        assert activity() < 100
        wall.step(-3600)  # a step is announced: the entry is re-keyed, never early
        await anyio.sleep(4 * 3600 - 1)
        assert h.status is Status.PENDING
        assert await h == 1
    assert wall() >= BASE + timedelta(hours=24)


async def test_a_wall_clock_a_fraction_of_a_millisecond_behind_is_waited_for() -> None:
    # The loop and wall clocks drift apart by microseconds (NTP slews one, not the
    # other): below the watchdog's step tolerance, but a run must still never be
    # early on the wall clock.
    wall = SteppableWall()
    async with Scheduler(wall_clock=wall) as s:
        fired: list[datetime] = []
        target = BASE + timedelta(seconds=10)
        h = s.call_at(target, lambda: fired.append(wall()))
        await anyio.sleep(9.5)
        wall.step = -0.0005  # the wall clock now lags the loop clock by 0.5 ms
        await h
    assert fired[0] >= target
