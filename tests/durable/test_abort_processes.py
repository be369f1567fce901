"""Abort across processes: a ``python -m duetime worker`` process runs the task,
this process aborts it and awaits it.

Real processes, real time, SQLite and Redis (a private ``redis-server``), the
test on asyncio and trio and its worker on the same backend.  Every wait is for
a line in the tasks' file or for an outcome, with a generous deadline: nothing
asserts a duration.  (A worker killed with SIGKILL while a waiter in a third
process awaits its entry is ``test_deferred_crash.py``.)
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from duetime import CallbackCancelled, Scheduler, Status
from duetime.durable import ABORTED, open_store

from ._abort_proc import brief, hang, tasks
from .redis_server import RedisServer

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("real_time")]

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 60.0


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


async def wait_line(path: Path, line: str) -> None:
    with anyio.fail_after(DEADLINE):
        while line not in lines(path):
            await anyio.sleep(0.01)


@pytest.fixture(params=["sqlite", "redis"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield "sqlite:///" + str(tmp_path / "jobs.db")
        return
    with RedisServer(tmp_path) as server:
        yield server.url


@pytest.fixture
def worker(url: str, anyio_backend: Any) -> Iterator[subprocess.Popen[bytes]]:
    """A CLI worker process on ``url``, stopped with SIGTERM after the test."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    cmd = [sys.executable, "-m", "duetime", "worker", "tests.durable._abort_proc:tasks"]
    cmd += ["--store", url, "--backend", anyio_backend[0], "--quiet"]
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT)
    try:
        yield proc
        assert proc.poll() is None, "the worker died"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=DEADLINE)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def scheduler(url: str) -> Scheduler:
    # A short SQLite poll: this process sees the worker's commits sooner.
    options: dict[str, Any] = {"poll": 0.05} if url.startswith("sqlite") else {}
    return Scheduler(store=open_store(url, **options), tasks=tasks, worker=False)


async def test_an_aborted_run_ends_cancelled_and_its_awaiter_is_told(
    url: str, worker: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    out = tmp_path / "tasks.log"
    async with scheduler(url) as s:
        d = await s.defer(hang, str(out), key="report-7")
        await wait_line(out, "start report-7")
        assert await d.cancel(abort=True)
        with pytest.raises(CallbackCancelled):
            await d.result(timeout=DEADLINE)
        await wait_line(out, "cancelled report-7")
        e = await d.refresh()
        assert (e.status, e.last_error) == (Status.CANCELLED, ABORTED)
        assert not await s.cancel_deferred("report-7", abort=True)  # finished
        # The worker goes on: the next entry runs to its end.
        again = await s.defer(brief, str(out), 0.0, key="next")
        assert await again.result(timeout=DEADLINE) == "next"
    assert lines(out).count("start report-7") == 1  # never run again
    assert "end report-7" not in lines(out)


async def test_an_abort_racing_the_finish_has_one_outcome(
    url: str, worker: subprocess.Popen[bytes], tmp_path: Path
) -> None:
    """Each entry runs for a random time and is aborted as it starts or a
    random time later (both spread over about the time an abort takes to reach
    the worker: SQLite's poll, Redis's pub/sub), so some finish first and some
    are cancelled; each has exactly one outcome, the one its awaiter gets, and
    no COMPLETED entry was cancelled or says it was aborted."""
    out = tmp_path / "tasks.log"
    rng = random.Random(21)
    spread = 0.5 if url.startswith("sqlite") else 0.05
    n = 40
    keys = [f"k{i}" for i in range(n)]
    aborted: dict[str, bool] = {}
    async with scheduler(url) as s:
        handles = {
            key: await s.defer(brief, str(out), rng.uniform(0, spread), key=key) for key in keys
        }

        async def abort_when_started(key: str, after: float) -> None:
            await wait_line(out, f"start {key}")
            await anyio.sleep(after)
            aborted[key] = await s.cancel_deferred(key, abort=True)

        async with anyio.create_task_group() as tg:
            for key in keys:
                tg.start_soon(abort_when_started, key, rng.choice([0.0, rng.uniform(0, spread)]))

        outcomes: dict[str, str] = {}
        for key, d in handles.items():
            try:
                assert await d.result(timeout=DEADLINE) == key
                outcomes[key] = "value"
            except CallbackCancelled:
                outcomes[key] = "cancelled"
        entries = {key: await handles[key].refresh() for key in keys}
    log = lines(out)
    for key in keys:
        e = entries[key]
        assert log.count(f"start {key}") == 1, key  # one run, never re-run
        if outcomes[key] == "value":
            assert e.status is Status.COMPLETED, e
            assert (e.last_error, e.abort_requested) == (None, False), e
            assert f"end {key}" in log, key
            assert f"cancelled {key}" not in log, key
        else:
            assert (e.status, e.last_error) == (Status.CANCELLED, ABORTED), e
            assert aborted[key], key  # only an abort that was stored cancels
    counts = {kind: list(outcomes.values()).count(kind) for kind in ("value", "cancelled")}
    print(f"{url.split(':')[0]}: {counts}")  # how the race went (not timed: not asserted)
