"""A SQLiteStore file of an older schema version (1: before results were kept,
2: before abort requests) is read as it is when opened read-only, and upgraded
to version 3 when opened to write."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest

from duetime import Status
from duetime.durable import Aborted, Done, SQLiteStore
from duetime.durable.conformance import row

pytestmark = pytest.mark.anyio

#: The columns each version added: a file of version v lacks those of every later one.
_ADDED = {
    2: ("result", "result_until", "error_type", "traceback"),
    3: ("abort_requested",),
}


async def old_file(path: Path, version: int) -> int:
    """A store as ``version`` wrote it: one pending, one completed, one running row
    (whose token it returns)."""
    async with SQLiteStore(path) as store:
        await store.add([row("done", 1), row("later", 2, delay=600), row("running", 3)])
        claims = {c.entry.key: c for c in await store.claim("w", 2)}
        await store.finish_many([("done", claims["done"].token, Done())])
    conn = sqlite3.connect(path)
    conn.execute("DROP INDEX duetime_entries_abort")
    for added in range(version + 1, 4):
        for column in _ADDED[added]:
            conn.execute(f"ALTER TABLE duetime_entries DROP COLUMN {column}")
    conn.execute(f"PRAGMA user_version = {version}")
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.commit()
    conn.close()
    return claims["running"].token


def columns(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[1] for r in conn.execute("PRAGMA table_info(duetime_entries)")}
    finally:
        conn.close()


def indexes(path: Path) -> set[str]:
    conn = sqlite3.connect(path)
    try:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'index'")}
    finally:
        conn.close()


def user_version(path: Path) -> int:
    conn = sqlite3.connect(path)
    try:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])
    finally:
        conn.close()


@pytest.mark.parametrize("version", [1, 2])
async def test_read_only_reads_an_older_file_untouched(
    tmp_path: Path, anyio_backend: Any, version: int
) -> None:
    path = tmp_path / "jobs.db"
    await old_file(path, version)
    before = columns(path)
    async with SQLiteStore(path, read_only=True) as store:
        done = await store.get("done")
        assert done is not None
        assert (done.status, done.result, done.abort_requested) == (Status.COMPLETED, None, False)
        listed = {e.key: e for e in await store.entries()}
        assert sorted(listed) == ["done", "later", "running"]
        assert listed["running"].status is Status.RUNNING
        assert not listed["running"].abort_requested
        assert [e.key for e in await store.entries(status=Status.RUNNING)] == ["running"]
        got = await store.get("running")
        assert got is not None
        assert not got.abort_requested
    assert user_version(path) == version
    assert columns(path) == before
    assert "abort_requested" not in before


@pytest.mark.parametrize("version", [1, 2])
async def test_opening_to_write_upgrades_an_older_file(
    tmp_path: Path, anyio_backend: Any, version: int
) -> None:
    path = tmp_path / "jobs.db"
    token = await old_file(path, version)
    async with SQLiteStore(path) as store:
        assert [e.key for e in await store.entries()] == ["done", "running", "later"]
        await store.add([row("new", 3)])
        [c] = await store.claim("w", 5)
        assert c.entry.key == "new"
        await store.finish_many([("new", c.token, Done("[42]"))])
        new = await store.get("new")
        assert new is not None
        assert new.result == "[42]"
        # The row that was running when the file was written can be aborted now.
        assert await store.abort("running")
        got = await store.get("running")
        assert got is not None
        assert got.abort_requested
        assert await store.finish_many([("running", token, Aborted())]) == [True]
        got = await store.get("running")
        assert got is not None
        assert got.status is Status.CANCELLED
    assert user_version(path) == 3
    assert columns(path) >= {column for added in _ADDED.values() for column in added}
    assert "duetime_entries_abort" in indexes(path)
