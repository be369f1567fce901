"""``python -m duetime entries`` lists read-only, shows hostile values as text,
says when it cuts, and never truncates a value.

Real processes (a pipe, and a pseudo-terminal for the table) on SQLite files.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import anyio
import pytest

import duetime
from duetime.durable import SQLiteStore, TaskRegistry

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX terminals")

SRC = str(Path(duetime.__file__).resolve().parents[1])
MARKUP_KEYS = ("order[/bold]-1", "[link=https://evil.example]click[/link] [red]FAILED[/red]")
HOSTILE_ERROR = "boom\x1b[31mRED\x1b[0m\nline 2\r\u202egnp.exe\x07 [bold]x[/bold] :smile:"

tasks = TaskRegistry()
tasks.task("jobs.echo")(lambda text: None)


def cli(*argv: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.run(
        [sys.executable, "-m", "duetime", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def fill(db: Path, n: int = 0, *, hostile: bool = False, long_error: str | None = None) -> None:
    async def go() -> None:
        async with duetime.Scheduler(store=SQLiteStore(db), tasks=tasks, worker=False) as r:
            for i in range(n):
                await r.defer("jobs.echo", f"n{i}", key=f"k{i:03d}", delay=60 + i)
            if hostile:
                for key in MARKUP_KEYS:  # defer accepts these keys: they are printable
                    await r.defer("jobs.echo", "x", key=key, delay=30)
                await r.defer("jobs.echo", "x", key="ctl", delay=10)
            if long_error is not None:
                await r.defer("jobs.echo", "x", key="long", delay=20)

    anyio.run(go)
    # Rows as another writer (or an attacker) could leave them.
    with sqlite3.connect(db) as conn:
        if hostile:
            conn.execute(
                "UPDATE duetime_entries SET last_error = ? WHERE key = 'ctl'", (HOSTILE_ERROR,)
            )
            conn.execute(
                "UPDATE duetime_entries SET key = ? WHERE key = 'ctl'", ("ctl\x1b]0;t\x07",)
            )
        if long_error is not None:
            conn.execute(
                "UPDATE duetime_entries SET last_error = ? WHERE key = 'long'", (long_error,)
            )
    conn.close()


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_listing_a_missing_store_creates_nothing(tmp_path: Path) -> None:
    for command in ("entries", "dead-letters"):
        proc = cli(command, "--store", "sqlite:///typo.db", cwd=tmp_path)
        assert proc.returncode == 2, proc.stderr
        assert "No duetime store here" in proc.stderr
        assert list(tmp_path.iterdir()) == []


def test_listing_changes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    fill(db, 3)
    before, files = digest(db), sorted(p.name for p in tmp_path.iterdir())
    for argv in (["entries"], ["entries", "--json"], ["dead-letters"]):
        proc = cli(*argv, "--store", f"sqlite:///{db}", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
    assert digest(db) == before
    assert files == ["jobs.db"]
    # A reader of a WAL database may create SQLite's side files, but writes nothing.
    assert {p.name for p in tmp_path.iterdir()} <= {"jobs.db", "jobs.db-wal", "jobs.db-shm"}
    wal = tmp_path / "jobs.db-wal"
    assert not wal.exists() or wal.stat().st_size == 0


def _read_only(folder: Path) -> tuple[str, list[str]]:
    """Make ``folder`` read-only (file modes, or a read-only bind mount as root);
    return how, and the commands that undo it."""
    if os.geteuid() != 0:
        for p in folder.iterdir():
            p.chmod(0o444)
        folder.chmod(0o555)
        return "modes", []
    mnt = folder.parent / "ro-mount"
    mnt.mkdir()
    for cmd in (
        ["mount", "--bind", str(folder), str(mnt)],
        ["mount", "-o", "remount,bind,ro", str(mnt)],
    ):
        if subprocess.run(cmd, capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", str(mnt)], capture_output=True, check=False)
            pytest.skip("root without a read-only mount to test on (no CAP_SYS_ADMIN)")
    return str(mnt), ["umount", str(mnt)]


def test_listing_works_on_a_read_only_file_or_mount(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    fill(folder / "jobs.db", 2)
    how, undo = _read_only(folder)
    try:
        where = folder if how == "modes" else Path(how)
        proc = cli("entries", "--store", f"sqlite:///{where}/jobs.db", "--json", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert [json.loads(line)["key"] for line in proc.stdout.splitlines()] == ["k000", "k001"]
        proc = cli("entries", "--store", f"sqlite:///{where}/other.db", cwd=tmp_path)
        assert proc.returncode == 2
        assert "No duetime store here" in proc.stderr
    finally:
        if undo:
            subprocess.run(undo, check=True)
        else:
            folder.chmod(0o755)


def test_markup_and_control_characters_are_shown_as_text(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    fill(db, hostile=True)
    url = f"sqlite:///{db}"
    for argv in (["--plain"], []):  # in a pipe both are plain text
        proc = cli("entries", "--store", url, *argv, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        out = proc.stdout
        for key in MARKUP_KEYS:
            assert key in out
        assert "ctl\\x1b]0;t\\x07" in out
        assert (
            "boom\\x1b[31mRED\\x1b[0m\\nline 2\\r\\u202egnp.exe\\x07 [bold]x[/bold] :smile:" in out
        )
        assert not any(c in out for c in "\x1b\x07\r\u202e")
        assert len(out.splitlines()) == 5  # header, 3 rows, count
    proc = cli("entries", "--store", url, "--json", cwd=tmp_path)
    assert not any(c in proc.stdout for c in "\x1b\x07\r\u202e")
    rows = {json.loads(line)["key"]: json.loads(line) for line in proc.stdout.splitlines()}
    assert rows["ctl\x1b]0;t\x07"]["last_error"] == HOSTILE_ERROR  # exact, once decoded


def test_the_table_on_a_terminal_escapes_and_folds(tmp_path: Path) -> None:
    import pty

    db = tmp_path / "jobs.db"
    long_error = "E" * 150 + " the end"
    fill(db, hostile=True, long_error=long_error)
    leader, follower = pty.openpty()
    env = {**os.environ, "PYTHONPATH": SRC, "COLUMNS": "100", "TERM": "xterm"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "duetime", "entries", "--store", f"sqlite:///{db}"],
        stdout=follower,
        stderr=subprocess.PIPE,
        env=env,
        cwd=tmp_path,
    )
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    assert proc.wait(timeout=60) == 0
    out = b"".join(chunks).decode()
    assert "━" in out  # a Rich table
    assert "4 entries" in out
    assert "]8;" not in out  # no hyperlink escape from [link=...]
    assert "\x07" not in out
    assert "\u202e" not in out
    text = "".join(out.split())  # folded cells: compare without the layout
    for ch in "┃│":
        text = text.replace(ch, "")
    assert "EEEEE" in text
    assert text.count("E" * 10) >= 10  # folded, not cut with an ellipsis
    assert "…" not in out
    assert "theend" in text.replace("E", "")


def test_a_long_error_is_never_cut_in_a_pipe(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    long_error = "ValueError: " + "x" * 2000 + " END"
    fill(db, long_error=long_error)
    proc = cli("entries", "--store", f"sqlite:///{db}", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert long_error in proc.stdout


def test_the_limit_is_announced_and_can_be_lifted(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    fill(db, 5)
    url = f"sqlite:///{db}"

    def keys(*argv: str) -> tuple[list[str], str]:
        proc = cli("entries", "--store", url, "--json", *argv, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        return [json.loads(line)["key"] for line in proc.stdout.splitlines()], proc.stderr

    got, err = keys("--limit", "3")
    assert got == ["k000", "k001", "k002"]
    assert "showing the first 3 entries" in err
    assert "--all" in err
    for argv in (("--limit", "5"), ("--limit", "0"), ("--all",), ()):
        got, err = keys(*argv)
        assert got == [f"k{i:03d}" for i in range(5)]
        assert err == ""
    got, err = keys("--limit", "2", "--task", "jobs.echo")
    assert (len(got), "first 2" in err) == (2, True)
    got, err = keys("--task", "other.task")
    assert (got, err) == ([], "")
    proc = cli("entries", "--store", url, "--limit", "-1", cwd=tmp_path)
    assert proc.returncode == 2
    assert ">= 0" in proc.stderr


def test_a_reader_that_goes_away_ends_the_listing_quietly(tmp_path: Path) -> None:
    from duetime.durable import NewRow

    db = tmp_path / "jobs.db"

    async def go() -> None:
        async with SQLiteStore(db) as store:
            rows = [
                NewRow(key=f"k{i:05d}", task="t", payload="[]", delay=60.0) for i in range(4000)
            ]
            await store.add(rows)

    anyio.run(go)
    proc = subprocess.Popen(
        [sys.executable, "-m", "duetime", "entries", "--store", f"sqlite:///{db}", "--all"],
        env={**os.environ, "PYTHONPATH": SRC},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=tmp_path,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().startswith(b"key")
    proc.stdout.close()  # as `| head -1` does, long before 4000 lines (> a pipe buffer)
    assert proc.wait(timeout=60) == 141
    assert proc.stderr is not None
    assert proc.stderr.read() == b""


def test_open_store_read_only_reaches_the_sqlite_store(tmp_path: Path) -> None:
    from duetime.durable import open_store

    store = open_store(f"sqlite:///{tmp_path}/jobs.db", read_only=True)
    assert isinstance(store, SQLiteStore)
    assert store.read_only
    assert not open_store(f"sqlite:///{tmp_path}/jobs.db").read_only  # type: ignore[attr-defined]
    open_store("memory://", read_only=True)  # nothing to protect in a new memory store


def test_listing_a_redis_store_writes_nothing(tmp_path: Path) -> None:
    import time

    from duetime.durable import Done, RedisStore
    from duetime.durable.conformance import row

    from .redis_server import RedisServer

    async def writes(url: str) -> int:
        import coredis

        async with coredis.Redis.from_url(url, decode_responses=True) as client:
            info = await client.info("persistence")
            return int(str(info["rdb_changes_since_last_save"]))

    async def fill(url: str) -> float:
        async with RedisStore(url, dedupe_ttl=0.05) as store:
            await store.add([row("done"), row("later", delay=3600.0)])
            [c] = await store.claim("w", 1)
            (await store.finish_many([(c.entry.key, c.token, Done())]))[0]
            return time.time() + 0.05

    with RedisServer(tmp_path) as server:
        expires = anyio.run(fill, server.url)
        while time.time() <= expires:  # the tombstone must be purgeable: a write
            time.sleep(0.01)
        before = anyio.run(writes, server.url)
        proc = cli("entries", "--store", server.url, "--json", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert [json.loads(line)["key"] for line in proc.stdout.splitlines()] == ["later"]
        assert anyio.run(writes, server.url) == before
