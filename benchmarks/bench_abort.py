"""Abort latency: a running async task in a worker process, aborted from another process.

duetime: a ``python -m duetime worker`` process (the CLI, default options) runs
``bench.hang`` (:mod:`_abort_tasks`), which writes ``start KEY T`` when it
starts and ``cancel KEY T`` when its run is cancelled (``T``: ``time.time()``).
This process defers the tasks (``Scheduler(worker=False)``), waits until each
has started, and aborts it with ``Scheduler.cancel_deferred(key, abort=True)``.
Latency = the task's ``cancel`` time - when ``cancel_deferred`` returned (the
request's announcement, the worker's ``Store.aborts`` read and the cancellation
of the run's scope all fall in it; it can be slightly negative when the worker
cancels the run before the abort's reply reaches this process).  The time from
the call to the cancellation is reported beside it.

SAQ (``saq`` in the ``bench`` extra, when installed): a SAQ ``Worker`` in its
own process on the same ``redis-server`` runs the same task; ``Job.abort()``
from this process; same latency.  SAQ's worker looks for aborted jobs on a
timer (``timers["abort"]``, 1 s by default) and only among jobs that have run at
least that long, so its tasks run that long before the abort; it is measured at
its default and with the timer at 0.1 s.

The floor: a bare ``PUBLISH`` (coredis) from this process reaching a
subscriber process on the same server, timed the same way: what the machine's
scheduling and the server cost any pub/sub design, in the same run.

Aborts come in rounds of ``K`` running tasks, each aborted at its own random
moment within a poll period (SQLite's ``poll``, SAQ's abort timer; 50 ms on
duetime's Redis, which does not poll), so abort times fall at random phases of
any poll.  The first rounds warm up and are not counted (``WARMUP``).
SQLite: the CLI worker's default ``poll`` (0.25 s), so the target is p99 <=
poll + 50 ms = 300 ms; Redis: pub/sub, target p99 <= 50 ms.

Run alone with ``python benchmarks/bench_abort.py [--quick]``.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(ROOT / "src"))

from _common import have, le, percentile, ratio, start_redis  # noqa: E402

#: Running tasks per round (aborted one after another).
K = 10
#: Rounds not counted at the start: a worker process's first second or two runs
#: slower (its first aborts and finishes stalled ~100 ms here, once).
WARMUP = 3
#: The CLI worker's default SQLite poll, seconds.
SQLITE_POLL = 0.25
DEADLINE = 60.0


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(HERE), str(ROOT / "src")])}


def _read(out: Path) -> dict[str, dict[str, float]]:
    """``{"start"|"cancel": {key: time}}`` from the task's file."""
    seen: dict[str, dict[str, float]] = {"start": {}, "cancel": {}}
    if out.exists():
        for line in out.read_text().splitlines():
            parts = line.split()
            if len(parts) == 3 and parts[0] in seen:
                seen[parts[0]][parts[1]] = float(parts[2])
    return seen


async def _until(out: Path, kind: str, keys: list[str]) -> dict[str, float]:
    end = time.monotonic() + DEADLINE
    while True:
        got = _read(out)[kind]
        if all(k in got for k in keys):
            return got
        if time.monotonic() > end:
            raise RuntimeError(f"{kind} lines missing for {[k for k in keys if k not in got]}")
        await asyncio.sleep(0.002)


async def _rounds(
    n: int,
    out: Path,
    defer: Any,
    abort: Any,
    hold: float,
    spread: float,
) -> tuple[list[float], list[float]]:
    """Abort ``n`` running tasks in rounds of K (after WARMUP rounds not counted);
    latencies from the abort's return and from its call, seconds.

    In a round, K tasks are deferred and started, ``hold`` seconds pass, then
    each is aborted at its own random moment within ``spread`` seconds (from its
    own task), so abort times fall at random phases of any poll."""
    from_return: list[float] = []
    from_call: list[float] = []
    rng = random.Random(7)
    sent: dict[str, tuple[float, float]] = {}  # key -> when the abort was called, returned

    async def one(key: str, h: Any, after: float) -> None:
        await asyncio.sleep(after)
        t_call = time.time()
        await abort(key, h)
        sent[key] = (t_call, time.time())

    for r in range(-WARMUP, n // K):
        keys = [f"r{r}-{i}" for i in range(K)]
        handles = [await defer(key) for key in keys]
        await _until(out, "start", keys)
        await asyncio.sleep(hold)
        async with asyncio.TaskGroup() as tg:
            for key, h in zip(keys, handles, strict=True):
                tg.create_task(one(key, h, rng.uniform(0, spread)))
        cancelled = await _until(out, "cancel", keys)
        if r < 0:
            continue
        for key in keys:
            t_call, t_ret = sent[key]
            from_return.append(cancelled[key] - t_ret)
            from_call.append(cancelled[key] - t_call)
    return sorted(from_return), sorted(from_call)


# -- duetime --------------------------------------------------------------------------


def _duetime_worker(url: str, cwd: str) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "duetime", "worker", "_abort_tasks:tasks"]
    cmd += ["--store", url, "--quiet", "--concurrency", str(2 * K)]
    return subprocess.Popen(cmd, env=_env(), cwd=cwd)


async def duetime_aborts(url: str, n: int, out: Path) -> tuple[list[float], list[float]]:
    from _abort_tasks import hang, tasks

    from duetime import Scheduler
    from duetime.durable import open_store

    async with Scheduler(store=open_store(url), tasks=tasks, worker=False) as s:

        async def defer(key: str) -> object:
            return await s.defer(hang, str(out), key=key)

        async def abort(key: str, _h: object) -> None:
            if not await s.cancel_deferred(key, abort=True):
                raise RuntimeError(f"abort of {key} found nothing running")

        spread = SQLITE_POLL if url.startswith("sqlite") else 0.05
        return await _rounds(n, out, defer, abort, hold=0.0, spread=spread)


def run_duetime(url: str, n: int, directory: str) -> tuple[list[float], list[float]]:
    out = Path(directory) / f"duetime-{url.split(':')[0]}.log"
    worker = _duetime_worker(url, directory)
    try:
        return asyncio.run(duetime_aborts(url, n, out))
    finally:
        worker.terminate()
        try:
            worker.wait(timeout=60)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


# -- SAQ ------------------------------------------------------------------------------


async def saq_worker(url: str, abort_timer: float) -> None:
    from saq import Queue, Worker

    async def hang(ctx: Any, *, out: str) -> None:
        from _abort_tasks import note

        key = ctx["job"].key
        note(out, f"start {key} {time.time()!r}")
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            note(out, f"cancel {key} {time.time()!r}")
            raise

    queue = Queue.from_url(url)
    worker = Worker(
        queue, functions=[("hang", hang)], concurrency=2 * K, timers={"abort": abort_timer}
    )
    await worker.start()


async def saq_aborts(url: str, n: int, out: Path, hold: float) -> tuple[list[float], list[float]]:
    from saq import Queue

    queue = Queue.from_url(url)
    await queue.connect()
    try:

        async def defer(key: str) -> Any:
            return await queue.enqueue("hang", out=str(out), key=key, timeout=0)  # no timeout

        async def abort(_key: str, job: Any) -> None:
            await job.abort("bench")

        return await _rounds(n, out, defer, abort, hold=hold, spread=hold)
    finally:
        await queue.disconnect()


def run_saq(url: str, n: int, directory: str, timer: float) -> tuple[list[float], list[float]]:
    out = Path(directory) / f"saq-{timer}.log"
    cmd = [sys.executable, __file__, "saq-worker", url, repr(timer)]
    worker = subprocess.Popen(cmd, env=_env(), cwd=directory)
    try:
        # SAQ aborts only jobs that have run at least `timer` seconds.
        return asyncio.run(saq_aborts(url, n, out, hold=timer + 0.05))
    finally:
        worker.kill()
        worker.wait()


# -- the machine's own floor: a PUBLISH reaching a subscriber process -------------------


async def pubsub_listener(url: str, out: str) -> None:
    import coredis
    from _abort_tasks import note

    client: coredis.Redis[str] = coredis.Redis.from_url(url, decode_responses=True)
    async with client, client.pubsub(channels=["bench-abort"]) as pubsub:
        note(out, "subscribed - 0")
        async for message in pubsub:
            if message["type"] == "message":
                note(out, f"cancel {message['data']} {time.time()!r}")


async def pubsub_messages(url: str, n: int, out: Path) -> tuple[list[float], list[float]]:
    import coredis
    from _abort_tasks import note

    client: coredis.Redis[str] = coredis.Redis.from_url(url, decode_responses=True)
    async with client:

        async def defer(key: str) -> None:
            note(str(out), f"start {key} {time.time()!r}")

        async def publish(key: str, _h: object) -> None:
            await client.publish("bench-abort", key)

        return await _rounds(n, out, defer, publish, hold=0.0, spread=0.05)


def run_pubsub(url: str, n: int, directory: str) -> tuple[list[float], list[float]]:
    out = Path(directory) / "pubsub.log"
    cmd = [sys.executable, __file__, "pubsub-listener", url, str(out)]
    listener = subprocess.Popen(cmd, env=_env(), cwd=directory)
    try:
        end = time.monotonic() + DEADLINE
        while "subscribed - 0" not in (out.read_text() if out.exists() else ""):
            if time.monotonic() > end:
                raise RuntimeError("the pub/sub listener did not subscribe")
            time.sleep(0.01)
        return asyncio.run(pubsub_messages(url, n, out))
    finally:
        listener.kill()
        listener.wait()


# -- the figures ----------------------------------------------------------------------


def run(quick: bool) -> dict[str, dict[str, Any]]:
    """Abort latency on SQLite and Redis, beside SAQ's on the same Redis server."""
    judge = not quick
    n = 30 if quick else 200
    lat: dict[str, tuple[list[float], list[float]]] = {}
    notes = [f"{n} aborts each, in rounds of {K} running tasks; latencies in ms"]
    with tempfile.TemporaryDirectory() as directory:
        lat[f"duetime SQLite (poll {SQLITE_POLL} s)"] = run_duetime(
            "sqlite:///" + str(Path(directory) / "jobs.db"), n, directory
        )
        if shutil.which("redis-server") is None or not have("coredis"):
            notes.append("Redis: skipped (redis-server or coredis missing)")
        else:
            server, url = start_redis(directory)
            try:
                lat["duetime Redis"] = run_duetime(url, n, directory)
                if have("coredis"):
                    lat["Redis PUBLISH to a subscriber process (floor)"] = run_pubsub(
                        url, n, directory
                    )
                if have("saq"):
                    # Databases of their own: SAQ's keys apart from duetime's.
                    for db, timer, label in ((1, 1.0, "1 s, its default"), (2, 0.1, "0.1 s")):
                        saq_url = url[: -len("/0")] + f"/{db}"
                        lat[f"SAQ (abort timer {label})"] = run_saq(saq_url, n, directory, timer)
                else:
                    notes.append("SAQ: skipped (not installed)")
            finally:
                server.kill()
                server.wait()
    p = {k: {q: percentile(v[0], q) * 1e3 for q in (50, 99)} for k, v in lat.items()}
    sqlite = p[f"duetime SQLite (poll {SQLITE_POLL} s)"][99]
    ratios = [
        ratio(
            "SQLite p99 ms",
            sqlite,
            f"<= poll + 50 ({SQLITE_POLL * 1e3 + 50:g})",
            le(sqlite, SQLITE_POLL * 1e3 + 50, judge),
        )
    ]
    if "duetime Redis" in p:
        redis = p["duetime Redis"][99]
        ratios.append(ratio("Redis p99 ms", redis, "<= 50", le(redis, 50, judge)))
        for k in p:
            if k.startswith(("SAQ", "Redis PUBLISH")):
                ratios.append(
                    ratio(f"{k} p99 / duetime Redis p99", p[k][99] / redis, "(peer)", None)
                )
    return {
        "abort_latency": {
            "title": "an abort reaches a running async task in a worker process",
            "unit": "ms",
            "values": {k: v[99] for k, v in p.items()},
            "p50_ms": {k: v[50] for k, v in p.items()},
            "p99_from_call_ms": {k: percentile(v[1], 99) * 1e3 for k, v in lat.items()},
            "p50_from_call_ms": {k: percentile(v[1], 50) * 1e3 for k, v in lat.items()},
            "max_ms": {k: v[0][-1] * 1e3 for k, v in lat.items()},
            "ratios": ratios,
            "notes": notes,
        }
    }


if __name__ == "__main__":
    if sys.argv[1:2] == ["saq-worker"]:
        asyncio.run(saq_worker(sys.argv[2], float(sys.argv[3])))
    elif sys.argv[1:2] == ["pubsub-listener"]:
        asyncio.run(pubsub_listener(sys.argv[2], sys.argv[3]))
    else:
        print(json.dumps(run("--quick" in sys.argv), indent=2))
