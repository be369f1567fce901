"""Inspection on stores an older duetime wrote: a SQLite file without the
inspection index and activity ring, a Redis store whose rows were never counted."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from duetime import Status
from duetime.durable import Counts, EntryQuery, RedisStore, SQLiteStore
from duetime.durable.conformance import row
from duetime.testing import hold_autojump

pytestmark = pytest.mark.anyio


async def test_sqlite_file_of_an_older_version_gets_the_index_and_ring(
    anyio_backend: Any, tmp_path: Path
) -> None:
    db = tmp_path / "jobs.db"
    with hold_autojump():
        async with SQLiteStore(db) as store:
            await store.add([row("a", task="x"), row("b", task="y", delay=60)])
        conn = sqlite3.connect(db)
        conn.execute("DROP INDEX duetime_entries_status_task")
        conn.execute("DROP TABLE duetime_minutes")
        conn.commit()
        conn.close()
        async with SQLiteStore(db, read_only=True) as ro:  # read-only: nothing created
            assert (await ro.counts()).total == 2
            assert sum(m.started for m in await ro.activity(5)) == 0
        async with SQLiteStore(db) as store:
            [c] = await store.claim("w", 1)
            assert (await store.activity(1))[0].started == 1
            assert (await store.counts()).by_task == {
                "x": {Status.RUNNING: 1},
                "y": {Status.PENDING: 1},
            }
            assert c.entry.key == "a"
        conn = sqlite3.connect(db)
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT task, status, count(*) FROM duetime_entries"
            " GROUP BY status, task"
        ).fetchall()
        conn.close()
        assert "COVERING INDEX duetime_entries_status_task" in str(plan)


async def test_redis_rows_an_older_version_wrote_are_counted(
    anyio_backend: Any, redis_store: Callable[..., RedisStore]
) -> None:
    import coredis

    with hold_autojump():
        async with redis_store() as store:
            now = await store.time()
            await store.add([row("new", task="x", due=now + 60)])
            # Rows as an older duetime saved them: no "ix" field, not counted.
            client: coredis.Redis[bytes] = store._client  # type: ignore[assignment]
            tag = "{" + store.prefix + "}"
            for key, status in (("old1", "PENDING"), ("old2", "FAILED")):
                fields = {"k": key, "t": "legacy", "p": "[]", "d": repr(now), "s": status,
                          "a": 1, "o": 0, "dl": 0, "l": "30", "md": 5}  # fmt: skip
                await client.hset(f"{tag}:rows", {key: json.dumps(fields)})
                await client.zadd(f"{tag}:all", {key: now})
                if status == "PENDING":
                    await client.zadd(f"{tag}:q", {key: now})
            await client.delete([f"{tag}:ixv"])
        async with redis_store() as store:
            counts = await store.counts()
            assert counts == Counts.of(
                [
                    ("x", Status.PENDING, 1),
                    ("legacy", Status.PENDING, 1),
                    ("legacy", Status.FAILED, 1),
                ]
            )
            dead = await store.page(EntryQuery(status=Status.FAILED))
            assert [e.key for e in dead.entries] == ["old2"]
            await store.delete("old2")  # the counters follow from then on
            assert (await store.counts()).by_status[Status.FAILED] == 0
