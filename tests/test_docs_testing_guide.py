"""The example tests of docs/testing.md, run by the suite itself.

The page includes the sections between the ``--8<--`` markers, so what it shows
is what runs here, on asyncio and trio, on virtual time (tests/conftest.py uses
``anyio_backend_fixture()``, exactly as the page tells users to).
"""

from __future__ import annotations

# --8<-- [start:tests]
# test_reminders.py
from datetime import UTC, datetime, timedelta

import anyio
import pytest

import duetime
from duetime.testing import VirtualWallClock, advance_time

pytestmark = pytest.mark.anyio


async def test_a_reminder_every_hour_for_a_day() -> None:
    sent: list[float] = []
    async with duetime.Scheduler() as scheduler:
        series = scheduler.call_every(3600, lambda: sent.append(anyio.current_time()), max_runs=24)
        assert await series == 24
    assert sent == [k * 3600.0 for k in range(24)]  # a day, in milliseconds of real time


async def test_the_morning_report_runs_at_nine() -> None:
    wall = VirtualWallClock(datetime(2030, 1, 1, 8, 0, tzinfo=UTC))
    nine = datetime(2030, 1, 1, 9, 0, tzinfo=UTC)
    async with duetime.Scheduler(wall_clock=wall) as scheduler:
        report = scheduler.call_at(nine, wall)  # returns the wall time it ran at
        ran_at = await report
    assert timedelta(0) <= ran_at - nine < timedelta(seconds=1)


async def test_an_expired_request_deadline_never_starts_the_work() -> None:
    async with duetime.Scheduler() as scheduler:
        with anyio.move_on_after(30):  # the request's deadline
            handle = scheduler.call_later(60, print, "too late", inherit_deadline=True)
        assert handle.status is duetime.Status.EXPIRED


async def test_timeouts_use_virtual_time() -> None:
    with anyio.move_on_after(30) as scope:
        await anyio.sleep(3600)
    assert scope.cancelled_caught
    assert anyio.current_time() == 30


async def test_wall_clock_and_a_clock_step() -> None:
    wall = VirtualWallClock(datetime(2030, 1, 1, tzinfo=UTC))
    await anyio.sleep(90)
    assert wall() == datetime(2030, 1, 1, 0, 1, 30, tzinfo=UTC)
    wall.step(-3600)  # the system clock is stepped back an hour...
    assert wall() == datetime(2029, 12, 31, 23, 1, 30, tzinfo=UTC)
    assert anyio.current_time() == 90  # ...the loop clock is not


async def test_move_time_by_hand() -> None:
    advance_time(600)  # timers due by then run at the next checkpoint
    assert anyio.current_time() == 600


# --8<-- [end:tests]
