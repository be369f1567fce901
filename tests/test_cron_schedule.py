"""Cron series on the Scheduler: exact wall-clock fire times on virtual time, DST, steps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import anyio
import pytest

import duetime
from duetime import Cron, Scheduler, Status
from duetime.testing import VirtualWallClock

pytestmark = pytest.mark.anyio

PARIS = ZoneInfo("Europe/Paris")


def paris(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=PARIS)


async def test_a_year_of_nightly_runs_in_paris_across_both_dst_changes() -> None:
    wall = VirtualWallClock(datetime(2025, 1, 1, tzinfo=UTC))
    fired: list[datetime] = []
    async with Scheduler(wall_clock=wall) as s:
        r = s.call_every(
            Cron("0 2 * * *", tz="Europe/Paris"),
            lambda: fired.append(wall()),
            until=datetime(2026, 1, 1, tzinfo=UTC),
        )
        runs = await r
    assert runs == 365
    local = [t.astimezone(PARIS) for t in fired]
    # One run per local day, on time to the second (virtual time is exact).
    assert len({t.date() for t in local}) == 365
    assert all(t.microsecond == 0 for t in fired)
    assert local[0] == paris(2025, 1, 1, 2)
    # Spring forward (2025-03-30): 02:00 does not exist, the run is at 03:00 CEST.
    assert paris(2025, 3, 29, 2) in local
    assert fired[local.index(paris(2025, 3, 29, 2)) + 1] == datetime(2025, 3, 30, 1, tzinfo=UTC)
    # Fall back (2025-10-26): 02:00 happens twice; the run is once, the first one.
    day = [t for t in fired if t.astimezone(PARIS).date() == paris(2025, 10, 26).date()]
    assert day == [datetime(2025, 10, 26, 0, tzinfo=UTC)]
    assert local[-1] == paris(2025, 12, 31, 2)
    # Never early, and every run at a fixed 02:00 except the spring-forward day.
    assert sum(1 for t in local if t.hour == 2 and t.minute == 0) == 364


async def test_every_five_minutes_over_a_day() -> None:
    wall = VirtualWallClock(datetime(2025, 6, 1, tzinfo=UTC))
    fired: list[datetime] = []
    async with Scheduler(wall_clock=wall) as s:
        r = s.call_every(
            Cron("*/5 * * * *"),
            lambda: fired.append(wall()),
            until=datetime(2025, 6, 2, tzinfo=UTC) - timedelta(seconds=1),
        )
        assert await r == 288
    assert fired == [
        datetime(2025, 6, 1, tzinfo=UTC) + timedelta(minutes=5 * i) for i in range(288)
    ]


async def test_the_first_run_is_the_next_cron_time_not_now() -> None:
    wall = VirtualWallClock(datetime(2025, 6, 1, 10, 7, 30, tzinfo=UTC))
    async with Scheduler(wall_clock=wall) as s:
        r = s.call_every(Cron("0 * * * *"), wall, max_runs=2)
        runs = [h async for h in r]
    assert [h.return_value for h in runs] == [
        datetime(2025, 6, 1, 11, tzinfo=UTC),
        datetime(2025, 6, 1, 12, tzinfo=UTC),
    ]
    assert r.status is Status.COMPLETED
    assert r.trigger == Cron("0 * * * *")
    assert r.interval is None


async def test_spring_forward_half_past_two_runs_once_at_three() -> None:
    wall = VirtualWallClock(datetime(2025, 3, 29, 12, tzinfo=UTC))
    async with Scheduler(wall_clock=wall) as s:
        r = s.call_every(Cron("30 2 * * *", tz=PARIS), wall, max_runs=3)
        got = [(await h) async for h in r]
    assert [t.astimezone(PARIS) for t in got] == [
        paris(2025, 3, 30, 3, 0),
        paris(2025, 3, 31, 2, 30),
        paris(2025, 4, 1, 2, 30),
    ]


async def test_a_backward_clock_step_never_makes_a_run_early() -> None:
    wall = VirtualWallClock(datetime(2025, 6, 1, 9, 59, tzinfo=UTC))
    async with Scheduler(wall_clock=wall) as s:
        r = s.call_every(Cron("0 10 * * *"), wall, max_runs=1)
        await anyio.sleep(30)
        wall.step(-3600)  # the system clock goes back an hour, 30 s before the run
        [h] = [h async for h in r]
    assert await h == datetime(2025, 6, 1, 10, tzinfo=UTC)


async def test_a_forward_step_past_several_points_coalesces_and_counts_them() -> None:
    wall = VirtualWallClock(datetime(2025, 6, 1, 9, 59, tzinfo=UTC))
    seen: list[int] = []
    async with Scheduler(wall_clock=wall) as s:
        r = s.call_every(
            Cron("*/10 * * * *"), lambda: seen.append(duetime.current_run().missed), max_runs=2
        )
        await anyio.sleep(30)
        wall.step(3600)  # suspend/resume: 10:00 .. 10:50 passed unseen
        assert await r == 2
    assert seen[0] == 5  # one run stands for 10:50; 10:00-10:40 are missed
    assert r.missed == 5


async def test_jitter_must_be_less_than_the_shortest_gap() -> None:
    async with Scheduler() as s:
        with pytest.raises(ValueError, match="shortest gap"):
            s.call_every(Cron("*/5 * * * *"), print, jitter=300)
        s.call_every(Cron("*/5 * * * *"), print, jitter=299).cancel()


async def test_misfire_skip_drops_missed_points() -> None:
    wall = VirtualWallClock(datetime(2025, 6, 1, 9, 59, tzinfo=UTC))
    async with Scheduler(wall_clock=wall) as s:
        r = s.call_every(Cron("*/10 * * * *"), wall, misfire="skip", max_runs=1)
        await anyio.sleep(30)
        wall.step(3600 + 60)  # now 11:00:30; 10:00-11:00 passed
        [h] = [h async for h in r]
    assert await h == datetime(2025, 6, 1, 11, 10, tzinfo=UTC)
    assert r.missed == 7


def test_threaded_scheduler_accepts_a_cron_trigger() -> None:
    with duetime.ThreadedScheduler() as ts:
        job = ts.call_every(Cron("0 0 1 1 *"), print)
        assert job.status is Status.PENDING
        assert job.cancel() is True
