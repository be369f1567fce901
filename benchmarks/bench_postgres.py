"""duetime's PostgresStore on its own: throughput, enqueue, lateness and wake-ups.

A private PostgreSQL cluster (``bench_postgres_peers.postgres``: Debian's
``postgresql-15`` binaries, the server's default durability, else
``$DUETIME_TEST_POSTGRES_URL``), a fresh database per figure:

- **claim + run + finish**: N no-op entries due now, then 4 worker processes
  (``Scheduler(store=PostgresStore(...), max_concurrency=100)``, what
  ``python -m duetime worker`` runs; two on asyncio, two on trio) until all
  have run; the rate is entries over the span from the first run in any
  process to the last, and every entry must run exactly once.  The processes
  import first and start together, so no process's start-up (about 0.8 s of
  CPU) runs inside the span;
- **awaited defer**: one producer, ``Scheduler.defer`` awaited one at a time,
  and ``defer_many`` of 100 a call;
- **lateness**: 2 idle worker processes; entries deferred to come due 50 ms
  later, one every 10 ms; each run's start minus its due time, p50/p99;
- **wake-up**: the same idle workers sleep on a head an hour away; another
  process defers an entry due now; the run's start minus the moment ``defer``
  was called (its INSERT, the NOTIFY, the worker's claim), p50/p99.

Worker processes run this file with ``--worker MODE BACKEND URL OUT``.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from _common import ge, have, ratio  # noqa: E402

WORKERS = 4
CONCURRENCY = 100
BACKENDS = ("asyncio", "trio", "asyncio", "trio")

_ran: list[str] = []
_times: list[float] = []
_late: list[tuple[str, float, float]] = []  # (key, started, due or sent)


def _registry() -> Any:
    from duetime import current_entry
    from duetime.durable import TaskRegistry

    tasks = TaskRegistry()

    @tasks.task("bench.noop")
    async def noop(i: int) -> None:
        _times.append(time.time())
        _ran.append(current_entry().key)

    @tasks.task("bench.late")
    async def late(sent: float) -> None:
        entry = current_entry()
        _late.append((entry.key, time.time(), sent or entry.due.timestamp()))

    return tasks


def _store(url: str, **options: Any) -> Any:
    from duetime.durable import PostgresStore

    return PostgresStore(url, **options)


# -- the figures ---------------------------------------------------------------------


async def enqueue(url: str, n: int, batch: int) -> float:
    from duetime import Scheduler

    async with Scheduler(store=_store(url), tasks=_registry(), worker=False) as s:
        t0 = time.perf_counter()
        if batch == 1:
            for i in range(n):
                await s.defer("bench.noop", i, delay=3600)
        else:
            for i in range(0, n, batch):
                await s.defer_many("bench.noop", [(j,) for j in range(i, i + batch)], delay=3600)
        return n / (time.perf_counter() - t0)


async def fill(url: str, n: int) -> None:
    from duetime import Scheduler

    async with Scheduler(store=_store(url), tasks=_registry(), worker=False) as s:
        for i in range(0, n, 1000):
            await s.defer_many("bench.noop", [(j,) for j in range(i, min(n, i + 1000))])


async def produce_late(url: str, n: int) -> None:
    """Half the entries due 50 ms after their defer, half due at once (wake-ups);
    a sentinel an hour away keeps the workers' head far."""
    import anyio

    from duetime import Scheduler

    async with Scheduler(store=_store(url), tasks=_registry(), worker=False) as s:
        await s.defer("bench.late", 0.0, delay=3600, key="sentinel")
        await anyio.sleep(1.0)  # the workers are idle, asleep on the sentinel
        for i in range(n):
            if i % 2:
                await s.defer("bench.late", 0.0, delay=0.05, key=f"late{i}")
            else:
                await s.defer("bench.late", time.time(), key=f"wake{i}")
            await anyio.sleep(0.01)
        await anyio.sleep(1.0)
        await s.cancel_deferred("sentinel")


def _spawn(
    mode: str, url: str, tmp: Path, count: int
) -> list[tuple[subprocess.Popen[bytes], Path]]:
    """Start ``count`` worker processes together (each imports first: see
    ``bench_postgres_peers.start_gate``)."""
    from bench_postgres_peers import spawn_together

    paths = [tmp / f"{mode}{i}.json" for i in range(count)]
    me = str(Path(__file__).resolve())
    cmds = [
        [sys.executable, me, "--worker", mode, BACKENDS[i], url, str(path)]
        for i, path in enumerate(paths)
    ]
    return list(zip(spawn_together(cmds), paths, strict=True))


def _collect(procs: list[tuple[subprocess.Popen[bytes], Path]]) -> list[dict[str, Any]]:
    for p, _ in procs:
        if p.wait(timeout=900) != 0:
            raise RuntimeError(f"a benchmark worker exited with {p.returncode}")
    return [json.loads(path.read_text()) for _, path in procs]


def _relaxed(url: str) -> str:
    """``url``'s database set to ``synchronous_commit = off`` (an operator's choice:
    a commit returns before its WAL is on disk; a server crash may lose the last
    ones)."""
    import psycopg

    name = url.rsplit("/", 1)[1]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{name}" SET synchronous_commit = off'.encode())
    return url


def claim_run_finish(url: str, tmp: Path, n: int) -> dict[str, Any]:
    import anyio

    anyio.run(fill, url, n)
    stats = _collect(_spawn("crf", url, tmp, WORKERS))
    firsts = [s["times"][0] for s in stats if s["times"]]
    lasts = [s["times"][1] for s in stats if s["times"]]
    counts = Counter(k for s in stats for k in s["ran"])
    span = max(lasts) - min(firsts)
    return {
        "rate": len(counts) / span,
        "lost": n - len(counts),
        "double": sum(1 for c in counts.values() if c > 1),
        "span_s": round(span, 3),
        "per_worker": [len(s["ran"]) for s in stats],
    }


def lateness(url: str, tmp: Path, n: int) -> dict[str, Any]:
    import anyio

    procs = _spawn("idle", url, tmp, 2)
    time.sleep(2.0)  # started and asleep
    anyio.run(produce_late, url, n)
    stats = _collect(procs)
    late = [(k, started - due) for s in stats for k, started, due in s["late"]]
    out: dict[str, Any] = {}
    for kind in ("late", "wake"):
        ms = sorted(1000 * d for k, d in late if k.startswith(kind))
        out[kind] = {
            "n": len(ms),
            "p50_ms": statistics.median(ms),
            "p99_ms": ms[int(0.99 * (len(ms) - 1))],
            "min_ms": ms[0],
        }
    return out


async def _crf_worker(url: str) -> None:
    import anyio

    from duetime import Scheduler

    store = _store(url)
    async with Scheduler(store=store, tasks=_registry(), max_concurrency=CONCURRENCY):
        while True:
            await anyio.sleep(0.05)
            if await store.head() is None:
                break


async def _idle_worker(url: str) -> None:
    import anyio

    from duetime import Scheduler

    store = _store(url)
    async with Scheduler(store=store, tasks=_registry(), max_concurrency=CONCURRENCY):
        while await store.get("sentinel") is None:
            await anyio.sleep(0.05)
        while await store.get("sentinel") is not None:
            await anyio.sleep(0.1)


def _worker_main(mode: str, backend: str, url: str, out: str) -> None:
    import anyio
    from bench_postgres_peers import start_gate

    start_gate(("trio", "psycopg", "duetime", "duetime.durable"))

    anyio.run(_crf_worker if mode == "crf" else _idle_worker, url, backend=backend)
    times = [_times[0], _times[-1]] if _times else []
    Path(out).write_text(json.dumps({"times": times, "ran": _ran, "late": _late}))


def run(quick: bool) -> dict[str, Any]:
    if not have("psycopg"):
        return {"postgres": {"skipped": "psycopg not installed (pip install -e '.[postgres]')"}}
    from bench_postgres_peers import fresh_database, postgres

    try:
        server = postgres()
        url, how = server.__enter__()
    except LookupError as exc:
        return {"postgres": {"skipped": str(exc)}}
    import anyio

    judge = not quick
    try:
        with tempfile.TemporaryDirectory() as d:
            tmp = Path(d)
            one = anyio.run(enqueue, fresh_database(url), 300 if quick else 3000, 1)
            relaxed = anyio.run(enqueue, _relaxed(fresh_database(url)), 300 if quick else 3000, 1)
            many = anyio.run(enqueue, fresh_database(url), 3000 if quick else 50000, 100)
            crf = claim_run_finish(fresh_database(url), tmp, 3000 if quick else 30000)
            late = lateness(fresh_database(url), tmp, 100 if quick else 600)
    finally:
        server.__exit__(None, None, None)
    notes = [f"server: {how}", f"claim + run + finish: {crf}", f"lateness: {late}"]
    notes.append(
        "defer waits for its commit's WAL flush (one fdatasync per awaited defer);"
        f" with synchronous_commit=off set on the database by its operator: {relaxed:,.0f}/s"
    )
    return {
        "postgres_store": {
            "title": "PostgresStore: awaited defer, defer_many, and claim + run + finish"
            f" with {WORKERS} worker processes (2 asyncio, 2 trio), no-op task",
            "unit": "entries/s",
            "lower_is_better": False,
            "values": {
                "defer": one,
                "defer, synchronous_commit=off": relaxed,
                "defer_many (100)": many,
                "claim + run + finish": crf["rate"],
            },
            "ratios": [
                ratio("awaited defer", one, ">= 2k/s", ge(one, 2000, judge)),
                ratio("defer_many / defer", many / one, ">= 10x", ge(many / one, 10, judge)),
                ratio(
                    "claim + run + finish", crf["rate"], ">= 15k/s", ge(crf["rate"], 15000, judge)
                ),
                ratio(
                    "lost / ran twice",
                    crf["lost"] + crf["double"],
                    "0",
                    crf["lost"] + crf["double"] == 0,
                ),
            ],
            "notes": notes,
        },
        "postgres_lateness": {
            "title": "PostgresStore on idle workers: lateness of due entries,"
            " wake-up by another process",
            "unit": "ms (p99)",
            "values": {"lateness": late["late"]["p99_ms"], "wake-up": late["wake"]["p99_ms"]},
            "ratios": [
                ratio(
                    "lateness p99",
                    late["late"]["p99_ms"],
                    "<= 10 ms",
                    late["late"]["p99_ms"] <= 10 if judge else None,
                ),
                ratio(
                    "wake-up p99",
                    late["wake"]["p99_ms"],
                    "<= 10 ms",
                    late["wake"]["p99_ms"] <= 10 if judge else None,
                ),
            ],
            "notes": notes,
        },
    }


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        _worker_main(*sys.argv[2:6])
    else:
        print(json.dumps(run("--quick" in sys.argv), indent=1, default=str))
