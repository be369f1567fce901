"""PostgresStore passes the store conformance suite, on asyncio and trio, on a real server.

PostgreSQL answers over real sockets, so each test holds the virtual clock's
autojump (time flows at the real rate while the server replies).  The suite's
:meth:`advance` moves the stores' view of the server clock instead
(``PostgresStore.advance_clock``, a test-only offset every statement adds to
``clock_timestamp()``), so leases and tombstones lapse without waiting.  The
tests that wait on the loop clock itself are re-stated here with real waits
under 1 s.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from duetime.durable import PostgresStore, Store
from duetime.durable.conformance import MalformedRowConformance, StoreConformance, row
from duetime.testing import hold_autojump

pytestmark = pytest.mark.anyio


class _OnServer:
    stores: list[PostgresStore]
    factory: Callable[..., PostgresStore]

    @pytest.fixture(autouse=True)
    async def _real_server(
        self, anyio_backend: Any, postgres_store: Callable[..., PostgresStore]
    ) -> AsyncIterator[None]:
        self.factory = postgres_store
        self.stores = []
        with hold_autojump():
            yield

    def make_store(self, tmp_path: Path, **options: Any) -> Store:
        store = self.factory(poll=0.2, **options)
        self.stores.append(store)
        return store

    async def advance(self, seconds: float) -> None:
        for store in self.stores:
            store.advance_clock(seconds)


class TestPostgresStore(_OnServer, StoreConformance):
    async def test_wait_changed_times_out(self, store: Store) -> None:
        t0 = anyio.current_time()
        await store.wait_changed(0.5)  # two safety polls see the same head: no early return
        assert 0.5 <= anyio.current_time() - t0 < 1.5

    async def test_wait_changed_wakes_on_an_earlier_entry(self, store: Store) -> None:
        other = self.make_store(Path())
        async with other:
            now = await store.time()
            await store.add([row("late", due=now + 1000)])
            await store.wait_changed(0.0)
            woke = math.inf

            async def waiter() -> None:
                nonlocal woke
                await store.wait_changed(600.0)
                woke = anyio.current_time()

            async with anyio.create_task_group() as tg:
                tg.start_soon(waiter)
                await anyio.sleep(0.1)
                t_add = anyio.current_time()
                await other.add([row("soon", delay=10)])  # another store object: a NOTIFY
            assert t_add <= woke <= t_add + 0.15  # the notification, not the 0.2 s poll


_FAULTS = {
    "due_not_a_number": "due = 'NaN'",
    "due_infinite": "due = 'Infinity'",
    "lease_negative": "lease = -5.0",
    "status_unknown": "status = 9",
}


class TestPostgresMalformedRows(_OnServer, MalformedRowConformance):
    async def corrupt(self, store: Store, key: str, fault: str) -> None:
        assert isinstance(store, PostgresStore)
        sql = f"UPDATE {store.schema}.entries SET {_FAULTS[fault]} WHERE key = %s"
        await anyio.to_thread.run_sync(write, store.dsn, sql, (key,))


def write(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> None:
    """Run ``sql`` as another program would: plain psycopg, its own connection."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.encode(), params)
