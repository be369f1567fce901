"""PostgresStore: a PENDING or RUNNING row with no claimable time (``visible_at``
NULL, written by another program) is dead-lettered alone by the next claim, and
the index claims find such rows through is added to a store that lacks it.
Real server."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
import pytest

from duetime import Status
from duetime.durable import MALFORMED, PostgresStore
from duetime.durable.conformance import row

from .postgres_server import PostgresServer  # noqa: F401  (the fixtures' module)

pytestmark = pytest.mark.anyio


def _write(dsn: str, sql: str) -> list[Any]:
    """Run ``sql`` as another program would (plain psycopg, its own connection)."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        cur = conn.execute(sql.encode())
        return cur.fetchall() if cur.description else []


@pytest.mark.parametrize("status", [0, 1])
async def test_a_row_without_a_claimable_time_is_dead_lettered_alone(
    postgres_store: Any, status: int, real_time: None
) -> None:
    store: PostgresStore
    async with postgres_store() as store:
        await store.add([row("stray", 1)])
        sql = f"UPDATE {store.schema}.entries SET visible_at = NULL, status = {status}"
        await anyio.to_thread.run_sync(_write, store.dsn, sql + " WHERE key = 'stray'")
        # The head tells an idle worker to claim now (the claim dead-letters it).
        assert await store.head() is not None
        await store.add([row("fine", 2)])
        claims = await store.claim("w", 10)
        assert [c.entry.key for c in claims] == ["fine"]
        stray = await store.get("stray")
        assert stray is not None
        assert stray.status is Status.FAILED
        assert stray.last_error is not None
        assert stray.last_error.startswith(MALFORMED)
        assert "visible_at is NULL" in stray.last_error
        assert await store.head() is not None  # "fine" runs: its lease end
        assert await store.delete("stray")


async def test_a_store_without_the_index_gets_it_on_open(
    postgres_store: Any, real_time: None
) -> None:
    store: PostgresStore
    async with postgres_store() as store:
        schema, dsn = store.schema, store.dsn
    probe = f"SELECT to_regclass('{schema}.entries_stray') IS NOT NULL"
    assert await anyio.to_thread.run_sync(_write, dsn, probe) == [(True,)]
    # The layout an older duetime created: no entries_stray.
    await anyio.to_thread.run_sync(_write, dsn, f"DROP INDEX {schema}.entries_stray")
    assert await anyio.to_thread.run_sync(_write, dsn, probe) == [(False,)]
    async with postgres_store(read_only=True):
        pass  # a read-only store changes nothing
    assert await anyio.to_thread.run_sync(_write, dsn, probe) == [(False,)]
    async with postgres_store() as store:
        assert await anyio.to_thread.run_sync(_write, dsn, probe) == [(True,)]
        await store.add([row("stray", 1)])
        sql = f"UPDATE {schema}.entries SET visible_at = NULL WHERE key = 'stray'"
        await anyio.to_thread.run_sync(_write, dsn, sql)
        assert await store.claim("w", 10) == []
        stray = await store.get("stray")
        assert stray is not None
        assert stray.status is Status.FAILED
