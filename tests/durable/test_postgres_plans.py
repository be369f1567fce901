"""PostgresStore's hot statements reach rows through the ``visible_at`` index,
also on a table the server has no statistics of yet (a fresh store, or one that
grew faster than autovacuum analyzes it); and its text-array parameters round
trip through the server whatever the text holds.  Real server."""

from __future__ import annotations

from typing import Any

import anyio.to_thread
import pytest

from duetime.durable import PostgresStore
from duetime.durable._postgres_conn import array
from duetime.durable._postgres_sql import SESSION, WORK_SESSION, Sql
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
