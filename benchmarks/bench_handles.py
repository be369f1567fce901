"""Durable handles: how soon an awaiter wakes after a finish, and what 10,000 awaiters cost.

Figures:

- **wake-up**: a worker (one Scheduler, ``worker=True``) and an awaiter (another
  Scheduler, ``worker=False``, on its own store object: a connection of its
  own, as in another process) share one store.  The awaiter defers a task
  that returns ``time.time()`` and awaits it; latency = when the await
  returned - when the task returned (the finish group commit, the store's
  announcement and the watcher's read of the key all fall in it).  SQLite
  (``poll`` 0.05 s, the awaiter's ``data_version`` poll) and Redis (pub/sub on
  ``{prefix}:done``, a private ``redis-server``, skipped without it).
- **awaiters**: 10,000 tasks each awaiting its own entry on a MemoryStore
  (nothing due): the memory they add beyond the tasks themselves (tracemalloc,
  10,000 bare tasks waiting on an Event subtracted) and the number of watcher
  tasks (1).

Run alone with ``python benchmarks/bench_handles.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import json
import shutil
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from _common import have, le, percentile, ratio, start_redis  # noqa: E402

from duetime import Deferred, Scheduler  # noqa: E402
from duetime.durable import MemoryStore, SQLiteStore, Store, TaskRegistry  # noqa: E402

tasks = TaskRegistry()


@tasks.task("bench.stamp")
async def stamp() -> float:
    return time.time()


@tasks.task("bench.never")
async def never() -> None:
    return None


# -- wake-up latency ------------------------------------------------------------------


async def wakeups(worker_store: Store, awaiter_store: Store, n: int) -> list[float]:
    lat: list[float] = []
    async with (
        Scheduler(store=worker_store, tasks=tasks, worker=True),
        Scheduler(store=awaiter_store, tasks=tasks, worker=False) as web,
    ):
        for _ in range(n):
            d = await web.defer(stamp)
            returned = await d.result(timeout=30)
            lat.append(time.time() - returned)
    return sorted(lat)


# -- 10,000 awaiters ----------------------------------------------------------------------


async def awaiters(n: int) -> dict[str, float]:
    import anyio

    async def bare(event: anyio.Event) -> None:
        await event.wait()

    async def await_it(h: Deferred[None]) -> None:
        await h

    tracemalloc.start()
    # The baseline: n tasks waiting on one Event (what any awaiting task costs).
    release = anyio.Event()
    async with anyio.create_task_group() as tg:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(n):
            tg.start_soon(bare, release)
        await asyncio.sleep(0.1)
        bare_bytes = tracemalloc.get_traced_memory()[0] - before
        release.set()

    async with Scheduler(store=MemoryStore(), tasks=tasks, worker=False) as s:
        handles = await s.defer_many(never, [() for _ in range(n)], delay=3600)
        tasks_before = len(asyncio.all_tasks())
        before = tracemalloc.get_traced_memory()[0]
        async with anyio.create_task_group() as tg:
            for h in handles:
                tg.start_soon(await_it, h)
            # Every awaiter waiting and the watcher idle again (its first read of
            # every key runs reader tasks; under tracemalloc it takes seconds).
            await asyncio.sleep(0.5)
            for _ in range(600):
                if len(asyncio.all_tasks()) <= tasks_before + n + 1:
                    break
                await asyncio.sleep(0.1)
            awaiting_bytes = tracemalloc.get_traced_memory()[0] - before
            extra_tasks = len(asyncio.all_tasks()) - tasks_before - n
            watched = s._client().watcher().watched
            tg.cancel_scope.cancel()
    tracemalloc.stop()
    return {
        "awaiters": float(n),
        "watched keys": float(watched),
        "tasks besides the awaiters": float(extra_tasks),
        "MB with the awaiting tasks": awaiting_bytes / 1e6,
        "MB for n bare waiting tasks": bare_bytes / 1e6,
        "MB beyond bare tasks": (awaiting_bytes - bare_bytes) / 1e6,
    }


def run(quick: bool) -> dict[str, dict[str, Any]]:
    """Awaiter wake-up latency (SQLite, Redis) and the cost of 10,000 awaiters."""
    judge = not quick
    n = 50 if quick else 300
    r: dict[str, dict[str, Any]] = {}
    lat: dict[str, list[float]] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as directory:
        db = str(Path(directory) / "jobs.db")
        lat["SQLite (poll 0.05 s)"] = asyncio.run(
            wakeups(SQLiteStore(db, poll=0.05), SQLiteStore(db, poll=0.05), n)
        )
        if shutil.which("redis-server") is None or not have("coredis"):
            notes.append("Redis: skipped (redis-server or coredis missing)")
        else:
            from duetime.durable import RedisStore

            server, url = start_redis(directory)
            try:
                lat["Redis"] = asyncio.run(
                    wakeups(RedisStore(url, prefix="h"), RedisStore(url, prefix="h"), n)
                )
            finally:
                server.kill()
                server.wait()
    ratios = [
        ratio(
            "SQLite p99 ms",
            percentile(lat["SQLite (poll 0.05 s)"], 99) * 1e3,
            "<= poll + 50 (100)",
            le(percentile(lat["SQLite (poll 0.05 s)"], 99) * 1e3, 100, judge),
        )
    ]
    if "Redis" in lat:
        p99 = percentile(lat["Redis"], 99) * 1e3
        ratios.append(ratio("Redis p99 ms", p99, "<= 5", le(p99, 5, judge)))
    r["handles_wakeup"] = {
        "title": f"an awaiter wakes after the finish, {n} sequential entries",
        "unit": "ms",
        "values": {k: percentile(v, 99) * 1e3 for k, v in lat.items()},
        "p50_ms": {k: percentile(v, 50) * 1e3 for k, v in lat.items()},
        "ratios": ratios,
        "notes": notes,
    }
    many = asyncio.run(awaiters(10_000))
    beyond = many["MB beyond bare tasks"]
    r["handles_awaiters"] = {
        "title": "10,000 concurrent awaiters on one MemoryStore",
        "unit": "MB",
        "values": many,
        "ratios": [
            ratio("MB beyond bare tasks", beyond, "< 10", le(beyond, 10, judge)),
            ratio(
                "tasks besides the awaiters",
                many["tasks besides the awaiters"],
                "one watcher",
                le(many["tasks besides the awaiters"], 1, judge),
            ),
        ],
    }
    return r


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2))
