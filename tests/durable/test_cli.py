"""``python -m duetime worker`` and ``entries`` (a real process on a SQLite file).

These tests run on real time (a subprocess cannot share virtual time); every
wait polls with a deadline, none sleeps for a fixed time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import anyio
import pytest

import duetime
from duetime import Status
from duetime.__main__ import main
from duetime.durable import Entry, SQLiteStore, TaskRegistry

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

SRC = str(Path(duetime.__file__).resolve().parents[1])

JOBS = textwrap.dedent(
    """
    import time
    import anyio
    from duetime.durable import TaskRegistry, current_entry

    tasks = TaskRegistry()

    @tasks.task("jobs.note")
    def note(path: str, text: str) -> None:
        with open(path, "a") as f:
            f.write(f"{current_entry().key} {text}\\n")

    @tasks.task("jobs.hang", lease=5)
    async def hang() -> None:
        await anyio.sleep(3600)
    """
)

# The producer side only needs the names (and options) of the tasks.
producer_tasks = TaskRegistry()
producer_tasks.task("jobs.note")(lambda path, text: None)
producer_tasks.task("jobs.hang", lease=5)(lambda: None)


def _run(fn: Any, *args: Any) -> Any:
    return anyio.run(fn, *args, backend="asyncio")


async def _defer(db: Path, note_path: Path) -> None:
    async with duetime.Scheduler(store=SQLiteStore(db), tasks=producer_tasks, worker=False) as r:
        await r.defer_many(
            "jobs.note",
            [(str(note_path), f"n{i}") for i in range(5)],
            keys=[f"n{i}" for i in range(5)],
        )
        await r.defer("jobs.hang", key="hang")


async def _entries(db: Path) -> dict[str, Entry]:
    async with SQLiteStore(db) as store:
        return {e.key: e for e in await store.entries()}


def _wait(cond: Any, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("timed out")
        time.sleep(0.05)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_worker_process_runs_entries_and_releases_leases_on_sigterm(
    tmp_path: Path, backend: str
) -> None:
    (tmp_path / "jobs_mod.py").write_text(JOBS)
    db = tmp_path / "jobs.db"
    notes = tmp_path / "notes.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, str(tmp_path)])}
    argv = ["worker", "jobs_mod:tasks", "--store", f"sqlite:///{db}", "--concurrency", "4"]
    argv += ["--grace", "0.2", "--backend", backend]
    proc = subprocess.Popen(
        [sys.executable, "-m", "duetime", *argv],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert "ready" in line, line
        _run(_defer, db, notes)

        def settled() -> bool:
            rows = _run(_entries, db)
            done = [k for k, e in rows.items() if e.status is Status.COMPLETED]
            return len(done) == 5 and rows["hang"].status is Status.RUNNING

        _wait(settled)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "SIGTERM" in err
    rows = _run(_entries, db)
    assert not [k for k, e in rows.items() if e.status is Status.RUNNING]
    hang = rows["hang"]
    assert hang.status is Status.PENDING
    assert hang.deliveries == 0  # released, not counted as a lost delivery
    assert sorted(notes.read_text().splitlines()) == [f"n{i} n{i}" for i in range(5)]


def test_entries_command_lists_json_table_and_dead_letters(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    db = tmp_path / "e.db"

    async def fill() -> None:
        async with duetime.Scheduler(
            store=SQLiteStore(db), tasks=producer_tasks, worker=False
        ) as r:
            await r.defer("jobs.note", "p", "t", key="a", delay=60)

    _run(fill)
    assert main(["entries", "--store", f"sqlite:///{db}", "--json"]) == 0
    (line,) = capsys.readouterr().out.splitlines()
    row = json.loads(line)
    assert (row["key"], row["task"], row["status"], row["args"]) == (
        "a",
        "jobs.note",
        "PENDING",
        ["p", "t"],
    )
    assert main(["entries", "--store", f"sqlite:///{db}", "--plain"]) == 0
    out = capsys.readouterr().out
    assert "jobs.note" in out
    assert "(1 entry)" in out
    assert main(["entries", "--store", f"sqlite:///{db}", "--failed", "--json"]) == 0
    assert capsys.readouterr().out == ""


def test_worker_command_rejects_a_bad_target(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "not_tasks.py").write_text("tasks = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    url = f"sqlite:///{tmp_path / 'x.db'}"
    assert main(["worker", "not_tasks:tasks", "--store", url]) == 2
    assert "not a duetime TaskRegistry" in capsys.readouterr().err
    assert main(["worker", "not_tasks:nope", "--store", url]) == 2
    assert "no attribute" in capsys.readouterr().err
    assert main(["worker", "no_such_module_xyz:t", "--store", url]) == 2
    assert "no_such_module_xyz" in capsys.readouterr().err
    assert main(["worker", "not_tasks", "--store", url]) == 2
    assert "0 TaskRegistry" in capsys.readouterr().err
    assert not (tmp_path / "x.db").exists()
