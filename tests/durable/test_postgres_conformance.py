"""PostgresStore passes the store conformance suite, on asyncio and trio, on a real server.

The wiring (real waits, the server clock moved by ``PostgresStore.advance_clock``,
a test-only offset every statement adds to ``clock_timestamp()``):
tests/durable/_on_server.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import anyio
import anyio.to_thread
import pytest

from duetime.durable import PostgresStore, Store
from duetime.durable._conformance_kit import wake_delay
from duetime.durable.conformance import MalformedRowConformance, row

from ._on_server import OnServer, OnServerConformance

pytestmark = pytest.mark.anyio


class TestPostgresStore(OnServerConformance):
    store_fixture: ClassVar[str] = "postgres_store"

    async def test_wait_changed_wakes_on_an_earlier_entry(self, store: Store) -> None:
        other = self.make_store(Path())
        async with other:
            now = await store.time()
            await store.add([row("late", due=now + 1000)])
            await store.wait_changed(0.0)

            async def add() -> None:
                await other.add([row("soon", delay=10)])  # another store object: a NOTIFY

            # the notification, not the 0.2 s poll
            assert await wake_delay(store.wait_changed, add, settle=0.1) <= 0.15


_FAULTS = {
    "due_not_a_number": "due = 'NaN'",
    "due_infinite": "due = 'Infinity'",
    "lease_negative": "lease = -5.0",
    "status_unknown": "status = 9",
}


class TestPostgresMalformedRows(OnServer, MalformedRowConformance):
    store_fixture: ClassVar[str] = "postgres_store"

    async def corrupt(self, store: Store, key: str, fault: str) -> None:
        assert isinstance(store, PostgresStore)
        sql = f"UPDATE {store.schema}.entries SET {_FAULTS[fault]} WHERE key = %s"
        await anyio.to_thread.run_sync(write, store.dsn, sql, (key,))


def write(dsn: str, sql: str, params: tuple[Any, ...] = ()) -> None:
    """Run ``sql`` as another program would: plain psycopg, its own connection."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.encode(), params)
