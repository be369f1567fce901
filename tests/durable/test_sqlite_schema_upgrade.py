"""A SQLiteStore file of schema version 1 (before results were kept) is read
as it is when opened read-only, and upgraded to version 2 when opened to write."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from duetime import Status
from duetime.durable import Done, SQLiteStore
from duetime.durable.conformance import row

pytestmark = pytest.mark.anyio

_COLUMNS = ("result", "result_until", "error_type", "traceback")


async def version_1_file(path: Path) -> None:
    """A store as version 1 wrote it: one pending and one completed row."""
    async with SQLiteStore(path) as store:
        await store.add([row("done", 1), row("later", 2, delay=600)])
        [c] = await store.claim("w", 1)
        await store.finish_many([("done", c.token, Done())])
    conn = sqlite3.connect(path)
    for column in _COLUMNS:
        conn.execute(f"ALTER TABLE duetime_entries DROP COLUMN {column}")
    conn.execute("PRAGMA user_version = 1")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.commit()
    conn.close()


def columns(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[1] for r in conn.execute("PRAGMA table_info(duetime_entries)")}
    finally:
        conn.close()


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


async def test_read_only_reads_version_1_untouched(tmp_path: Path, anyio_backend: Any) -> None:
    path = tmp_path / "jobs.db"
    await version_1_file(path)
    async with SQLiteStore(path, read_only=True) as store:
        done = await store.get("done")
        assert done is not None
        assert (done.status, done.result) == (Status.COMPLETED, None)
        assert len(await store.entries()) == 2
    assert user_version(path) == 1
    assert not columns(path) & set(_COLUMNS)


async def test_opening_to_write_upgrades_version_1(tmp_path: Path, anyio_backend: Any) -> None:
    path = tmp_path / "jobs.db"
    await version_1_file(path)
    async with SQLiteStore(path) as store:
        assert [e.key for e in await store.entries()] == ["done", "later"]
        await store.add([row("new", 3)])
        [c] = await store.claim("w", 1)
        assert c.entry.key == "new"
        await store.finish_many([("new", c.token, Done("[42]"))])
        new = await store.get("new")
        assert new is not None
        assert new.result == "[42]"
    assert user_version(path) == 2
    assert columns(path) >= set(_COLUMNS)
