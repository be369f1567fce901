"""The checkpoint file of process_batch: created safely, refused when it is not ours.

Issue 12, item 9: mode 0600, no symlink followed, an unwritable file fails the
batch before its first item, a foreign or mis-shaped database is refused without
being changed, and two batches sharing one file cannot both run.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from duetime import process_batch

ran: list[int] = []


async def work(i: int) -> int:
    ran.append(i)
    return i


@pytest.fixture(autouse=True)
def _clear_ran() -> None:
    ran.clear()


def journal_mode(db: Path) -> str:
    with sqlite3.connect(db) as conn:
        mode: str = conn.execute("PRAGMA journal_mode").fetchone()[0]
    return mode


@pytest.mark.anyio
async def test_created_0600_and_resumable(tmp_path: Path) -> None:
    db = tmp_path / "ckpt.sqlite"
    old = os.umask(0o022)  # the usual umask would give 0644
    try:
        report = await process_batch(range(3), work, checkpoint=db)
    finally:
        os.umask(old)
    assert stat.S_IMODE(db.stat().st_mode) == 0o600
    assert [i for i, _ in report.completed] == [0, 1, 2]
    again = await process_batch(range(4), work, checkpoint=db)
    assert again.checkpointed == [0, 1, 2]
    assert ran == [0, 1, 2, 3]


@pytest.mark.anyio
async def test_a_symlink_is_not_followed(tmp_path: Path) -> None:
    target = tmp_path / "elsewhere.sqlite"
    link = tmp_path / "ckpt.sqlite"
    link.symlink_to(target)
    with pytest.raises(ValueError, match="symbolic link"):
        await process_batch(range(3), work, checkpoint=link)
    assert not target.exists()  # a dangling link did not create its target
    assert ran == []
    # A link to an existing checkpoint is refused as well.
    await process_batch(range(1), work, checkpoint=target)
    with pytest.raises(ValueError, match="symbolic link"):
        await process_batch(range(3), work, checkpoint=link)


@pytest.fixture
def read_only() -> Iterator[list[Path]]:
    """Make files read-only for this process: chmod, or ``chattr +i`` for root."""
    made: list[Path] = []
    yield made
    for path in made:
        if os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(path)], check=False)


def make_read_only(path: Path, made: list[Path]) -> None:
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # root writes through any mode bits; the immutable flag stops it too
        if shutil.which("chattr") is None:
            pytest.skip("root without chattr: cannot make a file read-only")
        done = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
        if done.returncode != 0:
            pytest.skip(f"chattr +i failed: {done.stderr!r}")
        made.append(path)
    else:
        path.chmod(0o444)


@pytest.mark.anyio
async def test_read_only_checkpoint_fails_the_batch_up_front(
    tmp_path: Path, read_only: list[Path]
) -> None:
    db = tmp_path / "ckpt.sqlite"
    await process_batch(range(2), work, checkpoint=db)  # an existing WAL checkpoint
    ran.clear()
    make_read_only(db, read_only)
    with pytest.raises(PermissionError, match="cannot be written"):
        await process_batch(range(5), work, checkpoint=db)
    assert ran == []  # no item ran (before: every item ran, each failed to record)


@pytest.mark.anyio
async def test_unwritable_wal_location_fails_up_front(tmp_path: Path) -> None:
    db = tmp_path / "ckpt.sqlite"
    (tmp_path / "ckpt.sqlite-wal").mkdir()  # SQLite cannot create its WAL file
    with pytest.raises(OSError, match="cannot be written"):
        await process_batch(range(5), work, checkpoint=db)
    assert ran == []


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ("CREATE TABLE duetime_completed (key INTEGER, extra TEXT)", "another schema"),
        ("CREATE TABLE duetime_completed (id TEXT PRIMARY KEY)", "another schema"),
        ("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)", "not a duetime checkpoint"),
        (
            "CREATE TABLE duetime_completed (key TEXT PRIMARY KEY); CREATE TABLE users (id)",
            "not a duetime checkpoint",
        ),
        ("PRAGMA application_id = 42", "another application"),
    ],
    ids=["wrong-columns", "wrong-name", "foreign-table", "extra-table", "foreign-app-id"],
)
async def test_a_foreign_database_is_refused_and_left_unchanged(
    tmp_path: Path, schema: str, message: str
) -> None:
    db = tmp_path / "app.sqlite"
    with sqlite3.connect(db) as conn:
        conn.executescript(schema)
    conn.close()
    before = db.read_bytes()
    with pytest.raises(ValueError, match=message):
        await process_batch(range(3), work, checkpoint=db)
    assert ran == []
    assert db.read_bytes() == before  # not switched to WAL, not marked
    assert journal_mode(db) == "delete"


@pytest.mark.anyio
async def test_a_file_that_is_not_a_database_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "notes.txt"
    db.write_text("not a database\n" * 100)
    with pytest.raises(ValueError, match="not a SQLite database"):
        await process_batch(range(3), work, checkpoint=db)
    assert db.read_text() == "not a database\n" * 100


@pytest.mark.anyio
async def test_a_checkpoint_of_duetime_0_1_is_accepted(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    with sqlite3.connect(db) as conn:
        conn.execute("CREATE TABLE duetime_completed (key TEXT PRIMARY KEY)")
        conn.execute("INSERT INTO duetime_completed VALUES ('0')")
    conn.close()
    report = await process_batch(range(2), work, checkpoint=db)
    assert report.checkpointed == [0]
    assert ran == [1]


@pytest.mark.anyio
async def test_a_second_concurrent_batch_in_this_process_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "ckpt.sqlite"
    seen: list[str] = []

    async def nested(i: int) -> int:
        # The outer batch is running (its checkpoint open) while this one starts.
        try:
            await process_batch(range(3), work, checkpoint=db)
        except BlockingIOError as exc:
            seen.append(str(exc))
        return i

    report = await process_batch(range(2), nested, checkpoint=db)
    assert [i for i, _ in report.completed] == [0, 1]
    assert len(seen) == 2
    assert "in use" in seen[0]
    assert ran == []  # the refused batches ran nothing
    with sqlite3.connect(db) as conn:
        keys = sorted(r[0] for r in conn.execute("SELECT key FROM duetime_completed"))
    conn.close()
    assert keys == ["0", "1"]  # the refusals did not break the outer batch's lock or keys


@pytest.mark.anyio
async def test_a_batch_in_another_process_is_refused_while_one_runs(tmp_path: Path) -> None:
    db = tmp_path / "ckpt.sqlite"
    script = textwrap.dedent(
        f"""
        import anyio, duetime

        async def handler(i):
            return i

        async def main():
            try:
                await duetime.process_batch(range(100), handler, checkpoint={str(db)!r})
            except BlockingIOError as exc:
                print("refused:", exc)
            else:
                print("ran")

        anyio.run(main)
        """
    )
    outputs: list[str] = []

    def run_other() -> None:
        done = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)},
        )
        outputs.append(done.stdout)

    async def item(i: int) -> int:
        run_other()  # blocking on purpose: the outer batch holds the file meanwhile
        return i

    await process_batch(range(1), item, checkpoint=db)
    assert outputs[0].startswith("refused:")
    assert "in use" in outputs[0]
    # Once the first batch is over, the file is free again.
    run_other()
    assert outputs[1] == "ran\n"
