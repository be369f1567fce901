"""kill -9 of a worker process that records finishes and claims in one
PostgreSQL transaction (finish_and_claim): the rows it held come back after
their lease; nothing is lost, nothing is completed twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

import duetime
from duetime import Status
from duetime.durable import NewRow, PostgresStore

HERE = Path(__file__).parent
N_ENTRIES = 1000
N_WORKERS = 3


def _lines(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    # a line torn by SIGKILL is dropped
    return [ln.split() for ln in path.read_text().splitlines() if ln.count(" ") == 2]


def _wait_until(cond: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.timeout(240)
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_kill_9_mid_piggyback_loses_nothing_and_completes_once(
    tmp_path: Path, postgres_url: str, postgres_schema: str, backend: str
) -> None:
    async def fill() -> None:
        async with PostgresStore(postgres_url, schema=postgres_schema) as store:
            rows = [
                NewRow(key=f"k{i}", task="t", payload="[]", delay=0.0, lease=1.0)
                for i in range(N_ENTRIES)
            ]
            await store.add(rows)

    anyio.run(fill)
    src = str(Path(duetime.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([src, os.environ.get("PYTHONPATH", "")]))
    logs = [tmp_path / f"w{i}.log" for i in range(N_WORKERS)]
    worker = str(HERE / "_review3_pg_worker.py")
    procs = [
        subprocess.Popen(
            [sys.executable, worker, postgres_url, postgres_schema, str(log), f"w{i}", backend],
            env=env,
        )
        for i, log in enumerate(logs)
    ]
    try:
        # Kill w0 once it has finished some rows and holds a batch claimed
        # together with them (its last line is a claim).
        def ripe() -> bool:
            assert procs[0].poll() is None, "w0 ended before it could be killed"
            lines = _lines(logs[0])
            return sum(1 for ln in lines if ln[0] == "done") >= 10 and lines[-1][0] == "run"

        _wait_until(ripe, 120)
        procs[0].send_signal(signal.SIGKILL)
        for p in procs[1:]:
            assert p.wait(timeout=120) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert procs[0].wait() == -signal.SIGKILL

    async def final() -> list[tuple[str, Status, int]]:
        async with PostgresStore(postgres_url, schema=postgres_schema) as store:
            return [(e.key, e.status, e.deliveries) for e in await store.entries(limit=10_000)]

    entries = anyio.run(final)
    statuses = Counter(s for _, s, _ in entries)
    assert statuses == {Status.COMPLETED: N_ENTRIES}, statuses  # 0 lost
    done: Counter[str] = Counter()
    for log in logs:
        for event, key, _ in _lines(log):
            if event == "done":
                done[key] += 1
    assert [k for k, n in done.items() if n > 1] == []  # 0 completed twice
    # the rows w0 held when it died (claimed in its last committed call,
    # logged or not) were run again by the others once their lease lapsed
    redelivered = {k for k, _, d in entries if d > 1}
    assert redelivered, "the kill caught no claimed rows"
