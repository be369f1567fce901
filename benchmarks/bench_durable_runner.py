"""Durable jobs end to end through the real runner, on SQLite and on Redis.

Every figure goes through ``duetime.Scheduler(store=..., tasks=...)``: the codec,
the runner, the claim loop, the group finisher.  Worker processes are what
``python -m duetime worker`` runs (a Scheduler with ``worker=True``), each with its
own store connection.  Per store (a temporary SQLite file; a private
``redis-server`` on loopback, no persistence):

- **defer**: awaited ``defer`` one at a time, and ``defer_many`` 100 per call;
- **throughput**: N no-op entries due now, 4 worker processes (``max_concurrency``
  16, the default, and 100); rate = N over first run to last run;
- **lateness**: 400 entries due over 3 s, idle workers: 4 other processes, and the
  producer's own process (``worker=True`` there); lateness = run - due;
- **wake-up**: an idle worker process (its next entry an hour away); another
  process defers an entry due now; latency = run - the ``defer`` call;
- **kill -9**: 20k entries of a 20 ms task, 4 workers (max_concurrency 100, task
  lease 2 s), one killed after it ran 1000; every run logs its key (a file per
  process): lost, completed twice (twice among survivors; the victim's and a
  survivor's run of one key is an at-least-once re-run of a run the victim had in
  flight, at most 100), and recovery = the last re-delivered entry's run - the
  kill (vs lease + poll).

Each figure runs ``repeats`` times; the result keeps every run (the spread).
Run as a worker: ``python bench_durable_runner.py --worker URL MODE OUT CONCURRENCY``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
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

import anyio  # noqa: E402
from _common import ge, have, le, percentile, ratio  # noqa: E402

import duetime  # noqa: E402
from duetime import Scheduler, open_store  # noqa: E402

WORKERS = 4
KILL_LEASE = 2.0
KILL_CONCURRENCY = 100
tasks = duetime.TaskRegistry()
_seen: list[tuple[str, float, float, float]] = []  # key, ran at, due, sent
_log: Any = None


@tasks.task("b.rec")
async def rec(sent: float) -> None:
    e = duetime.current_entry()
    _seen.append((e.key, time.time(), e.due.timestamp(), sent))


@tasks.task("b.kill", lease=KILL_LEASE)
async def kill_task(i: int) -> None:
    await anyio.sleep(0.02)  # long enough that a worker always holds runs in flight
    _log.write(f"{duetime.current_entry().key} {time.time():.6f}\n")


# -- worker processes ------------------------------------------------------------------


async def worker(url: str, mode: str, out: str, concurrency: int) -> None:
    global _log
    if mode == "kill":
        _log = open(out + ".log", "a", buffering=1)  # noqa: SIM115, ASYNC230 (lives with the process)
    store = open_store(url)
    async with Scheduler(store=store, tasks=tasks, max_concurrency=concurrency):
        await anyio.Path(out + ".ready").touch()
        stop = anyio.Path(out + ".stop")
        if mode == "drain":  # until the store is empty
            # A worker may get no entry at all when the others drain the store
            # first (a loaded machine): empty for a second is empty.
            empty_since: float | None = None
            while True:
                if await store.head() is not None:
                    empty_since = None
                elif _seen:
                    break
                elif empty_since is None:
                    empty_since = time.monotonic()
                elif time.monotonic() - empty_since > 1.0:
                    break
                await anyio.sleep(0.05)
        else:  # until told to stop
            while not await stop.exists():
                await anyio.sleep(0.05)
    await anyio.Path(out).write_text(json.dumps(_seen))


def spawn(url: str, mode: str, out: Path, concurrency: int = 16) -> subprocess.Popen[bytes]:
    args = [sys.executable, __file__, "--worker", url, mode, str(out), str(concurrency)]
    return subprocess.Popen(args)


def wait_files(paths: list[Path], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {paths}")
        time.sleep(0.02)


def finish(procs: list[subprocess.Popen[bytes]], outs: list[Path]) -> list[list[Any]]:
    for o in outs:
        Path(str(o) + ".stop").touch()
    for p in procs:
        if p.wait(timeout=120) != 0:
            raise RuntimeError(f"a benchmark worker exited with {p.returncode}")
    return [json.loads(o.read_text()) for o in outs]


# -- the producer side -------------------------------------------------------------------


def producer(url: str, worker: bool = False) -> Scheduler:
    return Scheduler(store=open_store(url), tasks=tasks, worker=worker)


async def awaited_defer(url: str, n: int) -> float:
    async with producer(url) as s:
        t0 = time.perf_counter()
        for i in range(n):
            await s.defer(rec, 0.0, key=f"a{i}", delay=3600)
        return n / (time.perf_counter() - t0)


async def many_defer(url: str, n: int) -> float:
    async with producer(url) as s:
        sets = [(0.0,) for _ in range(n)]
        t0 = time.perf_counter()
        for i in range(0, n, 100):
            await s.defer_many(rec, sets[i : i + 100], delay=3600)
        return n / (time.perf_counter() - t0)


async def fill(url: str, n: int, task: Any = rec, due: float | None = None) -> None:
    from datetime import UTC, datetime

    at = None if due is None else datetime.fromtimestamp(due, UTC)
    async with producer(url) as s:
        for i in range(0, n, 500):
            m = min(n, i + 500) - i
            args = [(0.0,)] * m if task is rec else [(j,) for j in range(i, i + m)]
            await s.defer_many(task, args, keys=[f"k{j}" for j in range(i, i + m)], at=at)


async def defer_spread(url: str, n: int, start: float, spread: float) -> None:
    from datetime import UTC, datetime

    async with producer(url) as s:
        for i in range(n):
            at = datetime.fromtimestamp(start + spread * i / n, UTC)
            await s.defer(rec, 0.0, key=f"l{i}", at=at)


async def same_process_lateness(url: str, n: int, spread: float) -> list[float]:
    from datetime import UTC, datetime

    _seen.clear()
    async with producer(url, worker=True) as s:
        start = time.time() + 1.0
        for i in range(n):
            at = datetime.fromtimestamp(start + spread * i / n, UTC)
            await s.defer(rec, 0.0, key=f"s{i}", at=at)
        while len(_seen) < n and time.time() < start + spread + 10:
            await anyio.sleep(0.05)
    return sorted(t - due for _k, t, due, _s in _seen)


async def send_wakeups(url: str, n: int, gap: float) -> None:
    async with producer(url) as s:
        await s.defer(rec, 0.0, key="far", delay=3600)  # the worker sleeps toward this
        await anyio.sleep(0.5)
        for i in range(n):
            await anyio.sleep(gap)
            await s.defer(rec, time.time(), key=f"w{i}")


async def completed_entries(url: str) -> list[Any]:
    async with open_store(url) as store:
        return await store.entries(status=duetime.Status.COMPLETED, limit=100_000)


# -- scenarios -----------------------------------------------------------------------------


def throughput(url: str, reset: Any, n: int, concurrency: int) -> float:
    reset()
    # Due at a common start: the workers are up and connected by then, and their
    # claim loops wake for the head together (rate measured from the start).
    start = time.time() + 3.0
    anyio.run(fill, url, n, rec, start)
    with tempfile.TemporaryDirectory() as d:
        outs = [Path(d) / f"t{i}.json" for i in range(WORKERS)]
        procs = [spawn(url, "drain", o, concurrency) for o in outs]
        for p in procs:
            if p.wait(timeout=300) != 0:
                raise RuntimeError("a throughput worker failed")
        seen = [x for o in outs for x in json.loads(o.read_text())]
    if len({k for k, *_ in seen}) != n or len(seen) != n:
        raise RuntimeError(f"ran {len(seen)} of {n} ({len({k for k, *_ in seen})} distinct)")
    if min(t for _k, t, *_ in seen) < start:
        raise RuntimeError("a worker ran entries before the common start")
    return float(n / (max(t for _k, t, *_ in seen) - start))


def lateness(url: str, reset: Any, n: int, spread: float) -> list[float]:
    reset()
    with tempfile.TemporaryDirectory() as d:
        outs = [Path(d) / f"l{i}.json" for i in range(WORKERS)]
        procs = [spawn(url, "serve", o) for o in outs]
        wait_files([Path(str(o) + ".ready") for o in outs])
        start = time.time() + 1.0
        anyio.run(defer_spread, url, n, start, spread)
        time.sleep(max(0.0, start + spread + 1.0 - time.time()))
        seen = [x for r in finish(procs, outs) for x in r]
    if len(seen) != n:
        raise RuntimeError(f"lateness: {len(seen)} of {n} ran")
    return sorted(t - due for _k, t, due, _s in seen)


def wakeup(url: str, reset: Any, n: int, gap: float) -> list[float]:
    reset()
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "w.json"
        proc = spawn(url, "serve", out)
        wait_files([Path(str(out) + ".ready")])
        anyio.run(send_wakeups, url, n, gap)
        time.sleep(1.0)
        (seen,) = finish([proc], [out])
    lat = sorted(t - sent for k, t, _d, sent in seen if k.startswith("w"))
    if len(lat) != n:
        raise RuntimeError(f"wake-up: {len(lat)} of {n} ran")
    return lat


def kill_one(url: str, reset: Any, n: int, poll: float) -> dict[str, Any]:
    reset()
    anyio.run(fill, url, n, kill_task)
    with tempfile.TemporaryDirectory() as d:
        outs = [Path(d) / f"k{i}.json" for i in range(WORKERS)]
        logs = [Path(str(o) + ".log") for o in outs]
        procs = [spawn(url, "kill", o, KILL_CONCURRENCY) for o in outs]
        # Kill worker 0 mid-run: once it has run a tenth of the entries (four
        # workers share them, and on a loaded machine one may start late, so not
        # a fixed count it might never reach), or after 30 s in any case.
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (
            not logs[0].exists() or logs[0].read_text().count("\n") < n // 10
        ):
            time.sleep(0.01)
        procs[0].send_signal(signal.SIGKILL)
        killed_at = time.time()
        procs[0].wait()
        t0 = time.monotonic()
        while len(anyio.run(completed_entries, url)) < n and time.monotonic() - t0 < 120:
            time.sleep(0.2)
        finish(procs[1:], outs[1:])
        runs: list[Counter[str]] = []
        last_run: dict[str, float] = {}
        for i, log in enumerate(logs):
            text = log.read_text()
            c: Counter[str] = Counter()
            for line in text.split("\n")[:-1]:
                key, ran = line.split()
                c[key] += 1
                if i:
                    last_run[key] = float(ran)
            runs.append(c)
    done = anyio.run(completed_entries, url)
    redelivered = [e.key for e in done if e.deliveries > 1]
    survivors: Counter[str] = sum(runs[1:], Counter())
    return {
        "entries": n,
        "lost": n - len(done),
        "twice_among_survivors": sum(1 for v in survivors.values() if v > 1),
        "victim_and_survivor": len(set(runs[0]) & set(survivors)),
        "victim_ran": sum(runs[0].values()),
        "redelivered": len(redelivered),
        "recovery_s": max((last_run[k] for k in redelivered), default=killed_at) - killed_at,
        "bound_s": KILL_LEASE + poll,
    }


# -- the stores --------------------------------------------------------------------------


def _redis_server(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    from _common import start_redis

    return start_redis(directory)


def _redis_reset(url: str) -> Any:
    def reset() -> None:
        from bench_redis import _flush

        anyio.run(_flush, url)

    return reset


def _sqlite_reset(path: Path) -> Any:
    def reset() -> None:
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)

    return reset


def measure(name: str, url: str, reset: Any, quick: bool, poll: float) -> dict[str, Any]:
    reps = 1 if quick else 3
    n_one, n_many, n_tp, n_kill = (500, 5000, 4000, 5000) if quick else (3000, 50000, 20000, 20000)
    r: dict[str, Any] = {"store": name}
    one, many = [], []
    for _ in range(reps):
        reset()
        one.append(anyio.run(awaited_defer, url, n_one))
        reset()
        many.append(anyio.run(many_defer, url, n_many))
    r["defer"], r["defer_many"] = one, many
    r["throughput"] = {
        c: [throughput(url, reset, n_tp, c) for _ in range(max(1, reps - 1))] for c in (16, 100)
    }
    spread, n_lat = (1.0, 100) if quick else (3.0, 400)
    r["lateness_ms"] = [
        [x * 1e3 for x in lateness(url, reset, n_lat, spread)] for _ in range(max(1, reps - 1))
    ]
    same = []
    for _ in range(max(1, reps - 1)):
        reset()
        same.append([x * 1e3 for x in anyio.run(same_process_lateness, url, n_lat, spread)])
    r["same_process_lateness_ms"] = same
    gap = 0.05 if name == "Redis" else 0.1
    r["wakeup_ms"] = [
        [x * 1e3 for x in wakeup(url, reset, 20 if quick else 100, gap)]
        for _ in range(max(1, reps - 1))
    ]
    r["kill"] = [kill_one(url, reset, n_kill, poll) for _ in range(max(1, reps - 1))]
    return r


def _pcts(runs: list[list[float]]) -> str:
    return ", ".join(f"p50 {percentile(x, 50):.1f} / p99 {percentile(x, 99):.1f}" for x in runs)


def run(quick: bool) -> dict[str, Any]:
    judge = not quick
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        db = Path(d) / "bench.db"
        stores: list[tuple[str, str, Any, float]] = [
            ("SQLite", f"sqlite:///{db}", _sqlite_reset(db), 0.25)
        ]
        server = None
        if shutil.which("redis-server") and have("coredis"):
            server, url = _redis_server(d)
            stores.append(("Redis", url, _redis_reset(url), 1.0))
        try:
            for name, url, reset, poll in stores:
                load0 = os.getloadavg()
                r = measure(name, url, reset, quick, poll)
                r["load_before_after"] = [load0, os.getloadavg()]
                out[name] = r
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=10)
    results: dict[str, Any] = {}
    for name, r in out.items():
        key = f"durable_runner_{name.lower()}"
        tp16, tp100 = max(r["throughput"][16]), max(r["throughput"][100])
        late = max(percentile(x, 99) for x in r["lateness_ms"])
        same = max(percentile(x, 99) for x in r["same_process_lateness_ms"])
        wake = max(percentile(x, 99) for x in r["wakeup_ms"])
        ratio_many = max(r["defer_many"]) / max(r["defer"])
        t_tp, t_late, t_wake = (20_000, 10, 5) if name == "Redis" else (10_000, 300, 300)
        kills = r["kill"]
        results[key] = {
            "title": f"{name}: durable jobs through the real runner (Scheduler workers)",
            "unit": "mixed",
            "values": {
                "awaited defer /s (best)": max(r["defer"]),
                "defer_many /s (best)": max(r["defer_many"]),
                "claim+run+finish /s, 4 procs, concurrency 16 (best)": tp16,
                "claim+run+finish /s, 4 procs, concurrency 100 (best)": tp100,
                "lateness p99 ms, other processes (worst run)": late,
                "lateness p99 ms, same process (worst run)": same,
                "wake-up p99 ms (worst run)": wake,
            },
            "ratios": [
                ratio("defer_many / defer", ratio_many, ">= 10", ge(ratio_many, 10, judge)),
                ratio(
                    "claim+run+finish /s",
                    max(tp16, tp100),
                    f">= {t_tp}",
                    ge(max(tp16, tp100), t_tp, judge),
                ),
                ratio("lateness p99 ms", late, f"<= {t_late}", le(late, t_late, judge)),
                ratio("same-process lateness p99 ms", same, "<= 5", le(same, 5, judge)),
                ratio("wake-up p99 ms", wake, f"<= {t_wake}", le(wake, t_wake, judge)),
                ratio(
                    "kill -9: lost + twice",
                    sum(k["lost"] + k["twice_among_survivors"] for k in kills),
                    "0",
                    all(k["lost"] == 0 and k["twice_among_survivors"] == 0 for k in kills),
                ),
            ],
            "runs": r,
            "notes": [
                f"every run: defer {[round(x) for x in r['defer']]}/s, defer_many"
                f" {[round(x) for x in r['defer_many']]}/s, throughput c16"
                f" {[round(x) for x in r['throughput'][16]]}/s, c100"
                f" {[round(x) for x in r['throughput'][100]]}/s",
                f"lateness other processes ms: {_pcts(r['lateness_ms'])}; same process:"
                f" {_pcts(r['same_process_lateness_ms'])}; wake-up: {_pcts(r['wakeup_ms'])}",
                f"kill -9: {kills}",
                f"load average before/after: {r['load_before_after']}",
            ],
        }
    return results


if __name__ == "__main__":
    if len(sys.argv) >= 6 and sys.argv[1] == "--worker":
        anyio.run(worker, sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5]))
    else:
        print(json.dumps(run("--quick" in sys.argv), indent=2))
