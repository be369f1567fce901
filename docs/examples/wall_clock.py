"""Wall-clock scheduling and clock changes: the code of docs/guide-wall-clock.md.

These schedules are hours away, so ``python docs/examples/wall_clock.py`` runs
them on duetime's virtual clock (see the bottom of the file): it finishes at once.
tests/test_docs_examples.py runs ``main()`` on virtual time on asyncio and on trio.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import anyio

from duetime import Scheduler, Status
from duetime.testing import VirtualTimeLoop, VirtualWallClock


async def at_a_wall_time() -> None:
    # --8<-- [start:basic]
    # In production leave wall_clock out: it defaults to the system clock in UTC.
    # Here a virtual one reads 08:00 UTC and follows the (virtual) loop clock.
    wall = VirtualWallClock(datetime(2030, 3, 1, 8, 0, tzinfo=UTC))
    async with Scheduler(wall_clock=wall) as scheduler:
        # An aware datetime is a wall-clock time, in any timezone.
        ist = timezone(timedelta(hours=5, minutes=30))
        standup = datetime(2030, 3, 1, 14, 30, tzinfo=ist)  # 09:00 UTC
        handle = scheduler.call_at(standup, wall)  # wall() returns the time it ran

        # handle.when is a loop time: the timer sleeps on the loop clock.
        assert handle.when == anyio.current_time() + 3600
        ran_at = await handle
        assert ran_at == datetime(2030, 3, 1, 9, 0, tzinfo=UTC)

        # A naive datetime is ambiguous (which timezone? which side of a DST change?).
        try:
            scheduler.call_at(datetime(2030, 3, 1, 10, 0), print, "never")
        except ValueError as exc:
            print(exc)

        # A time already past runs as soon as possible, like call_soon.
        late = scheduler.call_at(datetime(2030, 3, 1, 7, 0, tzinfo=UTC), print, "overdue")
        await late
    # --8<-- [end:basic]


async def clock_steps() -> None:
    # --8<-- [start:step]
    # A wall clock we can step, as NTP, an administrator or a suspend would.
    wall = VirtualWallClock(datetime(2030, 3, 1, 8, 0, tzinfo=UTC))
    fired_at: list[datetime] = []

    async with Scheduler(wall_clock=wall) as scheduler:
        nine = datetime(2030, 3, 1, 9, 0, tzinfo=UTC)
        report = scheduler.call_at(nine, lambda: fired_at.append(wall()))
        timer = scheduler.call_later(3600, lambda: fired_at.append(wall()))
        assert report.when == timer.when  # both due in an hour of loop time, for now

        await anyio.sleep(600)  # 08:10 on the wall clock
        wall.step(+1800)  # the system clock jumps forward 30 minutes: now 08:40
        await report  # fires at 09:00 wall time, 20 minutes later, not 50
        assert timedelta(0) <= fired_at[0] - nine < timedelta(seconds=1)

        await timer  # a loop-time delay ignores the wall clock: 60 minutes after all
        assert report.status is timer.status is Status.COMPLETED
        assert fired_at[1] - fired_at[0] > timedelta(minutes=29)
    # --8<-- [end:step]


async def clock_goes_back() -> None:
    # --8<-- [start:back]
    wall = VirtualWallClock(datetime(2030, 10, 27, 0, 30, tzinfo=UTC))
    async with Scheduler(wall_clock=wall) as scheduler:
        target = datetime(2030, 10, 27, 1, 0, tzinfo=UTC)
        handle = scheduler.call_at(target, wall)  # returns the wall time it ran at
        await anyio.sleep(60)
        wall.step(-3600)  # stepped back an hour: now 23:31 the day before
        ran_at = await handle
        assert ran_at >= target  # never early on the wall clock
        assert ran_at - target < timedelta(seconds=1)
    # --8<-- [end:back]


async def main() -> None:
    await at_a_wall_time()
    await clock_steps()
    await clock_goes_back()
    print("all wall-clock examples passed")


if __name__ == "__main__":
    # Virtual time: every wait is skipped, and VirtualWallClock follows it.
    anyio.run(main, backend_options={"loop_factory": VirtualTimeLoop})
