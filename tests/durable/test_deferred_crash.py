"""A waiter in one process, workers in others: the worker running the awaited
entry is killed with SIGKILL; the waiter gets the outcome of the re-run.

Real processes, real time, SQLite and Redis; every wait is for a line in a
file, with a generous deadline (nothing asserts a duration).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from .redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
DEADLINE = 60.0


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def wait_for(pred: Callable[[], bool], what: str) -> None:
    end = time.monotonic() + DEADLINE
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def start(*args: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])}
    cmd = [sys.executable, "-m", "tests.durable._handles_proc", *args]
    return subprocess.Popen(cmd, env=env, cwd=ROOT)


def run_scenario(where: str, tmp_path: Path, backend: str) -> None:
    waited, first, second = tmp_path / "waiter.log", tmp_path / "w1.log", tmp_path / "w2.log"
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(start("waiter", where, str(waited), backend, "report-7"))
        wait_for(lambda: "waiting" in lines(waited), "the waiter to defer and wait")
        procs.append(start("worker", where, str(first), backend))
        wait_for(lambda: "started 1" in lines(first), "the first worker to start the task")
        procs[-1].send_signal(signal.SIGKILL)
        procs[-1].wait(timeout=10)
        procs.append(start("worker", where, str(second), backend))
        wait_for(lambda: any(x.startswith(("result", "error")) for x in lines(waited)), "a result")
        [outcome] = [x for x in lines(waited) if x.startswith(("result", "error"))]
        assert outcome.startswith("result "), outcome
        assert json.loads(outcome[len("result ") :]) == {"delivery": 2, "report": 7}
        assert "started 2" in lines(second)
        assert procs[0].wait(timeout=DEADLINE) == 0
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=10)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_sqlite_waiter_gets_the_rerun_after_a_kill(tmp_path: Path, backend: str) -> None:
    run_scenario(str(tmp_path / "jobs.db"), tmp_path, backend)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_redis_waiter_gets_the_rerun_after_a_kill(tmp_path: Path, backend: str) -> None:
    with RedisServer(tmp_path) as server:
        run_scenario(server.url, tmp_path, backend)
