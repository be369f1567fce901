"""The real CLI on a server (PostgreSQL or Redis): four ``python -m duetime worker``
processes, one killed with SIGKILL mid-run (and, where the test asks, the server
restarted while they run), then ``python -m duetime entries``.

Real processes and real time (a few seconds).  Each task run appends its
``current_entry().idempotency_key`` to a file of its worker process (the side
channel), before its finish is recorded.  So a key may show twice only when
the killed worker ran it and died before its finish was recorded (another
worker then ran it again: at least once); never twice among the survivors.
Two workers run on asyncio and two on trio.  tests/durable/test_postgres_cli.py
and tests/durable/test_cli_redis.py run :func:`cli_workers` on their server.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

import duetime
from duetime import Status
from duetime.__main__ import main
from duetime.durable import TaskRegistry

from ._server_stores import LABELS, open_store

SRC = str(Path(duetime.__file__).resolve().parents[1])
N_ENTRIES = 2400
N_WORKERS = 4
LEASE = 1.0
BACKENDS = ("asyncio", "trio", "asyncio", "trio")

JOBS = textwrap.dedent(
    """
    import os
    import anyio
    from duetime import Retry
    from duetime.durable import TaskRegistry, current_entry

    tasks = TaskRegistry()
    # Line-buffered: one write() per line, so SIGKILL tears at most the last one.
    _log = open(os.path.join(os.environ["CLI_TEST_LOGS"], f"{os.getpid()}.log"), "a", buffering=1)

    @tasks.task("cli.work", lease=1.0)
    async def work(i: int) -> None:
        await anyio.sleep(0.01)
        _log.write(current_entry().idempotency_key + "\\n")

    @tasks.task("cli.tick", lease=1.0)
    async def tick() -> None:
        _log.write(current_entry().idempotency_key + "\\n")

    @tasks.task("cli.boom", retry=Retry(attempts=1))
    async def boom() -> None:
        raise RuntimeError("boom on purpose")
    """
)

# The producer only needs the names and options of the tasks.
producer_tasks = TaskRegistry()
producer_tasks.task("cli.work", lease=LEASE)(lambda i: None)
producer_tasks.task("cli.tick", lease=LEASE)(lambda: None)
producer_tasks.task("cli.boom")(lambda: None)

KEY = re.compile(r"^(w\d+|tick@\d+)$")


def wait_until(pred: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def read_log(path: Path) -> list[str]:
    """The complete lines of a worker's log (a SIGKILL may tear the last one)."""
    if not path.exists():
        return []
    text = path.read_text()
    lines = text.split("\n")[:-1]  # the part after the last newline is torn or empty
    assert all(KEY.match(line) for line in lines), lines[:5]
    return lines


async def produce(kind: str, url: str) -> None:
    store = open_store(kind, url)  # the CLI's default schema or prefix
    async with duetime.Scheduler(store=store, tasks=producer_tasks, worker=False) as s:
        await s.defer_every(0.25, "cli.tick", key="tick")
        await s.defer("cli.boom", key="boom")
        for i in range(0, N_ENTRIES, 400):
            keys = [f"w{j}" for j in range(i, i + 400)]
            await s.defer_many("cli.work", [(j,) for j in range(i, i + 400)], keys=keys)


async def completed(kind: str, url: str) -> int:
    async with open_store(kind, url) as store:
        return len(await store.entries(status=Status.COMPLETED, limit=N_ENTRIES + 10))


def cli_workers(
    kind: str,
    url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    *,
    restart: Callable[[], None] | None = None,
    timeout: float = 30.0,
) -> None:
    """Run the scenario on the server at ``url`` (asserting all the above).

    :param kind: the store's kind (see :func:`._server_stores.open_store`)
    :param restart: restart the server once the victim is dead (the survivors
        ride out the outage); None: no restart
    :param timeout: how long every entry may take to complete after the kill
    """
    (tmp_path / "clijobs.py").write_text(JOBS)
    logs = tmp_path / "logs"
    logs.mkdir()
    env = dict(
        os.environ,
        PYTHONPATH=os.pathsep.join([str(tmp_path), SRC, os.environ.get("PYTHONPATH", "")]),
        CLI_TEST_LOGS=str(logs),
    )
    errs = [tmp_path / f"w{i}.err" for i in range(N_WORKERS)]
    procs = []
    for backend, err in zip(BACKENDS, errs, strict=True):
        with open(err, "wb") as f:
            cmd = [sys.executable, "-m", "duetime", "worker", "clijobs:tasks"]
            cmd += ["--store", url, "--concurrency", "16", "--grace", "2"]
            cmd += ["--backend", backend]
            procs.append(subprocess.Popen(cmd, env=env, stderr=f))
    try:
        wait_until(lambda: all("ready" in e.read_text() for e in errs), 30, "the workers to start")
        anyio.run(produce, kind, url)
        victim = procs[0]
        victim_log = logs / f"{victim.pid}.log"
        wait_until(lambda: len(read_log(victim_log)) >= 40, 10, "worker 0 to run entries")
        victim.send_signal(signal.SIGKILL)
        killed_at = time.monotonic()
        assert victim.wait(timeout=5) == -signal.SIGKILL
        if restart is not None:
            restart()  # the survivors ride out the outage
        wait_until(
            lambda: anyio.run(completed, kind, url) >= N_ENTRIES,
            timeout,
            "every entry to complete",
        )
        recovered = time.monotonic() - killed_at
        time.sleep(0.6)  # a few more series occurrences
        for p in procs[1:]:
            p.send_signal(signal.SIGTERM)
        for p in procs[1:]:
            assert p.wait(timeout=10) == 0, "a worker did not exit cleanly on SIGTERM"
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for err in errs[1:]:  # (cli.boom's own traceback is logged, on purpose)
        text = err.read_text()
        for bad in ("ExceptionGroup", "cancel scope", "Trio nursery", "store error"):
            assert bad not in text, text[-3000:]

    # -- the side channel: every entry ran, none completed twice ---------------
    by_victim = Counter(read_log(victim_log))
    survivors: Counter[str] = Counter()
    for p in procs[1:]:
        survivors.update(read_log(logs / f"{p.pid}.log"))
    ran = set(by_victim) | set(survivors)
    assert {f"w{i}" for i in range(N_ENTRIES)} <= ran  # 0 lost
    assert [k for k, n in survivors.items() if n > 1] == []  # never twice among survivors
    assert [k for k, n in by_victim.items() if n > 1] == []
    # A key both ran is one the victim ran and died before its finish was recorded:
    # at most its in-flight runs (concurrency 16).
    rerun = set(by_victim) & set(survivors)
    assert len(rerun) <= 16, sorted(rerun)
    ticks = sorted(int(k.partition("@")[2]) for k in ran if k.startswith("tick@"))
    assert ticks == list(range(len(ticks))), ticks  # each occurrence, in order, no gap
    assert len(ticks) >= 3
    with capsys.disabled():
        print(
            f"\n{N_ENTRIES} entries + a series on {N_WORKERS} CLI workers; victim ran"
            f" {sum(by_victim.values())}, re-run after its death {len(rerun)}; all completed"
            f" {recovered:.2f} s after the kill{'' if restart is None else ' and restart'}"
            f" (lease {LEASE} s); {len(ticks)} occurrences on {LABELS[kind]}"
        )

    # -- python -m duetime entries ------------------------------------------------
    cmd = [sys.executable, "-m", "duetime", "entries", "--store", url]
    out = subprocess.run(
        [*cmd, "--json", "--limit", "5000"],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    ).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    by_key = {r["key"]: r for r in rows}
    assert len(rows) == N_ENTRIES + 2
    assert Counter(by_key[f"w{i}"]["status"] for i in range(N_ENTRIES)) == {"COMPLETED": N_ENTRIES}
    assert by_key["w7"]["args"] == [7]
    assert by_key["tick"]["schedule"] is not None
    assert by_key["boom"]["status"] == "FAILED"

    capsys.readouterr()
    assert main(["entries", "--store", url, "--failed", "--json"]) == 0
    [failed] = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert (failed["key"], failed["task"]) == ("boom", "cli.boom")
    assert "boom on purpose" in failed["last_error"]
    assert main(["entries", "--store", url, "--failed", "--plain"]) == 0
    table = capsys.readouterr().out
    assert "cli.boom" in table
    assert "(1 entry)" in table
