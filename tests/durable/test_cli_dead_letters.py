"""``dead-letters``, ``retry`` and ``delete``: the operator's tools for dead letters,
by key and by task, with a dry run, a confirmation for bulk changes and exit codes.

The rolling deploy runs real worker processes: an old worker dead-letters a task
it does not know, the CLI retries them, a new worker runs them.
"""

from __future__ import annotations

import json
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
from duetime.durable import Dead, Done, Entry, SQLiteStore
from duetime.durable.conformance import row

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

SRC = str(Path(duetime.__file__).resolve().parents[1])


def make_store(db: Path) -> None:
    """Dead letters a1-a3 (task old.a), b1-b2 (old.b); p1 pending (old.a); c1 completed."""

    async def go() -> None:
        async with SQLiteStore(db) as store:
            dead = ["a1", "a2", "a3", "b1", "b2"]
            await store.add([row(k, task="old.a" if k < "b" else "old.b") for k in dead])
            for c in await store.claim("w", 10):
                (
                    await store.finish_many(
                        [(c.entry.key, c.token, Dead(f"unknown task {c.entry.task!r}"))]
                    )
                )[0]
            await store.add([row("c1", task="old.a")])
            [c] = await store.claim("w", 1)
            (await store.finish_many([(c.entry.key, c.token, Done())]))[0]
            await store.add([row("p1", task="old.a", delay=3600.0)])

    anyio.run(go)


def statuses(db: Path) -> dict[str, Status]:
    async def go() -> dict[str, Status]:
        async with SQLiteStore(db) as store:
            return {e.key: e.status for e in await store.entries(limit=100)}

    result: dict[str, Status] = anyio.run(go)
    return result


def entry(db: Path, key: str) -> Entry | None:
    async def go() -> Entry | None:
        async with SQLiteStore(db) as store:
            return await store.get(key)

    result: Entry | None = anyio.run(go)
    return result


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "jobs.db"
    make_store(path)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


F, P, C = Status.FAILED, Status.PENDING, Status.COMPLETED
START = {"a1": F, "a2": F, "a3": F, "b1": F, "b2": F, "c1": C, "p1": P}


def test_dead_letters_lists_by_task(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{db}"
    code, out, _ = run(capsys, "dead-letters", "--store", url, "--json")
    assert code == 0
    rows = [json.loads(line) for line in out.splitlines()]
    assert sorted(r["key"] for r in rows) == ["a1", "a2", "a3", "b1", "b2"]
    assert rows[0]["last_error"].startswith("unknown task")
    code, out, _ = run(capsys, "dead-letters", "--store", url, "--task", "old.b", "--plain")
    assert code == 0
    assert "unknown task 'old.b'" in out
    assert "(2 entries)" in out
    assert statuses(db) == START


def test_retry_by_key_reports_each_key(db: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{db}"
    code, out, _ = run(capsys, "retry", "--store", url, "--key", "a1", "--key", "nope")
    assert code == 3  # partly: one key was skipped
    assert "retried  a1  (task old.a, FAILED, attempt 1): unknown task 'old.a'" in out
    assert "skipped  nope: no such entry" in out
    assert "retried 1 of 2 entries named with --key" in out
    e = entry(db, "a1")
    assert e is not None
    assert (e.status, e.attempt) == (P, 1)
    code, out, _ = run(capsys, "retry", "--store", url, "--key", "p1", "--key", "c1")
    assert code == 3
    assert "skipped  p1: PENDING, not a dead letter" in out
    assert "skipped  c1: COMPLETED, not a dead letter" in out
    assert statuses(db) == {**START, "a1": P}


def test_retry_by_task_needs_yes_and_dry_run_changes_nothing(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{db}"
    code, out, err = run(capsys, "retry", "--store", url, "--task", "old.a")
    assert code == 2
    assert out.count("would retry  a") == 3
    assert "3 dead letters of task 'old.a' would be retried" in out
    assert "add --yes" in err
    assert statuses(db) == START
    code, out, _ = run(capsys, "retry", "--store", url, "--task", "old.a", "--dry-run")
    assert code == 0
    assert "(dry run: nothing changed)" in out
    assert statuses(db) == START
    code, out, _ = run(capsys, "retry", "--store", url, "--task", "old.a", "--yes")
    assert code == 0
    assert "retried 3 of 3 dead letters of task 'old.a'" in out
    assert statuses(db) == {**START, "a1": P, "a2": P, "a3": P}
    code, out, _ = run(capsys, "retry", "--store", url, "--task", "old.a", "--yes")
    assert (code, "retried 0 of 0" in out) == (0, True)


def test_delete_dead_letters_only_unless_asked(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = f"sqlite:///{db}"
    code, out, _ = run(capsys, "delete", "--store", url, "--key", "b1", "--key", "p1")
    assert code == 3
    assert "deleted  b1" in out
    assert "skipped  p1: PENDING, not a dead letter (--any-status deletes it)" in out
    code, out, _ = run(capsys, "delete", "--store", url, "--key", "p1", "--any-status")
    assert code == 0
    assert statuses(db) == {k: s for k, s in START.items() if k not in ("b1", "p1")}
    code, out, _ = run(capsys, "delete", "--store", url, "--all-failed")
    assert code == 2
    assert "4 dead letters would be deleted" in out
    code, out, _ = run(capsys, "delete", "--store", url, "--all-failed", "--yes")
    assert code == 0
    assert "deleted 4 of 4 dead letters" in out
    assert statuses(db) == {"c1": C}


def test_bad_usage_and_a_missing_store(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/typo.db"
    with pytest.raises(SystemExit) as info:
        main(["retry", "--store", url])  # one of --key, --task, --all-failed
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        main(["delete", "--store", url, "--key", "k", "--task", "t"])
    capsys.readouterr()
    for argv in (["retry", "--key", "k"], ["delete", "--all-failed", "--yes"]):
        code, _, err = run(capsys, *argv, "--store", url)
        assert code == 2
        assert "No duetime store here" in err
    assert list(tmp_path.iterdir()) == []  # nothing created


def test_help_documents_the_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("retry", "delete", "dead-letters", "entries", "worker"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        out = capsys.readouterr().out
        assert "exit status:" in out
        assert "  2    " in out
    with pytest.raises(SystemExit):
        main(["retry", "--help"])
    assert "  3    some entries named with --key were skipped" in capsys.readouterr().out


# -- a rolling deploy, with real worker processes ------------------------------------

OLD = textwrap.dedent(
    """
    from duetime.durable import TaskRegistry
    tasks = TaskRegistry()
    """
)
NEW = textwrap.dedent(
    """
    import os
    from duetime.durable import TaskRegistry, current_entry
    tasks = TaskRegistry()

    @tasks.task("billing.new")
    def new(n: int) -> None:
        with open(os.environ["RAN"], "a") as f:
            f.write(f"{current_entry().key} {n}\\n")
    """
)


def wait_until(cond: Callable[[], bool], what: str, limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def test_a_rolling_deploy_retries_what_an_old_worker_dead_lettered(tmp_path: Path) -> None:
    (tmp_path / "old_tasks.py").write_text(OLD)
    (tmp_path / "new_tasks.py").write_text(NEW)
    db, ran = tmp_path / "jobs.db", tmp_path / "ran.txt"
    url = f"sqlite:///{db}"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, str(tmp_path)]), "RAN": str(ran)}

    def worker(target: str) -> subprocess.Popen[str]:
        cmd = [sys.executable, "-m", "duetime", "worker", target, "--store", url, "--grace", "5"]
        return subprocess.Popen(cmd, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True)

    def cli(*argv: str) -> subprocess.CompletedProcess[str]:
        cmd = [sys.executable, "-m", "duetime", *argv, "--store", url]
        return subprocess.run(
            cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60, check=False
        )

    def stop(proc: subprocess.Popen[str]) -> None:
        proc.send_signal(signal.SIGTERM)
        try:
            assert proc.wait(timeout=30) == 0
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    async def produce() -> None:
        from duetime.durable import TaskRegistry

        producer = TaskRegistry()
        producer.task("billing.new")(lambda n: None)
        async with duetime.Scheduler(store=SQLiteStore(db), tasks=producer, worker=False) as r:
            await r.defer_many(
                "billing.new", [(i,) for i in range(5)], keys=[f"n{i}" for i in range(5)]
            )

    anyio.run(produce)
    old = worker("old_tasks:tasks")
    try:
        wait_until(lambda: statuses(db) == {f"n{i}": F for i in range(5)}, "the dead letters")
    finally:
        stop(old)
    listed = cli("dead-letters", "--task", "billing.new", "--json")
    assert listed.returncode == 0, listed.stderr
    assert len(listed.stdout.splitlines()) == 5
    assert "billing.new" in json.loads(listed.stdout.splitlines()[0])["last_error"]
    retried = cli("retry", "--task", "billing.new", "--yes")
    assert retried.returncode == 0, retried.stderr
    assert "retried 5 of 5" in retried.stdout
    new = worker("new_tasks:tasks")
    try:
        wait_until(lambda: statuses(db) == {f"n{i}": C for i in range(5)}, "the retried runs")
    finally:
        stop(new)
    assert sorted(ran.read_text().splitlines()) == [f"n{i} {i}" for i in range(5)]


def test_a_dead_letter_with_an_unprintable_key_is_shown_escaped_and_removable(
    db: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlite3

    # A row as a malformed write could leave it, set aside as a dead letter.
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE duetime_entries SET key = ? WHERE key = 'b2'", ("b2\x1b[2J\n",))
    conn.close()
    url = f"sqlite:///{db}"
    code, out, _ = run(capsys, "delete", "--store", url, "--task", "old.b", "--dry-run")
    assert code == 0
    assert "would delete  b2\\x1b[2J\\n  (task old.b, FAILED" in out
    assert "\x1b" not in out
    code, out, _ = run(capsys, "delete", "--store", url, "--task", "old.b", "--yes")
    assert (code, "deleted 2 of 2 dead letters of task 'old.b'" in out) == (0, True)
    assert "\x1b" not in out
    assert statuses(db) == {k: s for k, s in START.items() if not k.startswith("b")}
