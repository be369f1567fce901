"""PostgresStore's hot statements reach rows through the ``visible_at`` index,
also on a table the server has no statistics of yet (a fresh store, or one that
grew faster than autovacuum analyzes it); its listings read ranges of the
``(status, due, key)`` index, merged in due order, on such a table and on one of
120,000 rows; and its text-array parameters round trip through the server
whatever the text holds.  Real server."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
import pytest

from duetime import Status
from duetime.durable import EntryQuery, PostgresStore
from duetime.durable._postgres_conn import array
from duetime.durable._postgres_sql import SESSION, WORK_SESSION, Sql
from duetime.durable._postgres_stats import _page_sql
from duetime.durable._postgres_work import params
from duetime.durable.conformance import row

from .postgres_server import PostgresServer  # noqa: F401  (the fixtures' module)

pytestmark = pytest.mark.anyio


def _plan(url: str, sql: bytes, args: str, session: bytes = SESSION) -> str:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(session)
        conn.execute(b"PREPARE probe AS " + sql)
        plan = conn.execute(f"EXPLAIN EXECUTE probe({args})".encode()).fetchall()
    return "\n".join(str(line[0]) for line in plan)


@pytest.mark.parametrize("statement", ["claim", "head"])
async def test_claim_and_head_use_the_index_on_a_table_without_statistics(
    postgres_store: Any, postgres_url: str, statement: str, real_time: None
) -> None:
    store: PostgresStore
    async with postgres_store() as store:
        for i in range(0, 5000, 1000):
            await store.add([row(f"k{j}", j) for j in range(i, i + 1000)])
        sql = Sql(store.schema)
        query, args = {
            "claim": (sql.claim(), "0, 100, 'w', 86400"),
            "head": (sql.head(), "0"),
        }[statement]
        plan = await anyio.to_thread.run_sync(_plan, postgres_url, query, args)
    # Each statement looks at the ends of the index: a scan of the whole table
    # would cost every claim (or every idle worker's wake-up) time in
    # proportion to the table.
    assert "Seq Scan on entries" not in plan, plan


@pytest.mark.parametrize("statement", ["claim", "finish", "extend", "insert_one", "read"])
async def test_the_worker_path_plans_once_and_well_on_a_table_without_statistics(
    postgres_store: Any, postgres_url: str, statement: str, real_time: None
) -> None:
    # The worker's connections, and those of one-row adds (an awaited defer),
    # keep one generic plan per statement (planned without the parameters'
    # values): it must reach the rows through the indexes too, or every claim,
    # finish and defer would scan the table.
    store: PostgresStore
    async with postgres_store() as store:
        for i in range(0, 5000, 1000):
            await store.add([row(f"k{j}", j) for j in range(i, i + 1000)])
        sql = Sql(store.schema)
        query, args = {
            "claim": (sql.claim(), "0, 100, 'w', 86400"),
            "finish": (
                sql.finish(),
                "0, 86400, 86400, '{k1,k2}', '{1,2}', '{0,0}', '{NULL,NULL}', '{NULL,NULL}',"
                " '{NULL,NULL}', '{NULL,NULL}', '{NULL,NULL}'",
            ),
            "extend": (sql.extend(), "0, '{k1,k2}', '{1,2}'"),
            "insert_one": (sql.insert_one(), "0, 'k1', 't', '[]', NULL, 0, 30, NULL, NULL"),
            "read": (sql.read(), "0, 'k1'"),
        }[statement]
        plan = await anyio.to_thread.run_sync(_plan, postgres_url, query, args, WORK_SESSION)
    assert "Seq Scan on entries" not in plan, plan
    if statement != "claim":
        assert "entries_pkey" in plan, plan


def _explain(url: str, sql: bytes, values: list[Any]) -> str:
    """The plan of ``sql`` with ``values`` bound as the store binds them (text
    parameters), on a connection with the store's query settings."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(SESSION)
        got = conn.pgconn.exec_params(b"EXPLAIN " + sql, params(*values))
        assert got.status == psycopg.pq.ExecStatus.TUPLES_OK, got.error_message
        return "\n".join((got.get_value(i, 0) or b"").decode() for i in range(got.ntuples))


# A listing's statement and its parameters after the clock offset.
_LISTINGS = ["all", "failed", "page", "page after", "page task", "page status"]


def _listing(schema: str, which: str) -> tuple[bytes, list[Any]]:
    e = f"{schema}.entries"
    sql = Sql(schema)
    if which == "all":
        return sql.entries(status=False), [1000]
    if which == "failed":
        return sql.entries(status=True), [1000, 3]
    query = {
        "page": EntryQuery(limit=50),
        "page after": EntryQuery(limit=50, after=(1e9 + 5000.0, "k5000")),
        "page task": EntryQuery(limit=50, task="t3", key_prefix="k1"),
        "page status": EntryQuery(limit=50, status=Status.PENDING, after=(1e9, "k0")),
    }[which]
    return _page_sql(e, query)


def _check_listing(plan: str, which: str) -> None:
    # No scan of the table, and no sort of every matching row: each status's
    # rows come in due order from its range of the index, merged.
    assert "Seq Scan on entries" not in plan, plan
    assert "entries_status_due" in plan, plan
    if which in ("all", "page", "page after", "page task"):
        assert "Merge Append" in plan, plan


@pytest.mark.parametrize("which", _LISTINGS)
async def test_listings_merge_index_ranges_on_a_table_without_statistics(
    postgres_store: Any, postgres_url: str, which: str, real_time: None
) -> None:
    store: PostgresStore
    async with postgres_store() as store:
        for i in range(0, 5000, 1000):
            await store.add([row(f"k{j}", j) for j in range(i, i + 1000)])
        sql, values = _listing(store.schema, which)
        plan = await anyio.to_thread.run_sync(_explain, postgres_url, sql, [0.0, *values])
    _check_listing(plan, which)


async def test_listings_merge_index_ranges_on_a_big_table(
    postgres_store: Any, postgres_url: str, real_time: None
) -> None:
    # 120,000 rows, most of them COMPLETED tombstones, as a busy store holds
    # within its dedupe_ttl.
    store: PostgresStore
    async with postgres_store() as store:
        s = store.schema
        fill = f"""
INSERT INTO {s}.entries (key, task, payload, status, due, visible_at, lease, max_deliveries,
    expires_at)
SELECT 'k' || i, 't' || (i % 7), '[[], {{}}]', x.st, 1e9 + i,
    CASE WHEN x.st IN (0, 1) THEN 1e9 + i END, 30, 5, CASE WHEN x.st IN (2, 4) THEN 4e9 END
FROM generate_series(1, 120000) i, LATERAL (SELECT CASE WHEN i % 100 < 10 THEN 0
    WHEN i % 100 < 11 THEN 1 WHEN i % 100 < 13 THEN 3 WHEN i % 100 < 14 THEN 4
    ELSE 2 END AS st) x"""
        await anyio.to_thread.run_sync(_write_all, postgres_url, [fill])
        # Before the server has statistics of them (unless autovacuum was
        # quick) and after.
        for analyze in ([], [f"ANALYZE {s}.entries"]):
            await anyio.to_thread.run_sync(_write_all, postgres_url, analyze)
            for which in _LISTINGS:
                sql, values = _listing(s, which)
                plan = await anyio.to_thread.run_sync(_explain, postgres_url, sql, [0.0, *values])
                _check_listing(plan, which)
        # And the store reads them so: the earliest rows of every status, merged.
        listed = await store.entries(limit=200)
        assert [e.key for e in listed] == [f"k{i}" for i in range(1, 201)]
        page = await store.page(EntryQuery(limit=3, after=(1e9 + 10.0, "k10")))
        assert [e.key for e in page.entries] == ["k11", "k12", "k13"]
        counts = await store.counts()
        assert counts.by_task["t3"][Status.RUNNING] == sum(
            1 for i in range(1, 120001) if i % 7 == 3 and i % 100 == 10
        )


def _write_all(url: str, statements: list[str]) -> None:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement.encode())


_TEXTS = [
    ["plain", "", 'a "quoted" word', "back\\slash", "{braces}, commas", "NULL", " spaced "],
    ["é ü ✓", '["json", {"k": "v\\"x"}]', "tab\there\nnewline"],
    ["one"],
]


@pytest.mark.parametrize("texts", _TEXTS)
async def test_text_arrays_round_trip(postgres_url: str, texts: list[str], real_time: None) -> None:
    def back() -> Any:
        import psycopg

        with psycopg.connect(postgres_url, autocommit=True) as conn:
            cur = conn.cursor()
            cur.execute(
                "SELECT %s::text[], %s::float8[], %s::text[]",
                [a.decode() for a in (array(texts), array([1.5, 2, -0.25]), array([None, *texts]))],
            )
            return cur.fetchone()

    got = await anyio.to_thread.run_sync(back)
    assert got == (texts, [1.5, 2.0, -0.25], [None, *texts])
