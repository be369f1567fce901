"""SQLiteStore(read_only=True): listing an existing store without creating or changing anything."""

from __future__ import annotations

import hashlib
import os
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from duetime import Status
from duetime.durable import Done, NotAStore, ReadOnlyStore, SQLiteStore
from duetime.durable.conformance import row

pytestmark = pytest.mark.anyio


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def make_store(path: Path) -> None:
    async with SQLiteStore(path) as store:
        await store.add([row("a", 1), row("b", 2, delay=60.0)])
        [c] = await store.claim("w", 1)
        (await store.finish_many([(c.entry.key, c.token, Done())]))[0]


async def test_a_missing_file_is_not_created(tmp_path: Path, anyio_backend: Any) -> None:
    path = tmp_path / "typo.db"
    with pytest.raises(FileNotFoundError, match="never creates") as info:
        async with SQLiteStore(path, read_only=True):
            pass
    assert info.value.filename == str(path)
    assert names(tmp_path) == []


async def test_a_missing_directory_is_not_created(tmp_path: Path, anyio_backend: Any) -> None:
    with pytest.raises(FileNotFoundError):
        async with SQLiteStore(tmp_path / "nope" / "jobs.db", read_only=True):
            pass
    assert names(tmp_path) == []


async def test_an_empty_file_is_not_a_store(tmp_path: Path, anyio_backend: Any) -> None:
    path = tmp_path / "empty.db"
    path.touch()
    with pytest.raises(NotAStore, match="empty"):
        async with SQLiteStore(path, read_only=True):
            pass
    assert path.stat().st_size == 0


async def test_a_foreign_file_is_refused(tmp_path: Path, anyio_backend: Any) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello " * 100)
    with pytest.raises(NotAStore, match="not a SQLite database"):
        async with SQLiteStore(path, read_only=True):
            pass
    conn = sqlite3.connect(tmp_path / "app.db")
    conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY)")
    conn.close()
    with pytest.raises(NotAStore, match="another application"):
        async with SQLiteStore(tmp_path / "app.db", read_only=True):
            pass


async def test_lists_and_refuses_writes(tmp_path: Path, anyio_backend: Any) -> None:
    path = tmp_path / "jobs.db"
    await make_store(path)
    before = digest(path)
    store = SQLiteStore(path, read_only=True)
    assert "read-only" in repr(store)
    async with store:
        entries = await store.entries()
        assert [(e.key, e.status) for e in entries] == [
            ("a", Status.COMPLETED),
            ("b", Status.PENDING),
        ]
        assert (await store.get("b")) is not None
        assert await store.head() is not None
        await store.wait_changed(0)
        with pytest.raises(ReadOnlyStore, match="read-only"):
            await store.add([row("c")])
        with pytest.raises(ReadOnlyStore):
            await store.claim("w", 5)
        with pytest.raises(ReadOnlyStore):
            (await store.finish_many([("b", 1, Done())]))[0]
        with pytest.raises(ReadOnlyStore):
            await store.delete("b")
        with pytest.raises(ReadOnlyStore):
            await store.retry("b")
        with pytest.raises(ReadOnlyStore):
            await store.abort("b")
        with pytest.raises(ReadOnlyStore):
            await store.cancel("b")
        assert await store.aborts([("b", 1)]) == [False]  # a read
        await store.wait_aborted(0)
    assert digest(path) == before


async def test_sees_a_writer_commits(tmp_path: Path, anyio_backend: Any) -> None:
    path = tmp_path / "jobs.db"
    async with SQLiteStore(path) as writer, SQLiteStore(path, read_only=True) as reader:
        assert await reader.entries() == []
        await writer.add([row("x")])
        assert [e.key for e in await reader.entries()] == ["x"]


async def test_a_wal_store_without_its_shm_file(tmp_path: Path, anyio_backend: Any) -> None:
    """A store copied cleanly (no -wal/-shm) opens read-only and lists its rows."""
    path = tmp_path / "jobs.db"
    await make_store(path)
    copy = tmp_path / "copy.db"
    shutil.copyfile(path, copy)
    async with SQLiteStore(copy, read_only=True) as store:
        assert {e.key for e in await store.entries()} == {"a", "b"}


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file modes")
async def test_a_read_only_directory(tmp_path: Path, anyio_backend: Any) -> None:
    """A read-only file in a read-only directory (as on a read-only mount): the
    -shm index cannot be created, and the closed store is read as it is."""
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "jobs.db"
    await make_store(path)
    assert not (folder / "jobs.db-wal").exists()
    path.chmod(0o444)
    folder.chmod(0o555)
    try:
        async with SQLiteStore(path, read_only=True) as store:
            assert {e.key for e in await store.entries()} == {"a", "b"}
        with pytest.raises(PermissionError):
            async with SQLiteStore(folder / "new.db", read_only=False):
                pass
    finally:
        folder.chmod(0o755)
    assert names(folder) == ["jobs.db"]
