"""Core benchmarks: duetime against raw asyncio, as ratios measured in one process.

Run: ``python benchmarks/bench_core.py [--quick] [--out DIR]``.  Writes
``core.json`` and ``core.md`` to DIR (default ``bench-results/``).  Every figure is
the best of a few repeats, and every target is a ratio to a baseline measured in
the same run, so the machine's speed cancels out.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import platform
import sys
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

import duetime


def noop() -> None:
    pass


async def best_of(repeats: int, fn: Callable[[], Awaitable[float]]) -> float:
    results = []
    for _ in range(repeats):
        gc.collect()
        results.append(await fn())
    return min(results)


# -- schedule cost -------------------------------------------------------------


async def raw_schedule(n: int) -> float:
    loop = asyncio.get_running_loop()
    call_later = loop.call_later
    t0 = time.perf_counter()
    handles = [call_later(1000.0 + i * 1e-6, noop) for i in range(n)]
    elapsed = time.perf_counter() - t0
    for h in handles:
        h.cancel()
    return elapsed / n


async def duetime_schedule(n: int) -> float:
    async with duetime.Scheduler() as s:
        call_later = s.call_later
        t0 = time.perf_counter()
        handles = [call_later(1000.0 + i * 1e-6, noop) for i in range(n)]
        elapsed = time.perf_counter() - t0
        del handles
    return elapsed / n


# -- fire rate -----------------------------------------------------------------


async def raw_fire(n: int) -> float:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    count = 0

    def tick() -> None:
        nonlocal count
        count += 1
        if count == n:
            done.set()

    for _ in range(n):
        loop.call_later(0, tick)
    t0 = time.perf_counter()
    await done.wait()
    return time.perf_counter() - t0


async def duetime_fire(n: int) -> float:
    async with duetime.Scheduler() as s:
        done = anyio.Event()
        count = 0

        def tick() -> None:
            nonlocal count
            count += 1
            if count == n:
                done.set()

        for _ in range(n):
            s.call_later(0, tick)
        t0 = time.perf_counter()
        await done.wait()
        return time.perf_counter() - t0


# -- burst of call_soon --------------------------------------------------------


async def raw_burst(n: int) -> float:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    count = 0

    def tick() -> None:
        nonlocal count
        count += 1
        if count == n:
            done.set()

    t0 = time.perf_counter()
    for _ in range(n):
        loop.call_soon(tick)
    await done.wait()
    return time.perf_counter() - t0


async def duetime_burst(n: int) -> float:
    async with duetime.Scheduler() as s:
        done = anyio.Event()
        count = 0

        def tick() -> None:
            nonlocal count
            count += 1
            if count == n:
                done.set()

        t0 = time.perf_counter()
        for _ in range(n):
            s.call_soon(tick)
        await done.wait()
        return time.perf_counter() - t0


# -- async callbacks: runner reuse vs one task per callback ---------------------


async def task_per_callback(n: int, checkpoint: bool) -> float:
    done = anyio.Event()
    count = 0

    async def job() -> None:
        nonlocal count
        if checkpoint:
            await anyio.lowlevel.checkpoint()
        count += 1
        if count == n:
            done.set()

    async def delayed(delay: float) -> None:
        await anyio.sleep(delay)
        await job()

    async with anyio.create_task_group() as tg:
        t0 = time.perf_counter()
        for i in range(n):
            tg.start_soon(delayed, i * 1e-5)
        await done.wait()
        return time.perf_counter() - t0


async def duetime_async(n: int, checkpoint: bool) -> float:
    done = anyio.Event()
    count = 0

    async def job() -> None:
        nonlocal count
        if checkpoint:
            await anyio.lowlevel.checkpoint()
        count += 1
        if count == n:
            done.set()

    async with duetime.Scheduler() as s:
        t0 = time.perf_counter()
        for i in range(n):
            s.call_later(i * 1e-5, job)
        await done.wait()
        return time.perf_counter() - t0


# -- memory per pending entry --------------------------------------------------


async def raw_memory(n: int) -> float:
    loop = asyncio.get_running_loop()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for i in range(n):
        loop.call_later(1000.0 + i * 1e-6, noop)
    used = tracemalloc.get_traced_memory()[0] - base
    tracemalloc.stop()
    for h in list(loop._scheduled):  # type: ignore[attr-defined]
        h.cancel()
    return used / n


async def duetime_memory(n: int) -> float:
    async with duetime.Scheduler() as s:
        gc.collect()
        tracemalloc.start()
        base = tracemalloc.get_traced_memory()[0]
        for i in range(n):
            s.call_later(1000.0 + i * 1e-6, noop)
        used = tracemalloc.get_traced_memory()[0] - base
        tracemalloc.stop()
    return used / n


# -- cancel ----------------------------------------------------------------------


async def duetime_cancel(n: int) -> tuple[float, int]:
    async with duetime.Scheduler() as s:
        handles = [s.call_later(1000.0 + i * 1e-6, noop) for i in range(n)]
        t0 = time.perf_counter()
        for h in handles:
            h.cancel()
        elapsed = time.perf_counter() - t0
        left = len(s._entries)
    return elapsed / n, left


async def run_all(quick: bool) -> dict[str, Any]:
    n = 20_000 if quick else 100_000
    burst = 2_000 if quick else 10_000
    repeats = 1 if quick else 3
    r: dict[str, Any] = {}

    raw = await best_of(repeats, lambda: raw_schedule(n))
    ours = await best_of(repeats, lambda: duetime_schedule(n))
    r["schedule"] = {
        "raw_us": raw * 1e6,
        "duetime_us": ours * 1e6,
        "ratio": ours / raw,
        "target": "<= 1.0",
    }

    raw = await best_of(repeats, lambda: raw_fire(n))
    ours = await best_of(repeats, lambda: duetime_fire(n))
    r["fire_sync"] = {
        "raw_per_s": n / raw,
        "duetime_per_s": n / ours,
        "ratio": ours / raw,
        "target": "<= 0.8 (time to fire all)",
    }

    raw = await best_of(repeats, lambda: raw_burst(burst))
    ours = await best_of(repeats, lambda: duetime_burst(burst))
    r["burst_call_soon"] = {
        "raw_ms": raw * 1e3,
        "duetime_ms": ours * 1e3,
        "ratio": ours / raw,
        "target": "<= 2.0",
    }

    for checkpoint in (False, True):
        key = "fire_async_checkpoint" if checkpoint else "fire_async"
        base = await best_of(repeats, lambda cp=checkpoint: task_per_callback(burst, cp))  # type: ignore[misc]
        ours = await best_of(repeats, lambda cp=checkpoint: duetime_async(burst, cp))  # type: ignore[misc]
        r[key] = {
            "task_per_callback_per_s": burst / base,
            "duetime_per_s": burst / ours,
            "speedup": base / ours,
            "target": ">= 1.5",
        }

    raw = await raw_memory(n)
    ours = await duetime_memory(n)
    r["memory"] = {"raw_bytes": raw, "duetime_bytes": ours, "ratio": ours / raw, "target": "<= 1.2"}

    per, left = await duetime_cancel(n)
    r["cancel"] = {
        "duetime_per_s": 1 / per,
        "heap_left_after_cancel_all": left,
        "target": ">= 1M/s",
    }
    return r


def to_markdown(results: dict[str, Any]) -> str:
    lines = ["| scenario | figures | ratio | target |", "|---|---|---|---|"]
    for name, fig in results.items():
        ratio = fig.get("ratio", fig.get("speedup", ""))
        figures = ", ".join(
            f"{k}={v:,.2f}" if isinstance(v, float) else f"{k}={v}"
            for k, v in fig.items()
            if k not in ("ratio", "speedup", "target")
        )
        ratio_s = f"{ratio:.2f}x" if isinstance(ratio, float) else ""
        lines.append(f"| {name} | {figures} | {ratio_s} | {fig['target']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, one repeat (smoke)")
    parser.add_argument("--out", default="bench-results", help="output directory")
    args = parser.parse_args(argv)
    results = asyncio.run(run_all(args.quick))
    meta = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "anyio": anyio.__version__ if hasattr(anyio, "__version__") else "?",
        "quick": args.quick,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "core.json").write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    table = to_markdown(results)
    (out / "core.md").write_text(table + "\n")
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
