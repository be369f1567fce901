"""APScheduler 4 (4.0.0a6, in-memory store) against duetime: schedule, fire, memory, lateness.

APScheduler is configured at its best: ``task_defaults=TaskDefaults(max_running_jobs=None,
job_executor="async")`` (no per-task running-job limit: the default of 1 makes job
acquisition O(N^2)), ``max_concurrent_jobs`` as large as the batch, no periodic
cleanup.  It works on wall-clock datetimes, so its lateness is measured against
``datetime.now()`` / ``time.time()``; duetime's is measured the same way here.
Skipped cleanly when APScheduler is not installed.
"""

from __future__ import annotations

import gc
import json
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
from _common import have, le, noop, percentile, ratio, run_on

import duetime

VERSION = "4.0.0a6"


def _scheduler(max_jobs: int) -> Any:
    from apscheduler import AsyncScheduler, TaskDefaults

    return AsyncScheduler(
        task_defaults=TaskDefaults(max_running_jobs=None, job_executor="async"),
        max_concurrent_jobs=max_jobs,
        cleanup_interval=None,
    )


# -- schedule cost and memory --------------------------------------------------------


async def aps_schedule(n: int, trace: bool) -> float:
    """Per-call seconds (or bytes, with ``trace``) of ``add_schedule`` with a DateTrigger."""
    from apscheduler.triggers.date import DateTrigger

    far = datetime.now(UTC) + timedelta(hours=1)
    async with _scheduler(100) as sched:
        await sched.configure_task("noop", func=noop)
        gc.collect()
        if trace:
            tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0] if trace else 0
        t0 = time.perf_counter()
        for i in range(n):
            await sched.add_schedule("noop", DateTrigger(far + timedelta(microseconds=i)))
        elapsed = time.perf_counter() - t0
        used = tracemalloc.get_traced_memory()[0] - base if trace else 0
        if trace:
            tracemalloc.stop()
    return (used if trace else elapsed) / n


async def duetime_schedule(n: int, trace: bool, wall: bool) -> float:
    far = datetime.now(UTC) + timedelta(hours=1)
    async with duetime.Scheduler() as s:
        gc.collect()
        keep = []
        if trace:
            tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0] if trace else 0
        t0 = time.perf_counter()
        if wall:
            for i in range(n):
                keep.append(s.call_at(far + timedelta(microseconds=i), noop))
        else:
            for i in range(n):
                keep.append(s.call_later(3600.0 + i * 1e-6, noop))
        elapsed = time.perf_counter() - t0
        used = tracemalloc.get_traced_memory()[0] - base - sys.getsizeof(keep) if trace else 0
        if trace:
            tracemalloc.stop()
        del keep
    return (used if trace else elapsed) / n


# -- fire: n jobs due at once, until all have run ---------------------------------------


async def aps_fire(n: int) -> float:
    done = anyio.Event()
    count = 0

    def tick() -> None:
        nonlocal count
        count += 1
        if count == n:
            done.set()

    async with _scheduler(n) as sched:
        await sched.configure_task("tick", func=tick)
        await sched.start_in_background()
        t0 = time.perf_counter()
        for _ in range(n):
            await sched.add_job("tick")
        await done.wait()
        elapsed = time.perf_counter() - t0
        await sched.stop()
    return elapsed


async def duetime_fire(n: int) -> float:
    done = anyio.Event()
    count = 0

    def tick() -> None:
        nonlocal count
        count += 1
        if count == n:
            done.set()

    async with duetime.Scheduler() as s:
        t0 = time.perf_counter()
        for _ in range(n):
            s.call_soon(tick)
        await done.wait()
        return time.perf_counter() - t0


# -- lateness: n DateTriggers spread over `spread` seconds ---------------------------------


async def aps_lateness(n: int, spread: float, per_call: float) -> list[float]:
    from apscheduler.triggers.date import DateTrigger

    late: list[float] = []
    done = anyio.Event()

    def rec(when: float) -> None:
        late.append(time.time() - when)
        if len(late) == n:
            done.set()

    async with _scheduler(n) as sched:
        await sched.configure_task("rec", func=rec)
        # Leave room for add_schedule itself (~70 us each) before the first due time.
        start = time.time() + n * per_call * 2 + 0.3
        for i in range(n):
            when = start + spread * i / n
            trig = DateTrigger(datetime.fromtimestamp(when, UTC))
            await sched.add_schedule("rec", trig, args=(when,))
        await sched.start_in_background()
        with anyio.move_on_after(spread + 120):
            await done.wait()
        await sched.stop()
    return late


async def duetime_lateness(n: int, spread: float) -> list[float]:
    late: list[float] = []
    done = anyio.Event()

    def rec(when: float) -> None:
        late.append(time.time() - when)
        if len(late) == n:
            done.set()

    async with duetime.Scheduler() as s:
        start = time.time() + n * 20e-6 + 0.1
        for i in range(n):
            when = start + spread * i / n
            s.call_at(datetime.fromtimestamp(when, UTC), rec, when)
        await done.wait()
    return late


def _stats(late: list[float]) -> dict[str, float]:
    s = sorted(late)
    return {
        "p50_ms": percentile(s, 50) * 1e3,
        "p99_ms": percentile(s, 99) * 1e3,
        "max_ms": s[-1] * 1e3 if s else float("nan"),
        "early": sum(1 for x in s if x < 0),
        "fired": len(s),
    }


def run(quick: bool) -> dict[str, dict[str, Any]]:
    """APScheduler 4 side by side with duetime on four scenarios."""
    if not have("apscheduler"):
        reason = f"APScheduler not installed (pip install -e '.[bench]' for apscheduler=={VERSION})"
        return {"apscheduler": {"skipped": reason}}
    from importlib.metadata import version

    got = version("apscheduler")
    n = 1_000 if quick else 10_000
    lat_n, spread = (500, 0.5) if quick else (10_000, 1.0)
    config = (
        f"APScheduler {got}, MemoryDataStore, task_defaults=TaskDefaults(max_running_jobs=None, "
        "job_executor='async'), max_concurrent_jobs=N, cleanup_interval=None"
    )
    r: dict[str, dict[str, Any]] = {}

    aps = run_on("asyncio", lambda: aps_schedule(n, trace=False))
    ours = run_on("asyncio", lambda: duetime_schedule(n, trace=False, wall=False))
    ours_wall = run_on("asyncio", lambda: duetime_schedule(n, trace=False, wall=True))
    r["apscheduler_schedule"] = {
        "title": f"schedule {n:,} one-shot jobs an hour away",
        "unit": "us/call",
        "values": {
            "APScheduler 4 add_schedule(DateTrigger)": aps * 1e6,
            "duetime call_at(datetime)": ours_wall * 1e6,
            "duetime call_later": ours * 1e6,
        },
        "ratios": [
            ratio("APScheduler / duetime call_at(datetime)", aps / ours_wall, "(report)", None)
        ],
        "notes": [config],
    }

    aps_b = run_on("asyncio", lambda: aps_schedule(n, trace=True))
    ours_b = run_on("asyncio", lambda: duetime_schedule(n, trace=True, wall=False))
    ours_wb = run_on("asyncio", lambda: duetime_schedule(n, trace=True, wall=True))
    r["apscheduler_memory"] = {
        "title": f"bytes per pending one-shot job ({n:,}, tracemalloc)",
        "unit": "bytes",
        "values": {
            "APScheduler 4 schedule": aps_b,
            "duetime call_at(datetime)": ours_wb,
            "duetime call_later": ours_b,
        },
        "ratios": [
            ratio("APScheduler / duetime call_at(datetime)", aps_b / ours_wb, "(report)", None)
        ],
    }

    aps_t = run_on("asyncio", lambda: aps_fire(n))
    ours_t = run_on("asyncio", lambda: duetime_fire(n))
    r["apscheduler_fire"] = {
        "title": f"{n:,} jobs due at once, until all have run",
        "unit": "ms",
        "values": {"APScheduler 4 add_job": aps_t * 1e3, "duetime call_soon": ours_t * 1e3},
        "ratios": [ratio("APScheduler / duetime", aps_t / ours_t, "(report)", None)],
        "notes": [
            "with APScheduler's defaults (max_running_jobs=1) 10k take ~25 s (ANCHORS): not rerun"
        ],
    }

    aps_l = run_on("asyncio", lambda: aps_lateness(lat_n, spread, aps))
    ours_l = run_on("asyncio", lambda: duetime_lateness(lat_n, spread))
    a, o = _stats(aps_l), _stats(ours_l)
    notes = [
        f"{k}: p50 {v['p50_ms']:.2f} ms, p99 {v['p99_ms']:.2f} ms, max {v['max_ms']:.1f} ms, "
        f"early {int(v['early'])}, fired {int(v['fired'])}/{lat_n}"
        for k, v in (("APScheduler 4", a), ("duetime", o))
    ]
    r["apscheduler_lateness"] = {
        "title": f"lateness of {lat_n:,} DateTriggers vs call_at(datetime) over {spread:g} s "
        "(wall clock)",
        "unit": "ms",
        "values": {"APScheduler 4 p99": a["p99_ms"], "duetime p99": o["p99_ms"]},
        "ratios": [
            ratio("APScheduler p99 / duetime p99", a["p99_ms"] / o["p99_ms"], "(report)", None),
            ratio("duetime early fires (wall clock)", o["early"], "0", le(o["early"], 0)),
        ],
        "stats": {"apscheduler": a, "duetime": o},
        "notes": notes,
    }
    return r


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2))
