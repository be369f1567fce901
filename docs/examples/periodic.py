"""Periodic jobs: the code of docs/guide-periodic.md.

Run it with ``python docs/examples/periodic.py``; tests/test_docs_examples.py runs
it on virtual time on asyncio and on trio, where every time below is exact.
"""

from __future__ import annotations

import anyio

import duetime
from duetime import Scheduler, Status
from duetime.testing import VirtualTimeLoop


async def fixed_rate() -> None:
    # --8<-- [start:fixed-rate]
    async with Scheduler() as scheduler:
        t0 = anyio.current_time()
        starts: list[float] = []

        async def poll() -> None:
            starts.append(round(anyio.current_time() - t0, 6))
            await anyio.sleep(0.7)  # a slow run does not push the next one back

        series = scheduler.call_every(1.0, poll, max_runs=5)
        assert await series == 5  # the number of runs
        print(starts)  # [0.0, 1.0, 2.0, 3.0, 4.0]: on the grid, no drift
        assert starts == [0.0, 1.0, 2.0, 3.0, 4.0]
        assert series.status is Status.COMPLETED
    # --8<-- [end:fixed-rate]


async def overlap_and_misfire() -> None:
    # --8<-- [start:overlap]
    async with Scheduler() as scheduler:
        t0 = anyio.current_time()
        starts: list[float] = []
        missed: list[int] = []

        async def slow() -> None:
            starts.append(round(anyio.current_time() - t0, 6))
            missed.append(duetime.current_run().missed)
            await anyio.sleep(2.5)  # longer than the 1 s interval

        series = scheduler.call_every(1.0, slow, max_runs=3, overlap="skip")
        await series
        # Points 1 and 2 found run 0 still running: skipped and counted.
        assert starts == [0.0, 3.0, 6.0]
        assert missed == [0, 2, 2]
        assert series.missed == 4
    # --8<-- [end:overlap]

    # --8<-- [start:wait]
    async with Scheduler() as scheduler:
        t0 = anyio.current_time()
        starts = []

        async def slow_wait() -> None:
            starts.append(round(anyio.current_time() - t0, 6))
            await anyio.sleep(1.5)

        await scheduler.call_every(1.0, slow_wait, max_runs=3, overlap="wait")
        # Point 1 waited for run 0 to end at 1.5; point 2 for run 1 to end at 3.0.
        assert starts == [0.0, 1.5, 3.0]
    # --8<-- [end:wait]


async def control() -> None:
    # --8<-- [start:control]
    async with Scheduler() as scheduler:
        ticks: list[float] = []
        t0 = anyio.current_time()
        series = scheduler.call_every(
            1.0, lambda: ticks.append(round(anyio.current_time() - t0, 6))
        )
        await anyio.sleep(2.5)  # runs at 0, 1, 2
        series.pause()
        await anyio.sleep(3)  # nothing runs; paused points are not "missed"
        series.resume()  # back on the grid: the next point is 6.0
        await anyio.sleep(1.6)
        series.cancel()
        assert ticks == [0.0, 1.0, 2.0, 6.0, 7.0]
        assert await series == 5
        assert series.missed == 0
    # --8<-- [end:control]


async def iterate() -> None:
    # --8<-- [start:iterate]
    async with Scheduler() as scheduler:
        series = scheduler.call_every(0.5, lambda: "sample", max_runs=3)
        results = [run.return_value async for run in series]  # finished runs, in order
        assert results == ["sample", "sample", "sample"]
    # --8<-- [end:iterate]


async def cron() -> None:
    # --8<-- [start:cron]
    from datetime import UTC, datetime
    from zoneinfo import ZoneInfo

    from duetime.testing import VirtualWallClock

    paris = ZoneInfo("Europe/Paris")
    wall = VirtualWallClock(datetime(2025, 3, 28, 12, tzinfo=UTC))  # a test's wall clock
    backups: list[datetime] = []

    def backup() -> None:
        backups.append(wall().astimezone(paris))

    async with Scheduler(wall_clock=wall) as scheduler:
        nightly = scheduler.call_every(duetime.Cron("30 2 * * *", tz="Europe/Paris"), backup)
        await anyio.sleep(4 * 24 * 3600)  # four days of virtual time
        nightly.cancel()
    # 2025-03-30 has no 02:30 in Paris (clocks go 02:00 -> 03:00): that run is at 03:00.
    assert [(t.day, t.hour, t.minute) for t in backups] == [
        (29, 2, 30),
        (30, 3, 0),
        (31, 2, 30),
        (1, 2, 30),
    ]
    # --8<-- [end:cron]


async def main() -> None:
    await fixed_rate()
    await overlap_and_misfire()
    await control()
    await iterate()
    await cron()
    print("periodic examples passed")


if __name__ == "__main__":
    # Virtual time: instant, and every time above is exact.  Drop backend_options
    # to watch it in real time (then times are only approximately on the grid).
    anyio.run(main, backend_options={"loop_factory": VirtualTimeLoop})
