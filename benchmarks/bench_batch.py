"""lionherd-core's deadline patterns (its tutorial's, in plain anyio) as the baseline for
``duetime.process_batch``.

The baselines are the two patterns of lionherd-core's tutorial, written with anyio only:

- sequential: ``move_on_at(deadline)``, check the remaining time before each item;
- parallel: N workers on a bounded queue (a memory object stream), a sentinel to stop,
  each worker checking ``current_effective_deadline()`` before an item.

Both are instrumented for the accounting those patterns lack: completed, skipped, cut
off in flight, and ``wasted`` (seconds spent on items that did not complete).
``process_batch`` is measured on the same workloads when this duetime has it;
otherwise its side is reported as skipped.  ``--quick`` scales every duration by 0.2.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio
from _common import le, ratio

import duetime

SENTINEL = object()


async def sequential_pattern(n: int, dur: float, budget: float, min_time: float) -> dict[str, Any]:
    clock = anyio.current_time
    t0 = clock()
    deadline = t0 + budget
    completed = 0
    wasted = 0.0
    started_unfinished = 0
    with anyio.move_on_at(deadline):
        for _ in range(n):
            if deadline - clock() < min_time:
                break
            s = clock()
            try:
                await anyio.sleep(dur)
            finally:
                if clock() - s < dur * 0.999:  # cut off by the deadline
                    wasted += clock() - s
                    started_unfinished += 1
            completed += 1
    return {
        "completed": completed,
        "skipped": n - completed - started_unfinished,
        "cut_in_flight": started_unfinished,
        "wasted_s": wasted,
        "elapsed_s": clock() - t0,
    }


async def parallel_pattern(
    n: int, dur: float, budget: float, workers: int, min_time: float
) -> dict[str, Any]:
    clock = anyio.current_time
    t0 = clock()
    deadline = t0 + budget
    send, receive = anyio.create_memory_object_stream[object](100)
    acc = {"completed": 0, "skipped": 0, "cut": 0, "wasted": 0.0}

    async def worker() -> None:
        while True:
            item = await receive.receive()
            if item is SENTINEL:
                await send.send(SENTINEL)  # pass it on to the next worker
                return
            dl = anyio.current_effective_deadline()
            if dl - clock() < min_time:
                acc["skipped"] += 1  # the pattern drops these silently; we count them
                continue
            s = clock()
            try:
                await anyio.sleep(dur)
                acc["completed"] += 1
            finally:
                if clock() - s < dur * 0.999:
                    acc["cut"] += 1
                    acc["wasted"] += clock() - s

    async def producer() -> None:
        for i in range(n):
            await send.send(i)
        await send.send(SENTINEL)

    with anyio.move_on_at(deadline):
        async with anyio.create_task_group() as tg:
            for _ in range(workers):
                tg.start_soon(worker)
            tg.start_soon(producer)
    completed = int(acc["completed"])
    return {
        "completed": completed,
        "skipped": n - completed - int(acc["cut"]),
        "cut_in_flight": int(acc["cut"]),
        "wasted_s": acc["wasted"],
        "elapsed_s": clock() - t0,
    }


async def duetime_batch(n: int, dur: float, budget: float, workers: int) -> dict[str, Any]:
    process_batch = duetime.process_batch  # type: ignore[attr-defined]
    clock = anyio.current_time

    async def handler(item: int) -> int:
        await anyio.sleep(dur)
        return item

    t0 = clock()
    report = await process_batch(list(range(n)), handler, workers=workers, deadline=t0 + budget)
    return {
        "completed": len(report.completed),
        "skipped": len(report.skipped),
        "cut_in_flight": len(report.timed_out),
        "failed": len(report.failed),
        "wasted_s": report.wasted,
        "elapsed_s": clock() - t0,
        "deadline_reached": report.deadline_reached,
    }


def run(quick: bool) -> dict[str, dict[str, Any]]:
    """The two deadline scenarios, lionherd-core pattern vs process_batch."""
    k = 0.2 if quick else 1.0
    judge = not quick
    have_batch = hasattr(duetime, "process_batch")
    r: dict[str, dict[str, Any]] = {}
    cases = {
        "batch_sequential": ("20 items of 0.1 s, 1 worker, 1 s deadline", 20, 0.1 * k, 1.0 * k, 1),
        "batch_parallel": ("50 items of 0.05 s, 4 workers, 1 s deadline", 50, 0.05 * k, 1.0 * k, 4),
    }
    for name, (title, n, dur, budget, workers) in cases.items():
        if workers == 1:
            base = anyio.run(sequential_pattern, n, dur, budget, 0.01 * k)
        else:
            base = anyio.run(parallel_pattern, n, dur, budget, workers, 0.01 * k)
        values = {
            "lionherd-core pattern completed": base["completed"],
            "lionherd-core pattern wasted ms": base["wasted_s"] * 1e3,
            "lionherd-core pattern elapsed ms": base["elapsed_s"] * 1e3,
        }
        notes = [f"lionherd-core pattern: {base}"]
        ratios = []
        if have_batch:
            ours = anyio.run(duetime_batch, n, dur, budget, workers)
            values |= {
                "duetime process_batch completed": ours["completed"],
                "duetime process_batch wasted ms": ours["wasted_s"] * 1e3,
                "duetime process_batch elapsed ms": ours["elapsed_s"] * 1e3,
            }
            notes.append(f"duetime process_batch: {ours}")
            if workers == 1:
                ratios.append(
                    ratio(
                        "process_batch wasted (s)",
                        ours["wasted_s"],
                        "< 0.02 s",
                        le(ours["wasted_s"], 0.02 * k, judge),
                    )
                )
            else:
                ratios.append(
                    ratio(
                        "process_batch elapsed (s)",
                        ours["elapsed_s"],
                        "< 0.7 s, 50/50",
                        le(ours["elapsed_s"], 0.7 * k, judge) and ours["completed"] == n,
                    )
                )
        else:
            notes.append("duetime.process_batch is not in this build yet: its side is skipped")
        r[name] = {
            "title": title + (" (durations x0.2, quick)" if quick else ""),
            "unit": "",
            "values": values,
            "ratios": ratios,
            "notes": notes,
        }
    return r


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2))
