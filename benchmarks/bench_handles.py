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
  SAQ and streaq on the same server beside it (``saq_wakeups``,
  ``streaq_wakeups``), each when installed.
- **awaiters**: 10,000 tasks each awaiting its own entry on a MemoryStore
  (nothing due), on asyncio and on trio: the memory they add beyond the tasks
  themselves (10,000 bare tasks waiting on one Event subtracted), as traced
  bytes (tracemalloc) and as RSS growth (each measured in a fresh process),
  and the number of watcher tasks (1).

Run alone with ``python benchmarks/bench_handles.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import gc
import json
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from _common import (  # noqa: E402
    backends,
    have,
    le,
    percentile,
    ratio,
    rss_bytes,
    run_on,
    start_redis,
)

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


async def saq_wakeups(url: str, n: int) -> tuple[list[float], int]:
    """SAQ's nearest equivalent on the same server: a ``Worker`` on one ``Queue``
    object, a producer on another (its own connections) that enqueues a job
    returning ``time.time()`` and awaits it with ``job.refresh(until_complete=...)``
    (pub/sub on the job's channel; ``Queue.apply`` polls every 0.5 s instead).
    A wait that outlasts ``until_complete`` (a finish published before the
    producer subscribed), or one that ends without the job's result, is counted
    as missed, not timed."""
    from saq import Queue, Worker

    async def saq_stamp(ctx: Any) -> float:
        return time.time()

    worker_queue = Queue.from_url(url, name="bench-handles")
    producer = Queue.from_url(url, name="bench-handles")
    worker = Worker(worker_queue, functions=[("stamp", saq_stamp)], concurrency=10)
    running = asyncio.create_task(worker.start())
    await producer.connect()
    lat: list[float] = []
    missed = 0
    try:
        for _ in range(n):
            job = await producer.enqueue("stamp")
            assert job is not None
            try:
                await job.refresh(until_complete=SAQ_WAIT)
            except TimeoutError:
                missed += 1
                continue
            if job.result is None:  # woken without the result (seen once in 900 waits)
                missed += 1
                continue
            lat.append(time.time() - job.result)
    finally:
        await worker.stop()
        running.cancel()
        await producer.disconnect()
        await worker_queue.disconnect()
    return sorted(lat), missed


async def streaq_wakeups(url: str, n: int) -> list[float]:
    """streaq on the same server: a ``Worker`` running in this loop, a second
    ``Worker`` object used as the producer (its own connections), which enqueues
    the task by name and awaits ``task.result()`` (it subscribes to the task's
    channel, then reads the result, so no finish is missed)."""
    from streaq import Worker

    worker = Worker(redis_url=url, queue_name="bench-handles", concurrency=10, handle_signals=False)

    @worker.task
    async def streaq_stamp() -> float:
        return time.time()

    producer = Worker(redis_url=url, queue_name="bench-handles", handle_signals=False)
    lat: list[float] = []
    async with anyio.create_task_group() as tg:
        await tg.start(worker.run_async)
        async with producer:
            for _ in range(n):
                task = await producer.enqueue_unsafe(streaq_stamp.fn_name)
                done = await task.result(timeout=30)
                lat.append(time.time() - done.result)
        tg.cancel_scope.cancel()
    return sorted(lat)


#: How long the SAQ producer waits for one job's announced finish.
SAQ_WAIT = 5.0


# -- 10,000 awaiters ----------------------------------------------------------------------


async def _bare(n: int, mark: Callable[[], None]) -> None:
    """n tasks waiting on one Event (what any awaiting task costs); ``mark``
    before starting them and once they all wait."""

    async def bare(event: anyio.Event) -> None:
        await event.wait()

    release = anyio.Event()
    async with anyio.create_task_group() as tg:
        mark()
        for _ in range(n):
            tg.start_soon(bare, release)
        await anyio.sleep(0.1)
        mark()
        release.set()


async def _awaiting(n: int, mark: Callable[[], None]) -> dict[str, float]:
    """n tasks each awaiting its own entry on a MemoryStore (nothing due); ``mark``
    before starting them and once they all wait and the watcher is idle."""

    async def await_it(h: Deferred[None]) -> None:
        await h

    async with Scheduler(store=MemoryStore(), tasks=tasks, worker=False) as s:
        handles = await s.defer_many(never, [() for _ in range(n)], delay=3600)
        before = len(anyio.get_running_tasks())
        mark()
        async with anyio.create_task_group() as tg:
            for h in handles:
                tg.start_soon(await_it, h)
            # Every awaiter parked and the watcher idle again (its first read of
            # every key runs reader tasks; under tracemalloc it takes seconds).
            await anyio.sleep(0.5)
            for _ in range(600):
                if len(anyio.get_running_tasks()) <= before + n + 1:
                    break
                await anyio.sleep(0.1)
            mark()
            extra = len(anyio.get_running_tasks()) - before - n
            watched = s._client().watcher().watched
            tg.cancel_scope.cancel()
    return {"watched keys": float(watched), "tasks besides the awaiters": float(extra)}


def awaiters(n: int, backend: str = "asyncio") -> dict[str, float]:
    """The traced bytes (tracemalloc) of n awaiters and of n bare waiting tasks,
    each on a fresh loop of ``backend``."""
    marks: list[int] = []

    def mark() -> None:
        marks.append(tracemalloc.get_traced_memory()[0])

    tracemalloc.start()
    try:
        run_on(backend, lambda: _bare(n, mark))
        got = run_on(backend, lambda: _awaiting(n, mark))
    finally:
        tracemalloc.stop()
    bare_bytes, awaiting_bytes = marks[1] - marks[0], marks[3] - marks[2]
    return {
        "awaiters": float(n),
        **got,
        "MB with the awaiting tasks": awaiting_bytes / 1e6,
        "MB for n bare waiting tasks": bare_bytes / 1e6,
        "MB beyond bare tasks": (awaiting_bytes - bare_bytes) / 1e6,
    }


def awaiters_rss(n: int, backend: str, kind: str) -> float:
    """The RSS growth (bytes) of n awaiters (``kind`` "awaiting") or n bare waiting
    tasks ("bare"), without tracemalloc; run it in a fresh process (see
    :func:`rss_in_child`) so that neither reuses the other's freed memory."""
    marks: list[int] = []

    def mark() -> None:
        gc.collect()
        marks.append(rss_bytes())

    run_on(backend, lambda: (_awaiting if kind == "awaiting" else _bare)(n, mark))
    return float(marks[1] - marks[0])


def rss_in_child(n: int, backend: str, kind: str) -> float:
    code = (
        f"import sys; sys.path.insert(0, {str(HERE)!r}); import bench_handles as b;"
        f" print(b.awaiters_rss({n}, {backend!r}, {kind!r}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.split()[-1])


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
                if have("saq"):
                    lat["SAQ (same server)"], missed = asyncio.run(saq_wakeups(url, n))
                    notes.append(
                        f"SAQ: job.refresh(until_complete={SAQ_WAIT}) missed {missed} of {n}"
                        " finishes (timed out, or woke without the result)"
                    )
                else:
                    notes.append("SAQ: skipped (not installed)")
                if have("streaq"):
                    lat["streaq (same server)"] = anyio.run(streaq_wakeups, url, n)
                    notes.append(
                        "streaq: task.result() returns after coredis's unsubscribe, which"
                        " waits out its 0.1 s unsubscription_timeout; the finish message"
                        " itself arrives within about 2 ms"
                    )
                else:
                    notes.append("streaq: skipped (not installed)")
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
        for peer in ("SAQ", "streaq"):
            if f"{peer} (same server)" in lat:
                peer99 = percentile(lat[f"{peer} (same server)"], 99) * 1e3
                ratios.append(ratio(f"Redis p99 / {peer} p99", p99 / peer99, "(reported)", None))
    r["handles_wakeup"] = {
        "title": f"an awaiter wakes after the finish, {n} sequential entries",
        "unit": "ms",
        "values": {k: percentile(v, 99) * 1e3 for k, v in lat.items()},
        "p50_ms": {k: percentile(v, 50) * 1e3 for k, v in lat.items()},
        "ratios": ratios,
        "notes": notes,
    }
    figures: dict[str, dict[str, float]] = {}
    for backend in [b for b in backends() if b != "uvloop"]:
        many = figures[backend] = awaiters(10_000, backend)
        for kind in ("awaiting", "bare"):
            many[f"RSS MB {kind}"] = rss_in_child(10_000, backend, kind) / 1e6
        many["RSS MB beyond bare tasks"] = many["RSS MB awaiting"] - many["RSS MB bare"]
    r["handles_awaiters"] = {
        "title": "10,000 concurrent awaiters on one MemoryStore, beyond 10,000 bare waiting tasks",
        "unit": "MB",
        "values": {
            f"{backend} {what}": many[f"{what} beyond bare tasks"]
            for backend, many in figures.items()
            for what in ("MB", "RSS MB")
        },
        "backends": figures,
        "ratios": [
            ratio(
                f"{backend} MB beyond bare tasks",
                many["MB beyond bare tasks"],
                "< 10",
                le(many["MB beyond bare tasks"], 10, judge),
            )
            for backend, many in figures.items()
        ]
        + [
            ratio(
                f"{backend} tasks besides the awaiters",
                many["tasks besides the awaiters"],
                "one watcher",
                le(many["tasks besides the awaiters"], 1, judge),
            )
            for backend, many in figures.items()
        ],
    }
    return r


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2))
