"""PostgresEnqueue with the asyncio-only drivers: psycopg's AsyncConnection
(``defer_async``), SQLAlchemy's asyncio engine and asyncpg (``sql``).  A worker
(Scheduler on a PostgresStore) runs what committed, never what rolled back.
asyncio only: none of these drivers runs on trio."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from duetime import Scheduler
from duetime.durable import PostgresEnqueue, PostgresStore, TaskRegistry
from duetime.testing import anyio_backend_fixture

psycopg = pytest.importorskip("psycopg")

pytestmark = pytest.mark.anyio

anyio_backend = anyio_backend_fixture(["asyncio"])

WAIT = 30.0

tasks = TaskRegistry()


@tasks.task("render_report")
async def render_report(order_id: int) -> str:
    return f"report {order_id}"


outbox = PostgresEnqueue(tasks)


async def with_psycopg(url: str, order_id: int, commit: bool) -> None:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        await conn.execute("INSERT INTO orders (id) VALUES (%s)", (order_id,))
        await outbox.defer_async(conn, render_report, order_id, key=f"report-{order_id}")
        await (conn.commit() if commit else conn.rollback())


async def with_sqlalchemy(url: str, order_id: int, commit: bool) -> None:
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine

    engine = create_async_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        async with AsyncSession(engine) as session:
            await session.execute(text("INSERT INTO orders (id) VALUES (:id)"), {"id": order_id})
            sql, params = outbox.sql(
                render_report, order_id, key=f"report-{order_id}", paramstyle="named"
            )
            await session.execute(text(sql), params)
            await (session.commit() if commit else session.rollback())
    finally:
        await engine.dispose()


async def with_asyncpg(url: str, order_id: int, commit: bool) -> None:
    asyncpg = pytest.importorskip("asyncpg")
    conn = await asyncpg.connect(url)
    try:
        tx = conn.transaction()
        await tx.start()
        await conn.execute("INSERT INTO orders (id) VALUES ($1)", order_id)
        sql, params = outbox.sql(render_report, order_id, key=f"report-{order_id}")
        await conn.execute(sql, *params)
        await (tx.commit() if commit else tx.rollback())
    finally:
        await conn.close()


@pytest.mark.parametrize("place", [with_psycopg, with_sqlalchemy, with_asyncpg])
async def test_a_worker_runs_what_committed_and_never_what_rolled_back(
    postgres_database: str,
    real_time: None,
    place: Callable[[str, int, bool], Awaitable[None]],
) -> None:
    url = postgres_database
    async with Scheduler(store=PostgresStore(url), tasks=tasks) as s:
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute("CREATE TABLE orders (id int PRIMARY KEY)")
        await place(url, 1, False)
        await place(url, 2, True)
        assert await s.deferred_handle("report-2").result(timeout=WAIT) == "report 2"
        with pytest.raises(LookupError):
            await s.deferred_handle("report-1").refresh()
        async with await psycopg.AsyncConnection.connect(url) as conn:
            cur = await conn.execute("SELECT id FROM orders")
            assert await cur.fetchall() == [(2,)]


async def test_defer_async_refuses_a_sync_connection_and_autocommit(
    postgres_database: str, real_time: None
) -> None:
    with (
        psycopg.connect(postgres_database) as sync_conn,
        pytest.raises(TypeError, match="AsyncConnection"),
    ):
        await outbox.defer_async(sync_conn, render_report, 1)
    async with await psycopg.AsyncConnection.connect(postgres_database, autocommit=True) as conn:
        with pytest.raises(ValueError, match="autocommit"):
            await outbox.defer_async(conn, render_report, 1)
