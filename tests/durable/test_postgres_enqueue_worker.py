"""A worker (Scheduler on a PostgresStore) runs what PostgresEnqueue deferred
inside a caller's transaction, on asyncio and trio: committed through psycopg
and SQLAlchemy (sync drivers, in threads, as a sync web framework would), never
what was rolled back; and the NOTIFY sent at the commit wakes an idle store.

The asyncio-only drivers (psycopg's AsyncConnection, SQLAlchemy's asyncio
engine, asyncpg) are in test_postgres_enqueue_asyncio.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
import pytest

from duetime import Scheduler
from duetime.durable import PostgresEnqueue, PostgresStore, TaskRegistry

psycopg = pytest.importorskip("psycopg")

pytestmark = pytest.mark.anyio

#: A generous deadline for what should take milliseconds.
WAIT = 30.0

tasks = TaskRegistry()


@tasks.task("render_report")
async def render_report(order_id: int) -> str:
    return f"report {order_id}"


outbox = PostgresEnqueue(tasks)


def place_order_psycopg(url: str, order_id: int, *, commit: bool) -> None:
    """What a sync request handler does: the order and its job, one transaction."""
    with psycopg.connect(url) as conn:
        conn.execute("INSERT INTO orders (id) VALUES (%s)", (order_id,))
        outbox.defer(conn, render_report, order_id, key=f"report-{order_id}")
        if commit:
            conn.commit()
        else:
            conn.rollback()


def place_order_sqlalchemy(url: str, order_id: int, *, commit: bool) -> None:
    from sqlalchemy import create_engine, text
    from sqlalchemy.orm import Session

    engine = create_engine(url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with Session(engine) as session:
            session.execute(text("INSERT INTO orders (id) VALUES (:id)"), {"id": order_id})
            sql, params = outbox.sql(
                render_report, order_id, key=f"report-{order_id}", paramstyle="named"
            )
            session.execute(text(sql), params)
            if commit:
                session.commit()
            else:
                session.rollback()
    finally:
        engine.dispose()


def orders(url: str) -> list[int]:
    with psycopg.connect(url) as conn:
        return [r[0] for r in conn.execute("SELECT id FROM orders ORDER BY id")]


@pytest.mark.parametrize("place", [place_order_psycopg, place_order_sqlalchemy])
async def test_a_worker_runs_what_committed_and_never_what_rolled_back(
    postgres_database: str,
    real_time: None,
    place: Callable[..., None],
) -> None:
    url = postgres_database
    async with Scheduler(store=PostgresStore(url), tasks=tasks) as s:
        # The store made its schema when it opened; the application's table beside it.
        with psycopg.connect(url) as conn:
            conn.execute("CREATE TABLE orders (id int PRIMARY KEY)")
        await anyio.to_thread.run_sync(lambda: place(url, 1, commit=False))
        await anyio.to_thread.run_sync(lambda: place(url, 2, commit=True))
        assert await s.deferred_handle("report-2").result(timeout=WAIT) == "report 2"
        with pytest.raises(LookupError):
            await s.deferred_handle("report-1").refresh()
    assert orders(url) == [2]


async def test_many_in_one_transaction_all_run(postgres_database: str, real_time: None) -> None:
    url = postgres_database
    async with Scheduler(store=PostgresStore(url), tasks=tasks) as s:

        def place() -> list[str]:
            with psycopg.connect(url) as conn:
                return outbox.defer_many(conn, render_report, [(i,) for i in range(50)])

        keys = await anyio.to_thread.run_sync(place)
        results: list[Any] = []
        for key in keys:
            results.append(await s.deferred_handle(key).result(timeout=WAIT))
    assert results == [f"report {i}" for i in range(50)]


async def test_the_commit_wakes_an_idle_store(postgres_database: str, real_time: None) -> None:
    url = postgres_database
    # The safety poll is longer than the test may run: only the NOTIFY can wake it.
    async with PostgresStore(url, poll=600.0) as store:
        with psycopg.connect(url) as conn:
            conn.execute("CREATE TABLE orders (id int PRIMARY KEY)")
        await store.wait_changed(0)  # nothing pending from the store's own start
        woke = anyio.Event()

        async def idle() -> None:
            await store.wait_changed(600.0)
            woke.set()

        async with anyio.create_task_group() as tg:
            tg.start_soon(idle)
            await anyio.to_thread.run_sync(lambda: place_order_psycopg(url, 3, commit=True))
            with anyio.fail_after(WAIT):
                await woke.wait()
