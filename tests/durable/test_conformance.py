"""Every store passes the one conformance suite, on asyncio and trio (virtual time)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from duetime import Status
from duetime.durable import Done, MemoryStore, SQLiteStore, Store
from duetime.durable.conformance import StoreConformance, loop_epoch_clock, row

pytestmark = pytest.mark.anyio


class TestMemoryStore(StoreConformance):
    def make_store(self, tmp_path: Path, **options: Any) -> Store:
        return MemoryStore(**options)


class TestMemoryStoreExtras:
    async def test_crash_lapses_every_lease_of_the_owner(self, anyio_backend: Any) -> None:
        store = MemoryStore(lease=30.0)
        await store.add([row("a"), row("b"), row("c")])
        mine = await store.claim("dead", 2)
        [other] = await store.claim("alive", 1)
        assert await store.claim("x", 5) == []
        assert store.crash("dead") == 2
        again = await store.claim("x", 5)
        assert {c.entry.key for c in again} == {c.entry.key for c in mine}
        assert all(c.entry.deliveries == 2 for c in again)
        assert (await store.finish_many([(other.entry.key, other.token, Done())]))[0]
        for old in mine:
            assert (await store.finish_many([(old.entry.key, old.token, Done())]))[0] is False

    async def test_crash_wakes_a_waiter(self, anyio_backend: Any) -> None:
        store = MemoryStore(lease=30.0)
        await store.add([row("a")])
        await store.claim("dead", 1)
        woke = []

        async def waiter() -> None:
            await store.wait_changed(100)
            woke.append(anyio.current_time())

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(1)
            t = anyio.current_time()
            store.crash("dead")
        assert woke == [t]

    async def test_clock_follows_virtual_time(self, anyio_backend: Any) -> None:
        store = MemoryStore()
        t0 = await store.time()
        assert t0 == 1704067200.0
        await anyio.sleep(3600)
        assert await store.time() == t0 + 3600

    async def test_clock_injection(self, anyio_backend: Any) -> None:
        from duetime.testing import VirtualWallClock

        wall = VirtualWallClock()
        store = MemoryStore(clock=wall)
        assert await store.time() == wall().timestamp()
        wall.step(100)
        assert await store.time() == pytest.approx(1704067300.0)
        assert (await store.entries(status=Status.PENDING)) == []

    def test_bad_options(self) -> None:
        with pytest.raises(ValueError, match="lease"):
            MemoryStore(lease=0)
        with pytest.raises(ValueError, match="dedupe_ttl"):
            MemoryStore(dedupe_ttl=-1)


class TestSQLiteStore(StoreConformance):
    def make_store(self, tmp_path: Path, **options: Any) -> Store:
        return SQLiteStore(tmp_path / "jobs.db", clock=loop_epoch_clock(), poll=0.25, **options)
