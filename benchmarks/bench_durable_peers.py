"""Durable jobs end to end, duetime beside APScheduler 4 on the same engine (SQLite).

Same machine, same run, each on its own temporary SQLite file:

- awaited defer: ``await scheduler.defer(task, i, "x")`` (codec, runner, SQLiteStore)
  vs APScheduler 4's ``await add_job`` and ``await add_schedule(DateTrigger)`` on its
  SQLAlchemy data store (``sqlite+aiosqlite``); and duetime's ``defer_many`` (100 a call);
- claim + run + finish of a no-op async task with 4 worker processes: duetime workers
  are ``Scheduler(store=SQLiteStore(db), tasks=..., max_concurrency=16 or 100)``
  (16 is the default; APScheduler's ``max_concurrent_jobs`` defaults to 100);
  APScheduler workers are ``AsyncScheduler(SQLAlchemyDataStore, role=worker)``.  Each
  worker records when it ran what; the rate is entries over the span from the first
  run to the last, and every entry must run exactly once.

Run as a worker: ``python bench_durable_peers.py --worker duetime16|duetime100|aps DB OUT N``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
from _common import ge, have, ratio

import duetime
from duetime import Scheduler, SQLiteStore, TaskRegistry

tasks = TaskRegistry()
_ran: list[str] = []
_times: list[float] = []


@tasks.task("bench.noop")
async def noop(i: int, s: str) -> None:
    _times.append(time.time())
    _ran.append(duetime.current_entry().key)


async def aps_noop(i: int, s: str) -> None:
    _times.append(time.time())
    _ran.append(str(i))


# -- duetime -------------------------------------------------------------------------


async def dt_awaited(db: Path, n: int) -> float:
    async with Scheduler(store=SQLiteStore(db), tasks=tasks, worker=False) as s:
        t0 = time.perf_counter()
        for i in range(n):
            await s.defer(noop, i, "x", key=f"a{i}", delay=3600)
        return n / (time.perf_counter() - t0)


async def dt_many(db: Path, n: int, size: int = 100) -> float:
    async with Scheduler(store=SQLiteStore(db), tasks=tasks, worker=False) as s:
        sets = [(i, "x") for i in range(n)]
        t0 = time.perf_counter()
        for i in range(0, n, size):
            await s.defer_many(noop, sets[i : i + size], delay=3600)
        return n / (time.perf_counter() - t0)


async def dt_fill(db: Path, n: int) -> None:
    async with Scheduler(store=SQLiteStore(db), tasks=tasks, worker=False) as s:
        for i in range(0, n, 500):
            await s.defer_many(noop, [(j, "x") for j in range(i, min(n, i + 500))])


async def dt_worker(db: str, out: str, concurrency: int) -> None:
    store = SQLiteStore(db)
    async with Scheduler(store=store, tasks=tasks, max_concurrency=concurrency):
        while True:
            await anyio.sleep(0.05)
            if await store.head() is None:
                break
    times = [_times[0], _times[-1]] if _times else []
    await anyio.Path(out).write_text(json.dumps({"times": times, "ran": _ran}))


# -- APScheduler 4 -------------------------------------------------------------------


def _aps(db: Path | str, role: str = "both") -> Any:
    from apscheduler import AsyncScheduler, SchedulerRole, TaskDefaults
    from apscheduler.datastores.sqlalchemy import SQLAlchemyDataStore
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(f"sqlite+aiosqlite:///{db}")
    return AsyncScheduler(
        SQLAlchemyDataStore(engine),
        role=getattr(SchedulerRole, role),
        task_defaults=TaskDefaults(max_running_jobs=None, job_executor="async"),
    )


async def aps_add_job(db: Path, n: int) -> float:
    async with _aps(db, "scheduler") as sched:
        await sched.configure_task("noop", func=aps_noop)
        t0 = time.perf_counter()
        for i in range(n):
            await sched.add_job("noop", args=(i, "x"))
        return n / (time.perf_counter() - t0)


async def aps_add_schedule(db: Path, n: int) -> float:
    from apscheduler.triggers.date import DateTrigger

    async with _aps(db, "scheduler") as sched:
        await sched.configure_task("noop", func=aps_noop)
        far = datetime.now(UTC) + timedelta(hours=1)
        t0 = time.perf_counter()
        for i in range(n):
            await sched.add_schedule("noop", DateTrigger(far), args=(i, "x"))
        return n / (time.perf_counter() - t0)


async def aps_fill(db: Path, n: int) -> None:
    async with _aps(db, "scheduler") as sched:
        await sched.configure_task("noop", func=aps_noop)
        for i in range(n):
            await sched.add_job("noop", args=(i, "x"))


async def aps_worker(db: str, out: str, n: int) -> None:
    error = None
    try:
        async with _aps(db, "worker") as sched:
            await sched.configure_task("noop", func=aps_noop)
            await sched.start_in_background()
            idle = stuck = 0
            left = -1
            # Until 1 s with nothing left to run, or 20 s without progress (with
            # 4 processes its SQLite store raises "database is locked" in workers,
            # and the jobs those held can stay acquired: counted as lost).
            while idle < 20 and stuck < 400:
                await anyio.sleep(0.05)
                jobs = await sched.data_store.get_jobs()
                idle = idle + 1 if not jobs else 0
                stuck = stuck + 1 if len(jobs) == left else 0
                left = len(jobs)
            await sched.stop()
    except BaseException as exc:  # APScheduler's SQLite store fails under 4 processes at times
        error = f"{type(exc).__name__}: {exc}"[:300]
    times = [_times[0], _times[-1]] if _times else []
    await anyio.Path(out).write_text(json.dumps({"times": times, "ran": _ran, "error": error}))


# -- the scenario --------------------------------------------------------------------


def _processes(kind: str, db: Path, tmp: Path, n: int, procs: int = 4) -> dict[str, Any]:
    outs = [tmp / f"{kind}{i}.json" for i in range(procs)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, str(db)]
    ps = [subprocess.Popen([*cmd, str(o), str(n)], env=env) for o in outs]
    for p in ps:
        if p.wait(timeout=600) != 0:
            raise RuntimeError(f"a {kind} benchmark worker exited with {p.returncode}")
    stats = [json.loads(o.read_text()) for o in outs]
    errors = [s["error"] for s in stats if s.get("error")]
    firsts = [s["times"][0] for s in stats if s["times"]]
    lasts = [s["times"][1] for s in stats if s["times"]]
    counts = Counter(k for s in stats for k in s["ran"])
    span = max(lasts) - min(firsts) if firsts else float("nan")
    return {
        "rate": len(counts) / span,
        "ran": len(counts),
        "double": sum(1 for c in counts.values() if c > 1),
        "lost": n - len(counts),
        "span_s": span,
        "per_worker": [len(s["ran"]) for s in stats],
        "worker_errors": errors,
    }


def run(quick: bool) -> dict[str, Any]:
    n_add = 1000 if quick else 5000
    n_many = 20000 if quick else 100000
    n_cf = 4000 if quick else 20000
    n_aps_cf = 1000 if quick else 4000
    judge = not quick
    if not (have("apscheduler") and have("sqlalchemy") and have("aiosqlite")):
        return {
            "durable_peers": {
                "skipped": "APScheduler 4 with SQLAlchemy and aiosqlite not installed"
                " (pip install -e '.[bench]')"
            }
        }
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        dt_one = anyio.run(dt_awaited, tmp / "d1.db", n_add)
        dt_batch = anyio.run(dt_many, tmp / "d2.db", n_many)
        aps_job = anyio.run(aps_add_job, tmp / "a1.db", n_add // 5)
        aps_sched = anyio.run(aps_add_schedule, tmp / "a2.db", n_add // 5)
        anyio.run(dt_fill, tmp / "dcf.db", n_cf)
        dt_cf = _processes("duetime16", tmp / "dcf.db", tmp, n_cf)
        anyio.run(dt_fill, tmp / "dcf100.db", n_cf)
        dt_cf100 = _processes("duetime100", tmp / "dcf100.db", tmp, n_cf)
        anyio.run(aps_fill, tmp / "acf.db", n_aps_cf)
        aps_cf = _processes("aps", tmp / "acf.db", tmp, n_aps_cf)
    return {
        "durable_peers_defer": {
            "title": "Awaited defer on SQLite: duetime vs APScheduler 4 (SQLAlchemy + aiosqlite)",
            "unit": "entries/s",
            "lower_is_better": False,
            "values": {
                "duetime defer": dt_one,
                "duetime defer_many (100/call)": dt_batch,
                "APScheduler add_job": aps_job,
                "APScheduler add_schedule": aps_sched,
            },
            "ratios": [
                ratio("defer entries/s", dt_one, ">= 4k/s", ge(dt_one, 4000, judge)),
                ratio(
                    "defer_many / defer",
                    dt_batch / dt_one,
                    ">= 10x",
                    ge(dt_batch / dt_one, 10, judge),
                ),
                ratio("defer / APScheduler add_job", dt_one / aps_job, "-", None),
            ],
        },
        "durable_peers_claim_run_finish": {
            "title": "Claim + run + finish, 4 worker processes, no-op task, one SQLite file",
            "unit": "entries/s",
            "lower_is_better": False,
            "values": {
                "duetime (max_concurrency 16, the default)": dt_cf["rate"],
                "duetime (max_concurrency 100)": dt_cf100["rate"],
                "APScheduler 4": aps_cf["rate"],
            },
            "ratios": [
                ratio(
                    "duetime entries/s", dt_cf["rate"], ">= 10k/s", ge(dt_cf["rate"], 10000, judge)
                ),
                ratio(
                    "duetime / APScheduler 4",
                    dt_cf["rate"] / aps_cf["rate"],
                    ">= 5x",
                    ge(dt_cf["rate"] / aps_cf["rate"], 5, judge),
                ),
            ],
            "notes": [
                f"duetime: {dt_cf}"[:400],
                f"duetime (100): {dt_cf100}"[:400],
                f"APScheduler 4: {aps_cf}"[:400],
            ],
        },
    }


if __name__ == "__main__":
    if len(sys.argv) >= 6 and sys.argv[1] == "--worker":
        kind, db, out, n = sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
        if kind.startswith("duetime"):  # duetime16, duetime100: max_concurrency
            anyio.run(dt_worker, db, out, int(kind.removeprefix("duetime")))
        else:
            anyio.run(aps_worker, db, out, n)
    else:
        print(json.dumps(run("--quick" in sys.argv), indent=2))
