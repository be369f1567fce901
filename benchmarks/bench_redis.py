"""Durable work on Redis: duetime's RedisStore against arq and SAQ, on one server, one run.

The module starts its own ``redis-server`` (no persistence) on a free loopback
port and skips cleanly if the binary or coredis is missing; arq and SAQ are
skipped one by one when not installed.  Figures:

- **enqueue**: one producer, each enqueue awaited (duetime: ``RedisStore.add``
  of one row, and of batches of 100; arq ``enqueue_job``; SAQ ``enqueue``);
- **throughput**: N no-op entries due now, 4 worker processes started at one
  instant, until all have run (duetime: ``claim`` 100, run, then the finishes
  as one group commit, ``finish_many``; also with one ``finish_many`` call per
  entry);
- **lateness**: entries due over a few seconds, 4 idle workers; lateness =
  when the task ran - when it was due (arq polls every 0.5 s, SAQ every 1 s and
  schedules to whole seconds);
- **wake-up**: an idle worker process, another process enqueues an entry due
  now; latency = task start - enqueue call.

duetime is measured twice: a loop on the store API (claim -> run -> fenced
finish; the store's own ceiling), and the real runner (``Scheduler(store=...,
tasks=...)``, what ``python -m duetime worker`` runs: throughput at
``max_concurrency`` 16 and 100, lateness and wake-up at 16).  The judged
lateness and wake-up figures are the real runner's.  Worker processes run this
file with ``worker`` arguments.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from _common import ge, have, le, percentile, ratio, start_redis  # noqa: E402

WORKERS = 4
#: max_concurrency of the real-runner workers measured (16 is the default).
RUNNER_CONCURRENCY = (16, 100)


# -- the server ----------------------------------------------------------------------


async def _flush(url: str) -> None:
    import coredis

    async with coredis.Redis.from_url(url) as client:
        await client.flushall()


# -- duetime -------------------------------------------------------------------------


async def dt_enqueue(url: str, n: int, batch: int) -> float:
    from duetime.durable import NewRow, RedisStore

    async with RedisStore(url, prefix="bench") as store:
        rows = [NewRow(f"e{i}", "noop", "[]", delay=3600.0) for i in range(n)]
        t0 = time.perf_counter()
        for i in range(0, n, batch):
            await store.add(rows[i : i + batch])
        return n / (time.perf_counter() - t0)


async def dt_fill(url: str, n: int, due: list[float] | None = None) -> None:
    from duetime.durable import NewRow, RedisStore

    async with RedisStore(url, prefix="bench") as store:
        for i in range(0, n, 500):
            rows = [
                NewRow(f"k{j}", "noop", "[]", delay=0.0)
                if due is None
                else NewRow(f"k{j}", "noop", "[]", due=due[j])
                for j in range(i, min(n, i + 500))
            ]
            await store.add(rows)


async def dt_worker(url: str, mode: str, start: float, stop: float) -> dict[str, Any]:
    import anyio

    from duetime.durable import Done, RedisStore

    owner = f"bench-{os.getpid()}"
    lat: list[float] = []
    n, last = 0, 0.0
    async with RedisStore(url, prefix="bench", poll=1.0) as store:
        await anyio.sleep(max(0.0, start - time.time()))
        while True:
            claims = await store.claim(owner, 100)
            if claims:
                now = time.time()
                for c in claims:  # the no-op task, run as soon as claimed
                    if mode == "lateness":
                        lat.append(now - c.entry.due.timestamp())
                    elif mode == "wakeup":
                        lat.append(now - json.loads(c.payload)[0])
                if mode == "each":
                    async with anyio.create_task_group() as tg:
                        for c in claims:
                            tg.start_soon(store.finish_many, [(c.entry.key, c.token, Done())])
                else:
                    await store.finish_many([(c.entry.key, c.token, Done()) for c in claims])
                n += len(claims)
                last = time.time()
                continue
            if mode in ("batch", "each") or time.time() >= stop:
                break
            head, now = await store.head(), await store.time()
            wait = 1.0 if head is None else max(0.0, head - now)
            await store.wait_changed(min(wait, max(0.0, stop - time.time())))
    return {"n": n, "last": last, "lat": lat}


async def rt_worker(url: str, mode: str, start: float, stop: float) -> dict[str, Any]:
    """A real worker: ``Scheduler(store=RedisStore, tasks=..., max_concurrency=C)``,
    what ``python -m duetime worker`` runs.  ``runner-C``: until the store is empty;
    ``lateness``/``wakeup`` (concurrency 16, the default): until ``stop``."""
    import anyio

    import duetime
    from duetime.durable import RedisStore

    tasks = duetime.TaskRegistry()
    state = {"n": 0, "last": 0.0}
    lat: list[float] = []

    @tasks.task("noop")
    async def noop(*sent: float) -> None:
        now = time.time()
        state["n"] += 1
        state["last"] = now
        if mode == "lateness":
            lat.append(now - duetime.current_entry().due.timestamp())
        elif mode == "wakeup":
            lat.append(now - sent[0])

    store = RedisStore(url, prefix="bench", poll=1.0)
    drain = mode.startswith("runner")
    concurrency = int(mode.rpartition("-")[2]) if drain else 16
    # Entered (connected) before the start; the entries are due at the start, so the
    # workers' claim loops wake for them together (rate measured from the start).
    async with duetime.Scheduler(store=store, tasks=tasks, max_concurrency=concurrency):
        await anyio.sleep(max(0.0, start - time.time()))
        if drain:
            # A worker may get no entry at all when the others drain the store
            # first (a loaded machine): empty for a second is empty.
            empty_since: float | None = None
            while True:
                if await store.head() is not None:
                    empty_since = None
                elif state["n"]:
                    break
                elif empty_since is None:
                    empty_since = time.monotonic()
                elif time.monotonic() - empty_since > 1.0:
                    break
                await anyio.sleep(0.05)
        else:
            await anyio.sleep(max(0.0, stop - time.time()))
    return {"n": state["n"], "last": state["last"], "lat": lat}


# -- arq -----------------------------------------------------------------------------


async def arq_enqueue(url: str, n: int) -> float:
    from arq import create_pool
    from arq.connections import RedisSettings

    pool = await create_pool(RedisSettings.from_dsn(url))
    t0 = time.perf_counter()
    for _ in range(n):
        await pool.enqueue_job("noop", _defer_by=3600)
    rate = n / (time.perf_counter() - t0)
    await pool.aclose()
    return rate


async def arq_fill(url: str, n: int, due: list[float] | None = None) -> None:
    from datetime import UTC, datetime

    from arq import create_pool
    from arq.connections import RedisSettings

    pool = await create_pool(RedisSettings.from_dsn(url))
    for i in range(n):
        if due is None:
            await pool.enqueue_job("noop")
        else:
            when = datetime.fromtimestamp(due[i], UTC)
            await pool.enqueue_job("noop", due=due[i], _defer_until=when)
    await pool.aclose()


async def arq_worker(url: str, mode: str, start: float, stop: float) -> dict[str, Any]:
    from arq.connections import RedisSettings
    from arq.worker import Worker, func

    lat: list[float] = []
    state = {"n": 0, "last": 0.0}

    async def noop(ctx: Any, due: float | None = None, sent: float | None = None) -> None:
        now = time.time()
        state["n"] += 1
        state["last"] = now
        if due is not None:
            lat.append(now - due)
        if sent is not None:
            lat.append(now - sent)

    worker = Worker(
        functions=[func(noop, name="noop")],
        redis_settings=RedisSettings.from_dsn(url),
        burst=mode == "batch",
        handle_signals=False,
        max_jobs=100,
        keep_result=0,
        log_results=False,
    )
    await asyncio.sleep(max(0.0, start - time.time()))
    try:
        if mode == "batch":
            await worker.main()
        else:
            await asyncio.wait_for(worker.main(), max(0.1, stop - time.time()))
    except TimeoutError:
        pass
    finally:
        await worker.close()
    return {"n": state["n"], "last": state["last"], "lat": lat}


# -- SAQ -----------------------------------------------------------------------------


async def saq_enqueue(url: str, n: int) -> float:
    from saq import Queue

    queue = Queue.from_url(url)
    await queue.connect()
    t0 = time.perf_counter()
    for _ in range(n):
        await queue.enqueue("noop", scheduled=int(time.time()) + 3600)
    rate = n / (time.perf_counter() - t0)
    await queue.disconnect()
    return rate


async def saq_fill(url: str, n: int, due: list[float] | None = None) -> None:
    from saq import Queue

    queue = Queue.from_url(url)
    await queue.connect()
    for i in range(n):
        if due is None:
            await queue.enqueue("noop")
        else:  # SAQ schedules to whole epoch seconds
            await queue.enqueue("noop", scheduled=int(due[i]), due=float(int(due[i])))
    await queue.disconnect()


async def saq_worker(url: str, mode: str, start: float, stop: float) -> dict[str, Any]:
    from saq import Queue, Worker

    lat: list[float] = []
    state = {"n": 0, "last": 0.0}

    async def noop(ctx: Any, *, due: float | None = None, sent: float | None = None) -> None:
        now = time.time()
        state["n"] += 1
        state["last"] = now
        if due is not None:
            lat.append(now - due)
        if sent is not None:
            lat.append(now - sent)

    queue = Queue.from_url(url)
    await queue.connect()
    burst = mode == "batch"
    worker = Worker(
        queue, functions=[("noop", noop)], concurrency=100, burst=burst, dequeue_timeout=0.5
    )
    await asyncio.sleep(max(0.0, start - time.time()))
    try:
        if burst:
            await worker.start()
        else:
            await asyncio.wait_for(worker.start(), max(0.1, stop - time.time()))
    except TimeoutError:
        pass
    finally:
        await worker.stop()
        await queue.disconnect()
    return {"n": state["n"], "last": state["last"], "lat": lat}


# -- the parent: processes, then the figures -------------------------------------------


def _spawn(kind: str, url: str, mode: str, start: float, stop: float) -> subprocess.Popen[str]:
    args = [sys.executable, __file__, "worker", kind, url, mode, repr(start), repr(stop)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, text=True)


def _collect(procs: list[subprocess.Popen[str]]) -> list[dict[str, Any]]:
    out = []
    for proc in procs:
        stdout, _ = proc.communicate(timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"a worker failed ({proc.returncode})")
        out.append(json.loads(stdout.strip().splitlines()[-1]))
    return out


FILL = {"duetime": dt_fill, "duetime-each": dt_fill, "arq": arq_fill, "saq": saq_fill}
FILL |= {f"runner-{c}": dt_fill for c in RUNNER_CONCURRENCY} | {"runner": dt_fill}


def _throughput(kind: str, url: str, n: int) -> float:
    asyncio.run(_flush(url))
    if kind.startswith("runner"):  # due at the start: the real runner claims when due
        start = time.time() + 3.0
        asyncio.run(dt_fill(url, n, [start] * n))
    else:
        asyncio.run(FILL[kind](url, n))
        start = time.time() + 1.5  # every worker connected by then
    mode = "each" if kind == "duetime-each" else kind if kind.startswith("runner") else "batch"
    base = "duetime" if kind.startswith("duetime") else kind.partition("-")[0]
    results = _collect([_spawn(base, url, mode, start, start + 600) for _ in range(WORKERS)])
    done = sum(r["n"] for r in results)
    if done != n:
        raise RuntimeError(f"{kind}: {done} of {n} entries ran")
    return float(n / (max(r["last"] for r in results) - start))


def _lateness(kind: str, url: str, n: int, spread: float) -> list[float]:
    asyncio.run(_flush(url))
    start = time.time() + 1.5
    due = [start + 1.0 + spread * i / n for i in range(n)]
    stop = due[-1] + 3.0  # arq polls every 0.5 s, SAQ every 1 s: they get the time to catch up
    procs = [_spawn(kind, url, "lateness", start, stop) for _ in range(WORKERS)]
    asyncio.run(FILL[kind](url, n, due))
    results = _collect(procs)
    lat = sorted(x for r in results for x in r["lat"])
    if len(lat) != n:
        raise RuntimeError(f"{kind}: {len(lat)} of {n} due entries ran")
    return lat


async def _send(kind: str, url: str, n: int, gap: float) -> None:
    if kind in ("duetime", "runner"):
        from duetime.durable import NewRow, RedisStore

        async with RedisStore(url, prefix="bench") as store:
            for i in range(n):
                await asyncio.sleep(gap)
                await store.add([NewRow(f"w{i}", "noop", json.dumps([time.time()]), delay=0.0)])
    elif kind == "arq":
        from arq import create_pool
        from arq.connections import RedisSettings

        pool = await create_pool(RedisSettings.from_dsn(url))
        for _ in range(n):
            await asyncio.sleep(gap)
            await pool.enqueue_job("noop", sent=time.time())
        await pool.aclose()
    else:
        from saq import Queue

        queue = Queue.from_url(url)
        await queue.connect()
        for _ in range(n):
            await asyncio.sleep(gap)
            await queue.enqueue("noop", sent=time.time())
        await queue.disconnect()


def _wakeup(kind: str, url: str, n: int) -> list[float]:
    asyncio.run(_flush(url))
    start = time.time() + 1.5
    gap = 0.03 if kind in ("duetime", "runner") else 0.6  # arq polls every 0.5 s
    stop = start + 1.0 + n * (gap + 0.01) + 2.0
    proc = _spawn(kind, url, "wakeup", start, stop)
    time.sleep(max(0.0, start + 0.5 - time.time()))
    asyncio.run(_send(kind, url, n, gap))
    (result,) = _collect([proc])
    lat = sorted(result["lat"])
    if len(lat) != n:
        raise RuntimeError(f"{kind}: {len(lat)} of {n} wake-ups ran")
    return lat


def run(quick: bool) -> dict[str, dict[str, Any]]:
    """duetime's RedisStore against arq and SAQ on one private redis-server."""
    if shutil.which("redis-server") is None:
        return {
            "redis": {"skipped": "redis-server is not installed (apt-get install redis-server)"}
        }
    if not have("coredis"):
        return {"redis": {"skipped": "coredis is not installed (pip install -e '.[bench]')"}}
    peers = [p for p in ("arq", "saq") if have(p)]
    notes = [
        f"{p} is not installed (pip install -e '.[bench]'): skipped"
        for p in ("arq", "saq")
        if p not in peers
    ]
    judge = not quick
    n_enq, n_tp, n_each, n_lat, n_wake = (
        (300, 2_000, 1_000, 100, 20) if quick else (2_000, 20_000, 8_000, 400, 100)
    )
    spread = 1.0 if quick else 3.0
    r: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as directory:
        server, url = start_redis(directory)
        try:
            version = subprocess.run(
                ["redis-server", "--version"], capture_output=True, text=True, check=False
            ).stdout.split()[2]
            notes.append(f"redis-server {version.removeprefix('v=')} on loopback, no persistence")

            enq: dict[str, float] = {}
            asyncio.run(_flush(url))
            enq["duetime add (1 row)"] = asyncio.run(dt_enqueue(url, n_enq, 1))
            asyncio.run(_flush(url))
            enq["duetime add (batches of 100)"] = asyncio.run(dt_enqueue(url, n_enq * 5, 100))
            if "arq" in peers:
                asyncio.run(_flush(url))
                enq["arq enqueue_job"] = asyncio.run(arq_enqueue(url, n_enq))
            if "saq" in peers:
                asyncio.run(_flush(url))
                enq["SAQ enqueue"] = asyncio.run(saq_enqueue(url, n_enq))
            one = enq["duetime add (1 row)"]
            r["redis_enqueue"] = {
                "title": "enqueue one entry due later, awaited, one producer",
                "unit": "entries/s",
                "lower_is_better": False,
                "values": enq,
                "ratios": [
                    ratio("duetime add (1 row), entries/s", one, ">= 1500", ge(one, 1500, judge)),
                    ratio(
                        "batches of 100 / 1 row",
                        enq["duetime add (batches of 100)"] / one,
                        ">= 10",
                        ge(enq["duetime add (batches of 100)"] / one, 10, judge),
                    ),
                ],
                "notes": notes,
            }

            tp: dict[str, float] = {}
            tp["duetime (finish_many per claim)"] = _throughput("duetime", url, n_tp)
            tp["duetime (a finish per entry)"] = _throughput("duetime-each", url, n_each)
            for c in RUNNER_CONCURRENCY:  # the real worker: Scheduler(store=..., tasks=...)
                tp[f"duetime runner (max_concurrency {c})"] = _throughput(f"runner-{c}", url, n_tp)
            if "arq" in peers:
                tp["arq (max_jobs=100)"] = _throughput("arq", url, n_tp // 4)
            if "saq" in peers:
                tp["SAQ (concurrency=100)"] = _throughput("saq", url, n_tp // 4)
            best = tp["duetime (finish_many per claim)"]
            r["redis_throughput"] = {
                "title": f"claim + run + finish, {WORKERS} worker processes, no-op task",
                "unit": "entries/s",
                "lower_is_better": False,
                "values": tp,
                "ratios": [
                    ratio("duetime entries/s", best, ">= 20000", ge(best, 20_000, judge)),
                    ratio(
                        "duetime, a finish per entry, entries/s",
                        tp["duetime (a finish per entry)"],
                        "(report)",
                        None,
                    ),
                ],
                "notes": [
                    f"duetime: {n_tp:,} entries (one finish per entry: {n_each:,}); "
                    f"arq and SAQ: {n_tp // 4:,}"
                ],
            }

            lat: dict[str, list[float]] = {"duetime": _lateness("duetime", url, n_lat, spread)}
            lat["duetime runner"] = _lateness("runner", url, n_lat, spread)
            for peer in peers:
                lat[peer] = _lateness(peer, url, n_lat, spread)
            p99 = percentile(lat["duetime runner"], 99) * 1e3
            r["redis_lateness"] = {
                "title": f"lateness p99 of {n_lat} entries due over {spread:.0f} s, idle workers",
                "unit": "ms",
                "values": {k: percentile(v, 99) * 1e3 for k, v in lat.items()},
                "ratios": [ratio("duetime runner p99 ms", p99, "<= 10", le(p99, 10, judge))],
                "p50_ms": {k: percentile(v, 50) * 1e3 for k, v in lat.items()},
                "notes": [
                    "arq polls every 0.5 s (poll_delay); SAQ schedules to whole seconds and "
                    "moves due jobs every 1 s"
                ],
            }

            wake: dict[str, list[float]] = {"duetime": _wakeup("duetime", url, n_wake)}
            wake["duetime runner"] = _wakeup("runner", url, n_wake)
            for peer in peers:
                wake[peer] = _wakeup(peer, url, max(10, n_wake // 5))
            p99w = percentile(wake["duetime runner"], 99) * 1e3
            r["redis_wakeup"] = {
                "title": "wake-up: another process enqueues an entry due now, idle worker",
                "unit": "ms",
                "values": {k: percentile(v, 99) * 1e3 for k, v in wake.items()},
                "ratios": [ratio("duetime runner p99 ms", p99w, "<= 5", le(p99w, 5, judge))],
                "p50_ms": {k: percentile(v, 50) * 1e3 for k, v in wake.items()},
                "notes": [
                    "duetime: pub/sub on the head; arq polls every 0.5 s; SAQ blocks on a list"
                ],
            }
        finally:
            server.terminate()
            server.wait(timeout=10)
    return r


def _worker_main(kind: str, url: str, mode: str, start: float, stop: float) -> None:
    if kind == "duetime":
        import anyio

        result = anyio.run(dt_worker, url, mode, start, stop)
    elif kind == "runner":
        import anyio

        result = anyio.run(rt_worker, url, mode, start, stop)
    elif kind == "arq":
        result = asyncio.run(arq_worker(url, mode, start, stop))
    else:
        result = asyncio.run(saq_worker(url, mode, start, stop))
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        _worker_main(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5]), float(sys.argv[6]))
    else:
        print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
