"""PostgresStore batches take their rows' locks in one order (the key's), so two
producers writing overlapping keys in opposite orders never deadlock.  Real
server, asyncio and trio."""

from __future__ import annotations

import random
from collections.abc import Callable
from functools import partial
from typing import Any

import anyio
import pytest

from duetime import Status
from duetime.durable import Done, NewRow, OnConflict, PostgresStore

from .postgres_server import admin

pytestmark = pytest.mark.anyio

Factory = Callable[..., PostgresStore]


@pytest.mark.parametrize("on_conflict", ["keep", "replace"])
async def test_overlapping_batches_in_opposite_orders_do_not_deadlock(
    postgres_store: Factory, on_conflict: OnConflict, real_time: None
) -> None:
    # Each batch locks every existing row it meets ("keep" locks a conflicting
    # row even when it leaves it as it is); in input order, two batches over
    # the same keys in opposite orders would wait on each other.
    keys = [f"k{i:04d}" for i in range(400)]
    forward = [NewRow(k, "t", "[]", delay=60.0) for k in keys]
    backward = forward[::-1]
    async with postgres_store() as a, postgres_store() as b:
        await a.add(forward)
        for _ in range(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(partial(a.add, forward, on_conflict=on_conflict))
                tg.start_soon(partial(b.add, backward, on_conflict=on_conflict))
        entries = await a.entries()
    assert sorted(e.key for e in entries) == keys


async def test_a_finish_and_a_batch_over_the_same_running_rows_do_not_deadlock(
    postgres_store: Factory, real_time: None
) -> None:
    # A batch of defers meeting RUNNING rows locks them (and keeps them as they
    # are) while a worker's finish locks the same rows: both in key order.
    async with postgres_store() as a, postgres_store() as b:
        for round_ in range(8):
            keys = [f"r{round_:02d}-{i:04d}" for i in range(300)]
            rows = [NewRow(k, "t", "[]", delay=0.0) for k in keys]
            await a.add(rows)
            claims = await a.claim("w", len(keys))
            assert len(claims) == len(keys)
            items = [(c.entry.key, c.token, Done()) for c in reversed(claims)]
            async with anyio.create_task_group() as tg:
                tg.start_soon(a.finish_many, items)
                tg.start_soon(b.add, rows)
            done = {e.key for e in await a.entries(status=Status.COMPLETED, limit=10_000)}
            assert done.issuperset(keys)


@pytest.mark.parametrize("call", ["finish_many", "extend"])
async def test_a_finish_or_renewal_in_any_order_and_a_batch_do_not_deadlock(
    postgres_store: Factory, call: str, real_time: None
) -> None:
    # The rows lie in the table in no key order and the worker names them in
    # another: a finish (or a lease renewal) meets them in key order all the
    # same, as a batch of defers over them does.
    rnd = random.Random(4)
    async with postgres_store() as a, postgres_store() as b:
        for round_ in range(6):
            rows = [NewRow(f"s{round_:02d}-{i:04d}", "t", "[]", delay=0.0) for i in range(3000)]
            rnd.shuffle(rows)
            await a.add(rows)
            claims = await a.claim("w", len(rows))
            assert len(claims) == len(rows)
            rnd.shuffle(claims)
            if call == "finish_many":
                work = partial(a.finish_many, [(c.entry.key, c.token, Done()) for c in claims])
            else:
                work = partial(a.extend, [(c.entry.key, c.token) for c in claims])
            async with anyio.create_task_group() as tg:
                tg.start_soon(work)
                tg.start_soon(b.add, sorted(rows, key=lambda r: r.key))
            assert len(await a.entries(limit=100_000)) == 3000 * (round_ + 1)


async def test_a_purge_and_a_batch_over_the_same_expired_tombstones_do_not_deadlock(
    postgres_store: Factory, postgres_url: str, postgres_schema: str, real_time: None
) -> None:
    # Tombstones past their dedupe_ttl, which a purge deletes in expiry order
    # (k3, k2, k1) while a batch (a transactional enqueue) replaces them in key
    # order; a third session holds k2 until both wait for it.
    import psycopg

    from duetime.durable import PostgresEnqueue, TaskRegistry

    s = postgres_schema
    registry = TaskRegistry()
    registry.task("t")(_noop)
    async with postgres_store() as a:
        pass
    tombstones = [
        f"('{k}', 't', '[]', 2, 0, NULL, 30, 5, {n})" for n, k in enumerate(["k3", "k2", "k1"])
    ]
    await anyio.to_thread.run_sync(
        admin,
        postgres_url,
        f"INSERT INTO {s}.entries (key, task, payload, status, due, visible_at, lease,"
        f" max_deliveries, expires_at) VALUES {', '.join(tombstones)}",
    )

    def connect() -> psycopg.Connection[Any]:
        return psycopg.connect(postgres_url)

    holder, batch, watch = [await anyio.to_thread.run_sync(connect) for _ in range(3)]
    watch.autocommit = True

    def waiting() -> int:
        got = watch.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
            " AND datname = current_database()"
        ).fetchone()
        return 0 if got is None else int(got[0])

    purged = anyio.Event()

    async def until_waiting(n: int) -> None:
        """Until ``n`` sessions wait for a lock, the purge's counted while it waits."""
        with anyio.fail_after(30):
            while await anyio.to_thread.run_sync(waiting) < n - purged.is_set():
                await anyio.sleep(0.01)

    async def add_other(store: PostgresStore) -> None:
        await store.add([NewRow("other", "t", "[]", delay=60.0)])  # a's first: it purges first
        purged.set()

    def enqueue() -> None:
        PostgresEnqueue(registry, schema=s).defer_many(
            batch, "t", [()] * 3, keys=["k1", "k2", "k3"]
        )
        batch.commit()

    try:
        await anyio.to_thread.run_sync(
            holder.execute, f"SELECT 1 FROM {s}.entries WHERE key = 'k2' FOR UPDATE"
        )
        async with postgres_store() as a, anyio.create_task_group() as tg:
            tg.start_soon(add_other, a)
            await until_waiting(1)
            tg.start_soon(partial(anyio.to_thread.run_sync, enqueue))
            await until_waiting(2)
            await anyio.to_thread.run_sync(holder.commit)
    finally:
        for conn in (holder, batch, watch):
            await anyio.to_thread.run_sync(conn.close)
    async with postgres_store() as a:
        listed = {e.key: e.status for e in await a.entries()}
    assert listed == {k: Status.PENDING for k in ("k1", "k2", "k3", "other")}


def _noop() -> None:
    pass
