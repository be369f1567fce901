"""SQLiteStore beyond the conformance suite: the file itself, refusals, several connections."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import stat
from pathlib import Path
from typing import Any

import anyio
import pytest

from duetime.durable import Done, NotAStore, SQLiteStore
from duetime.durable.conformance import loop_epoch_clock, row

pytestmark = pytest.mark.anyio


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def siblings(path: Path) -> set[str]:
    return {p.name for p in path.parent.iterdir()}


async def test_new_file_is_private(tmp_path: Path, anyio_backend: Any) -> None:
    path = tmp_path / "jobs.db"
    old = os.umask(0o022)
    try:
        async with SQLiteStore(path) as store:
            await store.add([row("a")])
            for name in ("jobs.db", "jobs.db-wal", "jobs.db-shm"):
                mode = stat.S_IMODE((tmp_path / name).stat().st_mode)
                assert mode == 0o600, (name, oct(mode))
    finally:
        os.umask(old)


async def test_reopen_keeps_entries_and_tokens_go_on(tmp_path: Path, anyio_backend: Any) -> None:
    path = str(tmp_path / "jobs.db")
    async with SQLiteStore(path) as store:
        await store.add([row("a", 1), row("b", 2)])
        [c] = await store.claim("w", 1)
        (await store.finish_many([(c.entry.key, c.token, Done())]))[0]
    async with SQLiteStore(path) as store:
        assert (await store.get(c.entry.key)) is not None
        [c2] = await store.claim("w", 1)
        assert c2.token > c.token
        assert c2.entry.args in ((1,), (2,))


async def test_foreign_sqlite_file_is_refused_and_untouched(
    tmp_path: Path, anyio_backend: Any
) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
    conn.execute("INSERT INTO users (name) VALUES ('ann')")
    conn.commit()
    conn.close()
    before, names = digest(path), siblings(path)
    with pytest.raises(NotAStore, match="another application"):
        async with SQLiteStore(path):
            pass
    assert digest(path) == before
    assert siblings(path) == names  # no -wal/-shm: not switched to WAL
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "delete"
    conn.close()


async def test_foreign_application_id_is_refused(tmp_path: Path, anyio_backend: Any) -> None:
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA application_id = 1234")
    conn.commit()
    conn.close()
    before = digest(path)
    with pytest.raises(NotAStore, match="application_id=1234"):
        async with SQLiteStore(path):
            pass
    assert digest(path) == before


async def test_non_sqlite_file_is_refused_and_untouched(tmp_path: Path, anyio_backend: Any) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello, not a database\n" * 20)
    before, names = digest(path), siblings(path)
    with pytest.raises(NotAStore, match="not a SQLite database"):
        async with SQLiteStore(path):
            pass
    assert digest(path) == before
    assert siblings(path) == names


async def test_other_schema_version_is_refused_and_untouched(
    tmp_path: Path, anyio_backend: Any
) -> None:
    path = tmp_path / "jobs.db"
    async with SQLiteStore(path) as store:
        await store.add([row("a")])
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 4")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.commit()
    conn.close()
    before = digest(path)
    with pytest.raises(NotAStore, match="schema version 4"):
        async with SQLiteStore(path):
            pass
    assert digest(path) == before


async def test_an_empty_file_becomes_a_store(tmp_path: Path, anyio_backend: Any) -> None:
    path = tmp_path / "jobs.db"
    path.touch()
    async with SQLiteStore(path) as store:
        await store.add([row("a")])
        assert (await store.get("a")) is not None


async def test_use_before_open_is_an_error(tmp_path: Path, anyio_backend: Any) -> None:
    store = SQLiteStore(tmp_path / "jobs.db")
    with pytest.raises(RuntimeError, match="not open"):
        await store.claim("w", 1)


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="str or PathLike"):
        SQLiteStore(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lease"):
        SQLiteStore(tmp_path / "x.db", lease=0)
    with pytest.raises(ValueError, match="poll"):
        SQLiteStore(tmp_path / "x.db", poll=float("nan"))


async def test_another_connection_wakes_a_waiter_within_poll(
    tmp_path: Path, anyio_backend: Any
) -> None:
    path = tmp_path / "jobs.db"
    async with SQLiteStore(path, clock=loop_epoch_clock(), poll=0.25) as a:
        await a.wait_changed(0)  # settle
        woke: list[float] = []
        done = anyio.Event()

        async def waiter() -> None:
            await a.wait_changed(60)
            woke.append(anyio.current_time())
            done.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(5)
            # Deterministic on virtual time: the other connection commits from
            # this thread, so the loop (and its clock) stands still meanwhile;
            # then nothing but the waiter's poll has a deadline, so virtual time
            # never runs on while its data_version read is in a thread.
            t = anyio.current_time()
            other = sqlite3.connect(path, isolation_level=None)
            try:
                other.execute(
                    "INSERT INTO duetime_entries (key, task, payload, status, due, visible_at,"
                    " lease, max_deliveries) VALUES ('x', 't', '[]', 0, 0, 0, 30, 5)"
                )
            finally:
                other.close()
            await done.wait()
        assert t <= woke[0] <= t + 0.25


async def test_two_connections_never_claim_one_row_twice(
    tmp_path: Path, anyio_backend: Any
) -> None:
    path = tmp_path / "jobs.db"
    async with SQLiteStore(path) as a, SQLiteStore(path) as b:
        await a.add([row(f"k{i}") for i in range(300)])
        got: list[tuple[str, int]] = []

        async def worker(store: SQLiteStore, name: str) -> None:
            while claims := await store.claim(name, 7):
                for c in claims:
                    got.append((c.entry.key, c.token))
                    assert (await store.finish_many([(c.entry.key, c.token, Done())]))[0]

        async with anyio.create_task_group() as tg:
            tg.start_soon(worker, a, "a")
            tg.start_soon(worker, b, "b")
        assert sorted(k for k, _ in got) == sorted(f"k{i}" for i in range(300))
        assert len({t for _, t in got}) == 300


@pytest.mark.usefixtures("real_time")
async def test_another_store_objects_abort_wakes_wait_aborted(
    tmp_path: Path, anyio_backend: Any
) -> None:
    """Two store objects on one file, as two processes: the operator's abort is
    seen through ``data_version`` within the waiter's poll."""
    path = tmp_path / "jobs.db"
    async with SQLiteStore(path, poll=0.05) as waiter, SQLiteStore(path) as operator:
        await operator.add([row("a")])
        [c] = await operator.claim("w", 1)
        await waiter.wait_aborted(0)
        woke = anyio.Event()

        async def wait() -> None:
            await waiter.wait_aborted(3600)
            woke.set()

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                await anyio.sleep(0.2)
                assert not woke.is_set()
                assert await operator.abort("a")
        assert await waiter.aborts([("a", c.token)]) == [True]


@pytest.mark.usefixtures("real_time")
async def test_every_waiting_task_sees_another_processes_finish(
    tmp_path: Path, anyio_backend: Any
) -> None:
    """Two tasks wait in ``wait_finished`` on one store object; a finish by
    another store object (as another process) wakes both within the poll, not
    only the first to read ``data_version``."""
    path = tmp_path / "jobs.db"
    async with SQLiteStore(path, poll=0.05) as waiter, SQLiteStore(path) as worker:
        await worker.add([row("a")])
        [c] = await worker.claim("w", 1)
        woke: list[int] = []

        async def wait(i: int) -> None:
            await waiter.wait_finished(0)
            await waiter.wait_finished(3600)
            woke.append(i)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait, 1)
                tg.start_soon(wait, 2)
                await anyio.sleep(0.3)
                assert woke == []
                await worker.finish_many([("a", c.token, Done("[1]"))])
        assert sorted(woke) == [1, 2]
