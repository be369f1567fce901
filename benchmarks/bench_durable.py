"""Durable store throughput: SQLiteStore on a temporary file, store API only.

- awaited add: one row per ``await store.add([row])`` (what an awaited ``defer`` costs
  below the codec and the Scheduler);
- batch add: 100 rows per call (``defer_many``), rows per second;
- claim + finish with 4 worker processes: each loops ``claim(limit=100)`` then one
  ``finish_many`` with a fenced ``Done()`` per entry (a no-op task; the entries of a
  claim end together and a worker's finisher sends them as one group), all on one file; the
  rate is entries over the span from the first claim to the last finish (process
  start-up excluded).

Run as a worker: ``python bench_durable.py --worker DB OUT`` (used by the scenario).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from _common import ge, ratio

from duetime.durable import Done, NewRow, SQLiteStore


def _row(i: int) -> NewRow:
    return NewRow(key=f"k{i}", task="bench.noop", payload=json.dumps([i, "x"]), delay=0.0)


async def awaited_add(db: Path, n: int) -> float:
    async with SQLiteStore(db) as store:
        rows = [_row(i) for i in range(n)]
        t0 = time.perf_counter()
        for r in rows:
            await store.add([r])
        return n / (time.perf_counter() - t0)


async def batch_add(db: Path, n: int, size: int = 100) -> float:
    async with SQLiteStore(db) as store:
        rows = [_row(i) for i in range(n)]
        t0 = time.perf_counter()
        for i in range(0, n, size):
            await store.add(rows[i : i + size])
        return n / (time.perf_counter() - t0)


async def scheduler_defer(db: Path, n: int, size: int) -> float:
    """Rows/s through ``Scheduler.defer`` (``size`` 1, awaited one at a time) or
    ``defer_many`` (``size`` a call): the store's add plus the client's side,
    the argument checks, the codec and the entries and handles returned."""
    from duetime import Scheduler
    from duetime.durable import TaskRegistry

    tasks = TaskRegistry()

    @tasks.task("bench.noop")
    async def noop(i: int, s: str) -> None:
        pass

    async with Scheduler(store=SQLiteStore(db), tasks=tasks, worker=False) as s:
        t0 = time.perf_counter()
        if size == 1:
            for i in range(n):
                await s.defer("bench.noop", i, "x", delay=3600)
        else:
            for i in range(0, n, size):
                await s.defer_many("bench.noop", [(j, "x") for j in range(i, i + size)], delay=3600)
        return n / (time.perf_counter() - t0)


async def _fill(db: Path, n: int) -> None:
    async with SQLiteStore(db) as store:
        rows = [_row(i) for i in range(n)]
        for i in range(0, n, 500):
            await store.add(rows[i : i + 500])


async def _worker(db: str, out: str, owner: str) -> None:
    first = last = 0.0
    done = 0
    async with SQLiteStore(db) as store:
        while True:
            claims = await store.claim(owner, 100)
            if not claims:
                if await store.head() is None:
                    break
                await store.wait_changed(0.01)
                continue
            if not first:
                first = time.time()
            # The entries of one claim end together and finish as one group, as in
            # a worker (its finisher sends them in one finish_many).
            results = await store.finish_many([(c.entry.key, c.token, Done()) for c in claims])
            done += sum(results)
            last = time.time()
    await anyio.Path(out).write_text(json.dumps({"first": first, "last": last, "done": done}))


def claim_finish(tmp: Path, n: int, procs: int = 4) -> dict[str, Any]:
    db = tmp / "cf.db"
    anyio.run(_fill, db, n)
    outs = [tmp / f"w{i}.json" for i in range(procs)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", str(db)]
    ps = [subprocess.Popen([*cmd, str(o), f"w{i}"], env=env) for i, o in enumerate(outs)]
    for p in ps:
        if p.wait(timeout=300) != 0:
            raise RuntimeError(f"a benchmark worker exited with {p.returncode}")
    stats = [json.loads(o.read_text()) for o in outs]
    span = max(s["last"] for s in stats) - min(s["first"] for s in stats if s["first"])
    done = sum(s["done"] for s in stats)
    return {
        "rate": done / span,
        "done": done,
        "span_s": span,
        "per_worker": [s["done"] for s in stats],
    }


def run(quick: bool) -> dict[str, Any]:
    n_one = 2000 if quick else 10000
    n_batch = 20000 if quick else 100000
    n_cf = 5000 if quick else 40000
    judge = not quick
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        one = anyio.run(awaited_add, tmp / "one.db", n_one)
        many = anyio.run(batch_add, tmp / "many.db", n_batch)
        defer_one = anyio.run(scheduler_defer, tmp / "defer.db", n_one, 1)
        defer_many = anyio.run(scheduler_defer, tmp / "defer_many.db", n_batch, 100)
        cf = claim_finish(tmp, n_cf)
    notes = [
        "SQLiteStore on a temporary file: WAL, synchronous=NORMAL, BEGIN IMMEDIATE per call,"
        " store API only (no codec, no Scheduler) except the Scheduler.defer rows"
        " (the same store through the client: checks, codec, entries returned)",
        f"claim+finish: {cf['done']} entries in {cf['span_s']:.2f} s,"
        f" per worker {cf['per_worker']}",
    ]
    return {
        "durable_sqlite_add": {
            "title": "SQLiteStore add: awaited one row per call, and batches of 100",
            "unit": "rows/s",
            "lower_is_better": False,
            "values": {
                "awaited, 1 per call": one,
                "batch, 100 per call": many,
                "Scheduler.defer, awaited": defer_one,
                "Scheduler.defer_many, 100 per call": defer_many,
            },
            "ratios": [
                ratio("awaited add rows/s", one, ">= 4k/s", ge(one, 4000, judge)),
                ratio("batch / awaited", many / one, ">= 10x", ge(many / one, 10, judge)),
            ],
            "notes": notes[:1],
        },
        "durable_sqlite_claim_finish": {
            "title": "SQLiteStore claim + finish, 4 worker processes, no-op task",
            "unit": "entries/s",
            "lower_is_better": False,
            "values": {"4 processes": cf["rate"]},
            "ratios": [
                ratio(
                    "claim+finish entries/s", cf["rate"], ">= 10k/s", ge(cf["rate"], 10000, judge)
                )
            ],
            "notes": notes[1:],
        },
    }


if __name__ == "__main__":
    if len(sys.argv) >= 5 and sys.argv[1] == "--worker":
        anyio.run(_worker, sys.argv[2], sys.argv[3], sys.argv[4])
    else:
        print(json.dumps(run("--quick" in sys.argv), indent=2))
