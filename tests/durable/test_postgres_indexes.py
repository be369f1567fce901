"""PostgresStore's indexes: a store holds only those its statements read, and an
open for writing gives a store an older duetime created this layout (drops
``(due, key)`` and ``(status, task)``, adds ``entries_stray``) once, under the
store's advisory lock, safely beside concurrent openers; a role that may not
change the indexes, or a transaction holding the table, leaves the store as it
is, with a WARNING, and working.  Real server."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
import pytest

from duetime import Status
from duetime.durable import Done, EntryQuery, PostgresStore
from duetime.durable.conformance import row

from .postgres_server import admin

pytestmark = pytest.mark.anyio

#: The indexes of ``entries`` in a store this duetime creates.
NOW = {"entries_pkey", "entries_visible", "entries_expires", "entries_status_due", "entries_stray"}


def _indexes(url: str, schema: str) -> set[str]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        got = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = 'entries'",
            [schema],
        ).fetchall()
    return {r[0] for r in got}


def _older_layout(url: str, schema: str) -> set[str]:
    """Make the store's indexes those an older duetime created; return their names."""
    admin(
        url,
        f"CREATE INDEX entries_due ON {schema}.entries (due, key)",
        f"CREATE INDEX entries_status_task ON {schema}.entries (status, task)",
        f"DROP INDEX {schema}.entries_stray",
    )
    return _indexes(url, schema)


async def _older_store(
    postgres_store: Callable[..., PostgresStore], url: str, schema: str
) -> set[str]:
    """Create an empty store in ``schema`` with an older duetime's indexes; return their names."""
    async with postgres_store():
        pass
    return await anyio.to_thread.run_sync(_older_layout, url, schema)


async def _works(store: PostgresStore) -> None:
    """Add, claim, finish, list and count on ``store`` (which holds none of these keys)."""
    await store.add([row(f"w{i}", task="w", due=1000.0 + i) for i in range(3)])  # the earliest
    claims = await store.claim("w", 2)
    assert [c.entry.key for c in claims] == ["w0", "w1"]
    assert await store.finish_many([(c.entry.key, c.token, Done()) for c in claims]) == [True] * 2
    listed = {e.key: e.status for e in await store.entries() if e.key.startswith("w")}
    assert listed == {"w0": Status.COMPLETED, "w1": Status.COMPLETED, "w2": Status.PENDING}
    page = await store.page(EntryQuery(task="w", key_prefix="w"))
    assert [e.key for e in page.entries] == ["w0", "w1", "w2"]
    by_task = (await store.counts()).by_task["w"]
    assert (by_task[Status.COMPLETED], by_task[Status.PENDING]) == (2, 1)


async def test_a_new_store_has_only_the_indexes_its_statements_read(
    postgres_store: Callable[..., PostgresStore], postgres_url: str, real_time: None
) -> None:
    async with postgres_store() as store:
        assert await anyio.to_thread.run_sync(_indexes, postgres_url, store.schema) == NOW
        await _works(store)


async def test_an_older_layout_is_changed_once_by_concurrent_openers(
    postgres_store: Callable[..., PostgresStore],
    postgres_url: str,
    postgres_schema: str,
    caplog: pytest.LogCaptureFixture,
    real_time: None,
) -> None:
    async with postgres_store() as store:
        await store.add([row(f"k{i}", i) for i in range(100)])
    old = await anyio.to_thread.run_sync(_older_layout, postgres_url, postgres_schema)
    assert old == NOW - {"entries_stray"} | {"entries_due", "entries_status_task"}
    async with postgres_store(read_only=True) as reader:
        assert len(await reader.entries()) == 100  # a reader changes nothing
    assert await anyio.to_thread.run_sync(_indexes, postgres_url, postgres_schema) == old

    caplog.set_level(logging.INFO, logger="duetime.durable")
    counted: list[int] = []

    async def open_one() -> None:
        async with postgres_store() as store:
            counted.append(len(await store.entries()))

    async with anyio.create_task_group() as tg:
        for _ in range(4):
            tg.start_soon(open_one)
    assert counted == [100] * 4
    assert await anyio.to_thread.run_sync(_indexes, postgres_url, postgres_schema) == NOW
    changed = [r for r in caplog.records if "updated the indexes" in r.getMessage()]
    assert len(changed) == 1, changed  # once, whoever came first
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
    async with postgres_store() as store:
        await _works(store)


async def test_a_role_that_may_not_change_the_indexes_is_warned_and_works(
    postgres_store: Callable[..., PostgresStore],
    postgres_url: str,
    postgres_schema: str,
    caplog: pytest.LogCaptureFixture,
    real_time: None,
) -> None:
    from psycopg.conninfo import make_conninfo

    s = postgres_schema
    old = await _older_store(postgres_store, postgres_url, s)
    role = f"worker_{uuid.uuid4().hex[:12]}"
    admin(
        postgres_url,
        f"CREATE ROLE {role} LOGIN PASSWORD 'pw'",
        f"GRANT USAGE ON SCHEMA {s} TO {role}",
        f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA {s} TO {role}",
        f"GRANT USAGE ON ALL SEQUENCES IN SCHEMA {s} TO {role}",
    )
    try:
        dsn = make_conninfo(postgres_url, user=role, password="pw")
        async with PostgresStore(dsn, schema=s) as store:
            warned = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warned) == 1
            assert "only the tables' owner may" in warned[0].getMessage()
            assert "pw" not in warned[0].getMessage()
            assert await anyio.to_thread.run_sync(_indexes, postgres_url, s) == old
            await _works(store)
    finally:
        admin(postgres_url, f"DROP OWNED BY {role}", f"DROP ROLE {role}")


async def test_a_transaction_holding_the_table_leaves_the_change_to_the_next_open(
    postgres_store: Callable[..., PostgresStore],
    postgres_url: str,
    postgres_schema: str,
    caplog: pytest.LogCaptureFixture,
    real_time: None,
) -> None:
    import psycopg

    s = postgres_schema
    old = await _older_store(postgres_store, postgres_url, s)

    # A caller's own transaction that wrote to the table (a transactional
    # enqueue) and has not committed: dropping an index must wait for it, and
    # every claim would queue behind the drop.
    def connect() -> psycopg.Connection[Any]:
        return psycopg.connect(postgres_url)

    holder = await anyio.to_thread.run_sync(connect)
    try:
        await anyio.to_thread.run_sync(
            holder.execute, f"LOCK TABLE {s}.entries IN ROW EXCLUSIVE MODE"
        )
        async with postgres_store() as store:
            warned = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert len(warned) == 1
            assert "held the table" in warned[0].getMessage()
            assert await anyio.to_thread.run_sync(_indexes, postgres_url, s) == old
        await anyio.to_thread.run_sync(holder.rollback)
    finally:
        await anyio.to_thread.run_sync(holder.close)
    async with postgres_store() as store:
        assert await anyio.to_thread.run_sync(_indexes, postgres_url, s) == NOW
        await _works(store)


async def test_a_store_with_a_short_timeout_opens_beside_a_transaction_holding_the_table(
    postgres_store: Callable[..., PostgresStore],
    postgres_url: str,
    postgres_schema: str,
    caplog: pytest.LogCaptureFixture,
    real_time: None,
) -> None:
    # Its call timeout (1 s) is shorter than the index change's wait for the
    # table: the open must neither time out on that wait nor on another
    # opener's, which holds the store's lock while it waits for the table.
    import psycopg

    s = postgres_schema
    old = await _older_store(postgres_store, postgres_url, s)

    def connect() -> psycopg.Connection[Any]:
        return psycopg.connect(postgres_url, autocommit=True)

    def waiting_for_the_table() -> bool:
        got = admin_conn.execute(
            "SELECT count(*) FROM pg_locks WHERE NOT granted AND mode = 'AccessExclusiveLock'"
        ).fetchone()
        return got is not None and got[0] > 0

    holder = await anyio.to_thread.run_sync(connect)
    admin_conn = await anyio.to_thread.run_sync(connect)
    try:
        await anyio.to_thread.run_sync(holder.execute, "BEGIN")
        await anyio.to_thread.run_sync(
            holder.execute, f"LOCK TABLE {s}.entries IN ROW EXCLUSIVE MODE"
        )
        async with postgres_store(timeout=1.0) as store:
            assert len(await store.entries()) == 0
        assert await anyio.to_thread.run_sync(_indexes, postgres_url, s) == old
        warned = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warned) == 1
        assert "held the table for over 0.5 s" in warned[0].getMessage()

        async def patient() -> None:
            async with postgres_store(timeout=30.0):
                pass

        async with anyio.create_task_group() as tg:
            tg.start_soon(patient)
            with anyio.fail_after(30):
                while not await anyio.to_thread.run_sync(waiting_for_the_table):
                    await anyio.sleep(0.01)
            # Opened (its calls on the table would wait behind the drop meanwhile).
            async with postgres_store(timeout=1.0):
                pass
    finally:
        await anyio.to_thread.run_sync(holder.close)
        await anyio.to_thread.run_sync(admin_conn.close)
