"""Lateness of 10k timers spread over 1 s, on asyncio, uvloop and trio.

Each timer records ``loop clock at run - due time``.  A negative figure is an early
fire, counted against the loop's own clock (uvloop's millisecond timer wheel fires
raw timers early; duetime must never).  Baselines, in the same run and process:
raw ``loop.call_at`` on asyncio and uvloop, and one anyio task per timer sleeping
until its due time on trio (trio has no ``call_later``).
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
from collections.abc import Callable
from typing import Any

import anyio
from _common import backends, le, percentile, ratio, run_on

import duetime

LEAD = 0.1  # seconds between the end of scheduling and the first due time


def _whens(start: float, n: int, spread: float) -> list[float]:
    # Evenly spread, scheduled in a shuffled order so the heap does real work.
    whens = [start + spread * i / n for i in range(n)]
    random.Random(7).shuffle(whens)
    return whens


async def raw_lateness(n: int, spread: float) -> list[float]:
    loop = asyncio.get_running_loop()
    clock = loop.time
    late: list[float] = []
    done = asyncio.Event()

    def rec(when: float) -> None:
        late.append(clock() - when)
        if len(late) == n:
            done.set()

    for when in _whens(clock() + LEAD + n * 5e-6, n, spread):
        loop.call_at(when, rec, when)
    await done.wait()
    return late


async def task_lateness(n: int, spread: float) -> list[float]:
    clock = anyio.current_time
    late: list[float] = []

    async def one(when: float) -> None:
        await anyio.sleep_until(when)
        late.append(clock() - when)

    async with anyio.create_task_group() as tg:
        # Spawning is slow (~50 us per task): leave room for it before the first due time.
        for when in _whens(clock() + LEAD + n * 100e-6, n, spread):
            tg.start_soon(one, when)
    return late


async def duetime_lateness(n: int, spread: float) -> list[float]:
    late: list[float] = []
    async with duetime.Scheduler() as s:
        clock: Callable[[], float] = anyio.current_time
        done = anyio.Event()

        def rec(when: float) -> None:
            late.append(clock() - when)
            if len(late) == n:
                done.set()

        for when in _whens(clock() + LEAD + n * 5e-6, n, spread):
            s.call_at(when, rec, when)
        await done.wait()
    return late


def summarize(late: list[float]) -> dict[str, float]:
    s = sorted(late)
    return {
        "p50_ms": percentile(s, 50) * 1e3,
        "p99_ms": percentile(s, 99) * 1e3,
        "max_ms": s[-1] * 1e3,
        "min_ms": s[0] * 1e3,
        "early": sum(1 for x in s if x < 0),
    }


def curve(late: list[float]) -> dict[str, list[float]]:
    s = sorted(late)
    xs = [0.0, 1, 5, 10, 25, 50, 75, 90, 95, 99, 99.5, 99.9, 100]
    return {"x": xs, "y": [percentile(s, x) * 1e3 for x in xs]}


def run(quick: bool) -> dict[str, dict[str, Any]]:
    """Lateness on every available backend, duetime against the raw baseline."""
    n, spread = (2_000, 0.3) if quick else (10_000, 1.0)
    judge = not quick
    out: dict[str, dict[str, Any]] = {}
    values: dict[str, float] = {}
    curves: dict[str, dict[str, list[float]]] = {}
    ratios = []
    early: dict[str, int] = {}
    stats: dict[str, dict[str, float]] = {}
    for backend in backends():
        if backend == "trio":
            base_label = "anyio task per timer (trio)"
            base = run_on(backend, lambda: task_lateness(n, spread))
        else:
            base_label = f"{backend} loop.call_at"
            base = run_on(backend, lambda: raw_lateness(n, spread))
        ours = run_on(backend, lambda: duetime_lateness(n, spread))
        b, o = summarize(base), summarize(ours)
        label = f"duetime ({backend})"
        stats[base_label], stats[label] = b, o
        values[f"{base_label} p99"] = b["p99_ms"]
        values[f"{label} p99"] = o["p99_ms"]
        curves[base_label], curves[label] = curve(base), curve(ours)
        early[base_label], early[label] = int(b["early"]), int(o["early"])
        diff = o["p99_ms"] - b["p99_ms"]
        ratios.append(
            ratio(f"duetime p99 - {base_label} p99 (ms)", diff, "<= +0.5 ms", le(diff, 0.5, judge))
        )
        ratios.append(ratio(f"duetime early fires ({backend})", o["early"], "0", o["early"] == 0))
    notes = [
        f"{k}: p50 {v['p50_ms']:.3f} ms, p99 {v['p99_ms']:.3f} ms, max {v['max_ms']:.2f} ms, "
        f"min {v['min_ms']:.3f} ms, early {int(v['early'])}"
        for k, v in stats.items()
    ]
    out["lateness"] = {
        "title": f"lateness of {n:,} timers spread over {spread:g} s (loop clock)",
        "unit": "ms",
        "values": values,
        "ratios": ratios,
        "stats": stats,
        "early_fires": early,
        "curves": curves,
        "xlabel": "percentile",
        "ylabel": "lateness (ms, negative = early)",
        "ylog": True,
        "linthresh": 0.1,
        "notes": notes,
    }
    return out


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2))
