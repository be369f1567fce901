"""Transactional enqueue (PostgresEnqueue) on a real PostgreSQL server: an entry
deferred inside the caller's transaction exists if and only if it commits, its
NOTIFY arrives at the commit and never after a rollback, and it is checked as
``Scheduler.defer`` checks.  Sync drivers here (psycopg, SQLAlchemy); the
asyncio drivers and a worker running the entries are in
test_postgres_enqueue_async.py."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from duetime import EntryExists
from duetime.durable import Client, PostgresEnqueue, TaskRegistry
from duetime.testing import MemoryStore

from .postgres_server import admin

psycopg = pytest.importorskip("psycopg")

tasks = TaskRegistry()


@tasks.task("render_report")
async def render_report(order_id: int, fmt: str = "pdf") -> None: ...


def unregistered(order_id: int) -> None: ...


@pytest.fixture
def schema(postgres_url: str, postgres_schema: str) -> str:
    """The test's store schema, created as a PostgresStore creates it, and a
    business table beside it: ``{schema}.orders``."""
    from duetime.durable._postgres_sql import create_sql

    admin(postgres_url, create_sql(postgres_schema))
    admin(postgres_url, f"CREATE TABLE {postgres_schema}.orders (id int PRIMARY KEY)")
    return postgres_schema


def stored(url: str, schema: str) -> tuple[list[int], list[tuple[Any, ...]]]:
    """(order ids, entries as (key, task, payload, status)) as another session sees them."""
    with psycopg.connect(url) as conn:
        orders = [r[0] for r in conn.execute(f"SELECT id FROM {schema}.orders ORDER BY id")]
        entries = conn.execute(
            f"SELECT key, task, payload, status FROM {schema}.entries ORDER BY key"
        ).fetchall()
    return orders, entries


def test_the_order_and_its_entry_commit_together(postgres_url: str, schema: str) -> None:
    outbox = PostgresEnqueue(tasks, schema=schema)
    with psycopg.connect(postgres_url) as conn:
        conn.execute(f"INSERT INTO {schema}.orders VALUES (7)")
        key = outbox.defer(conn, render_report, 7, key="report-7")
        assert key == "report-7"
        assert stored(postgres_url, schema) == ([], [])  # not before the commit
        conn.commit()
    assert stored(postgres_url, schema) == ([7], [("report-7", "render_report", "[7]", 0)])


def test_a_rollback_leaves_neither(postgres_url: str, schema: str) -> None:
    outbox = PostgresEnqueue(tasks, schema=schema)
    with psycopg.connect(postgres_url) as conn:
        with conn.transaction():
            conn.execute(f"INSERT INTO {schema}.orders VALUES (8)")
            outbox.defer(conn, render_report, 8)
            conn.execute(f"INSERT INTO {schema}.orders VALUES (9)")
            outbox.defer_many(conn, render_report, [(9,), (10, "csv")])
            raise psycopg.Rollback  # what an exception in the block does too
        assert stored(postgres_url, schema) == ([], [])
        # The connection goes on: the next transaction commits.
        with conn.transaction():
            conn.execute(f"INSERT INTO {schema}.orders VALUES (11)")
            outbox.defer(conn, "render_report", 11, key="k11")
    assert stored(postgres_url, schema) == ([11], [("k11", "render_report", "[11]", 0)])


def test_notify_arrives_at_commit_never_after_a_rollback(postgres_url: str, schema: str) -> None:
    outbox = PostgresEnqueue(tasks, schema=schema)
    channel = f"{schema}.wake"
    with (
        psycopg.connect(postgres_url, autocommit=True) as listener,
        psycopg.connect(postgres_url, autocommit=True) as other,
        psycopg.connect(postgres_url) as conn,
    ):
        listener.execute(f'LISTEN "{channel}"')

        def next_notify() -> str:
            for n in listener.notifies(timeout=30, stop_after=1):
                assert n.channel == channel
                return str(n.payload)
            raise AssertionError("no notification within 30 s")

        def marker(text: str) -> None:
            other.execute("SELECT pg_notify(%s, %s)", (channel, text))

        outbox.defer(conn, render_report, 1)
        conn.rollback()
        marker("after-rollback")
        assert next_notify() == "after-rollback"  # the rolled-back insert sent nothing
        outbox.defer(conn, render_report, 2)
        marker("before-commit")
        assert next_notify() == "before-commit"  # held until the commit...
        conn.commit()
        assert next_notify() == "c"  # ...and delivered by it: the head moved earlier


def test_delay_is_added_to_the_servers_clock(postgres_url: str, schema: str) -> None:
    outbox = PostgresEnqueue(tasks, schema=schema)
    at = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    with psycopg.connect(postgres_url) as conn:
        outbox.defer(conn, render_report, 1, key="later", delay=3600)
        outbox.defer(conn, render_report, 2, key="at", at=at)
        outbox.defer(conn, render_report, 3, key="now")
        conn.commit()
        rows = dict(
            conn.execute(
                f"SELECT key, due - extract(epoch FROM clock_timestamp())::float8"
                f" FROM {schema}.entries"
            ).fetchall()
        )
        due_at = conn.execute(f"SELECT due FROM {schema}.entries WHERE key = 'at'").fetchone()
    assert 3500 < rows["later"] <= 3600
    assert -600 < rows["now"] <= 0
    assert due_at == (at.timestamp(),)


def test_on_conflict_keeps_or_raises(postgres_url: str, schema: str) -> None:
    outbox = PostgresEnqueue(tasks, schema=schema)
    with psycopg.connect(postgres_url) as conn:
        outbox.defer(conn, render_report, 1, key="once")
        conn.commit()
        assert outbox.defer(conn, render_report, 2, key="once") == "once"  # kept
        conn.commit()
        with pytest.raises(EntryExists, match="'once'"):
            outbox.defer(conn, render_report, 3, key="once", on_conflict="error")
        conn.rollback()
    assert stored(postgres_url, schema)[1] == [("once", "render_report", "[1]", 0)]


def test_the_statement_runs_on_any_paramstyle(postgres_url: str, schema: str) -> None:
    from sqlalchemy import create_engine, text

    outbox = PostgresEnqueue(tasks, schema=schema)
    with psycopg.connect(postgres_url) as conn:
        sql, params = outbox.sql(render_report, 1, key="pyformat", paramstyle="pyformat")
        assert "%(p1)s" in sql
        assert set(params) == {f"p{i}" for i in range(1, 10)}
        conn.execute(sql, params)
        sql, params = outbox.sql(render_report, 2, key="dollar")
        assert "$1" in sql
        assert isinstance(params, list)
        psycopg.RawCursor(conn).execute(sql, params)
        conn.commit()
    engine = create_engine(postgres_url.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.begin() as sa:  # commits at the end of the block
            sql, params = outbox.sql_many(
                render_report, [(3,), (4, "csv")], keys=["named", "named2"], paramstyle="named"
            )
            sa.execute(text(sql), params)
    finally:
        engine.dispose()
    assert stored(postgres_url, schema)[1] == [
        ("dollar", "render_report", "[2]", 0),
        ("named", "render_report", "[3]", 0),
        ("named2", "render_report", '[4,"csv"]', 0),
        ("pyformat", "render_report", "[1]", 0),
    ]


def test_an_autocommit_connection_outside_a_transaction_is_refused(
    postgres_url: str, schema: str
) -> None:
    outbox = PostgresEnqueue(tasks, schema=schema)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        with pytest.raises(ValueError, match="autocommit"):
            outbox.defer(conn, render_report, 1)
        with conn.transaction():  # an explicit transaction is fine
            outbox.defer(conn, render_report, 2, key="in-tx")
    assert stored(postgres_url, schema)[1] == [("in-tx", "render_report", "[2]", 0)]


def test_a_missing_schema_fails_the_callers_transaction(postgres_url: str) -> None:
    outbox = PostgresEnqueue(tasks, schema="no_such_store")
    with psycopg.connect(postgres_url) as conn:
        with pytest.raises(psycopg.errors.UndefinedTable):
            outbox.defer(conn, render_report, 1)
        conn.rollback()


# -- the same checks as Scheduler.defer ------------------------------------------------

BAD_CALLS: list[tuple[str, Callable[[Any], Any], type[Exception], str]] = [
    ("unknown name", lambda d: d("no_such_task", 1), LookupError, "no_such_task"),
    ("unregistered", lambda d: d(unregistered, 1), TypeError, "not a registered task"),
    ("too few", lambda d: d(render_report), TypeError, "render_report"),
    ("too many", lambda d: d(render_report, 1, "pdf", 3), TypeError, "render_report"),
    ("a set", lambda d: d(render_report, {1}), TypeError, "set"),
    ("nan", lambda d: d(render_report, float("nan")), ValueError, "NaN"),
    ("negative delay", lambda d: d(render_report, 1, delay=-1), ValueError, "delay"),
    ("naive at", lambda d: d(render_report, 1, at=datetime(2030, 1, 1)), ValueError, "aware"),
    (
        "delay and at",
        lambda d: d(render_report, 1, delay=1, at=datetime.now(UTC)),
        ValueError,
        "not both",
    ),
    ("empty key", lambda d: d(render_report, 1, key=""), ValueError, "key"),
    ("key not str", lambda d: d(render_report, 1, key=5), TypeError, "key"),
]


@pytest.mark.parametrize(
    ("why", "call", "error", "match"), BAD_CALLS, ids=[b[0] for b in BAD_CALLS]
)
@pytest.mark.anyio
async def test_refuses_what_scheduler_defer_refuses(
    why: str, call: Callable[[Any], Any], error: type[Exception], match: str
) -> None:
    # Scheduler.defer's checks are its Client's, made before the store is called.
    client = Client(MemoryStore(), tasks)
    with pytest.raises(error, match=match):
        await call(client.defer)
    outbox = PostgresEnqueue(tasks)
    with pytest.raises(error, match=match):
        call(outbox.sql)


def test_a_bad_argument_names_the_task() -> None:
    with pytest.raises(TypeError, match="task 'render_report': argument 0 has type set"):
        PostgresEnqueue(tasks).sql(render_report, {1})


def test_nothing_is_sent_when_a_check_fails(postgres_url: str, schema: str) -> None:
    outbox = PostgresEnqueue(tasks, schema=schema)
    with psycopg.connect(postgres_url) as conn:
        with pytest.raises(TypeError):
            outbox.defer(conn, render_report, {1})
        with pytest.raises(ValueError, match="on_conflict"):
            outbox.defer(conn, render_report, 1, on_conflict="replace")  # type: ignore[arg-type]
        # The caller's transaction was not even begun, let alone aborted.
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE


def test_constructor_and_paramstyle_are_checked() -> None:
    with pytest.raises(TypeError, match="TaskRegistry"):
        PostgresEnqueue({})  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="schema"):
        PostgresEnqueue(tasks, schema="Bad Name")
    with pytest.raises(ValueError, match="lease"):
        PostgresEnqueue(tasks, lease=0)
    with pytest.raises(ValueError, match="paramstyle"):
        PostgresEnqueue(tasks).sql(render_report, 1, paramstyle="qmark")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"psycopg\.Connection"):
        PostgresEnqueue(tasks).defer(object(), render_report, 1)  # type: ignore[arg-type]
