"""Virtual time: what a pending datetime entry a day away costs to wait for.

A test of a nightly job waits virtual hours.  Here a ``call_at(datetime)`` 24 h
away is awaited on virtual time, on asyncio (``VirtualTimeLoop``) and on trio
(``MockClock``), and the *wall* time it takes is measured:

- with ``VirtualWallClock``, which announces its steps, so the scheduler's
  wall-clock watchdog does not tick at all (the v0.2 target: < 50 ms);
- with a plain wall-clock function that follows virtual time but announces
  nothing, so the watchdog must look once a (virtual) second: 86,400 wake-ups,
  the 0.1 behaviour, for comparison.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from _common import ratio

import duetime
from duetime.testing import VirtualWallClock, virtual_time_backend

START = datetime(2026, 1, 1, tzinfo=UTC)


async def _wait_a_day(announcing: bool) -> None:
    if announcing:
        wall: Any = VirtualWallClock(START)
    else:
        t0 = anyio.current_time()

        def wall() -> datetime:
            return START + timedelta(seconds=anyio.current_time() - t0)

    async with duetime.Scheduler(wall_clock=wall) as s:
        await s.call_at(START + timedelta(hours=24), int, 1)


def _wall_seconds(backend: str, announcing: bool) -> float:
    name, options = virtual_time_backend(backend)
    t0 = time.perf_counter()
    anyio.run(_wait_a_day, announcing, backend=name, backend_options=options)
    return time.perf_counter() - t0


def run(quick: bool) -> dict[str, dict[str, Any]]:
    values: dict[str, float] = {}
    ratios = []
    for backend in ("asyncio", "trio"):
        ms = 1000 * min(_wall_seconds(backend, True) for _ in range(3))
        values[f"VirtualWallClock ({backend})"] = ms
        ratios.append(
            ratio(f"wall ms to wait 24 h of virtual time ({backend})", ms, "< 50 ms", ms < 50)
        )
        if not quick:
            values[f"a wall clock that does not announce steps ({backend})"] = 1000 * (
                _wall_seconds(backend, False)
            )
    return {
        "virtual_day": {
            "title": "a pending call_at(datetime) 24 h away, awaited on virtual time",
            "unit": "ms of wall time",
            "values": values,
            "ratios": ratios,
            "notes": [
                "VirtualWallClock announces its steps, so the watchdog does not tick while"
                " time is virtual; a clock that does not must be re-read once a second",
            ],
        }
    }
