"""``python -m duetime abort --store URL --key K``: an operator aborts running
entries (and deletes pending ones) from a shell, with a dry run, exit codes,
and no credential of the store URL in any output.

The state machine of the command runs on one MemoryStore the command opens
(through ``open_store``); the end-to-end test runs a real worker process on a
SQLite file and aborts its run from the command line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import anyio
import pytest

import duetime
from duetime import Status
from duetime.__main__ import main
from duetime.durable import ABORTED, Done, Entry, MemoryStore, SQLiteStore
from duetime.durable.conformance import row

SRC = str(Path(duetime.__file__).resolve().parents[1])
SECRET = "s3cretPW"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> MemoryStore:
    """One MemoryStore that every ``open_store`` of the command returns: "run"
    RUNNING (held by worker "w"), "p" PENDING, "done" COMPLETED."""
    shared = MemoryStore()

    async def fill() -> None:
        await shared.add([row("run", task="report"), row("done", task="report")])
        for c in await shared.claim("w", 2):
            if c.entry.key == "done":
                await shared.finish_many([("done", c.token, Done())])
        await shared.add([row("p", task="report", delay=3600.0)])

    anyio.run(fill)
    monkeypatch.setattr("duetime.durable._url.open_store", lambda url, read_only=False: shared)
    return shared


def get(store: MemoryStore, key: str) -> Entry | None:
    async def go() -> Entry | None:
        return await store.get(key)

    result: Entry | None = anyio.run(go)
    return result


def test_abort_aborts_a_running_entry_deletes_a_pending_one_and_skips_the_rest(
    store: MemoryStore, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["abort", "--store", "memory://", "--key", "run", "--key", "p"]
    code, out, _ = run(capsys, *argv, "--key", "done", "--key", "nope", "--key", "run")
    assert code == 3
    lines = out.splitlines()
    assert lines[:2] == ["skipped  done: COMPLETED: finished", "skipped  nope: no such entry"]
    assert lines[2].startswith("aborted  run  (task report, RUNNING, attempt 1)")
    assert lines[3].startswith("deleted  p  (task report, PENDING, attempt 1)")
    assert lines[4:] == ["aborted or deleted 2 of 4 entries named with --key"]
    e = get(store, "run")
    assert e is not None
    assert (e.status, e.abort_requested) == (Status.RUNNING, True)
    assert get(store, "p") is None
    # Everything named can be changed: 0.
    code, out, _ = run(capsys, "abort", "--store", "memory://", "--key", "run")
    assert code == 0, out


def test_a_dry_run_changes_nothing(store: MemoryStore, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "abort", "--store", "memory://", "--key", "run", "--key", "p", "--dry-run"
    )
    assert code == 0
    assert out.splitlines() == [
        "would abort  run  (task report, RUNNING, attempt 1)",
        "would delete  p  (task report, PENDING, attempt 1)",
        "2 of 2 entries would be aborted or deleted",
        "(dry run: nothing changed)",
    ]
    e = get(store, "run")
    assert e is not None
    assert e.abort_requested is False
    assert get(store, "p") is not None


def test_usage_help_and_a_missing_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/typo.db"
    with pytest.raises(SystemExit) as info:
        main(["abort", "--store", url])  # --key is required
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        main(["abort", "--help"])
    out = capsys.readouterr().out
    assert "exit status:" in out
    assert "  3    some named entries were skipped" in out
    code, _, err = run(capsys, "abort", "--store", url, "--key", "k")
    assert code == 2
    assert "No duetime store here" in err
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_an_unreachable_store_is_one_line_without_credentials(
    capsys: pytest.CaptureFixture[str],
) -> None:
    url = f"redis://user:{SECRET}@127.0.0.1:1/0"
    code, out, err = run(capsys, "abort", "--store", url, "--key", "k", "--timeout", "5")
    assert code == 2
    assert len(err.strip().splitlines()) == 1, err
    assert SECRET not in out + err


# -- a real worker process ------------------------------------------------------------

TASKS = textwrap.dedent(
    """
    import os
    import anyio
    from duetime.durable import TaskRegistry, current_entry

    tasks = TaskRegistry()

    @tasks.task("report")
    async def report() -> str:
        with open(os.environ["STARTED"], "a") as f:
            f.write(current_entry().key + "\\n")
        await anyio.sleep(3600)
        return "never"
    """
)


def wait_until(cond: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_an_operator_aborts_a_run_of_a_worker_process(tmp_path: Path) -> None:
    (tmp_path / "abort_tasks.py").write_text(TASKS)
    db, started = tmp_path / "jobs.db", tmp_path / "started.txt"
    url = f"sqlite:///{db}"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([SRC, str(tmp_path)]),
        "STARTED": str(started),
    }

    async def produce() -> None:
        async with SQLiteStore(db) as s:
            await s.add([row("r7", task="report")])

    async def status() -> Entry | None:
        async with SQLiteStore(db) as s:
            return await s.get("r7")

    anyio.run(produce)
    cmd = [sys.executable, "-m", "duetime", "worker", "abort_tasks:tasks", "--store", url]
    worker = subprocess.Popen(cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: started.exists() and started.read_text() == "r7\n", "the run")
        proc = subprocess.run(
            [sys.executable, "-m", "duetime", "abort", "--store", url, "--key", "r7"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.startswith("aborted  r7  (task report, RUNNING, attempt 1)")

        def cancelled() -> bool:
            e = anyio.run(status)
            return e is not None and e.status is Status.CANCELLED

        wait_until(cancelled, "the aborted run to end")
        e = anyio.run(status)
        assert e is not None
        assert e.last_error == ABORTED
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            _, err = worker.communicate(timeout=30)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert worker.returncode == 0, err
    assert "durable task 'report' (entry 'r7') aborted" in err
    assert started.read_text() == "r7\n"  # not run again
