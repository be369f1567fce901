"""PostgresStore beyond the conformance suite: its schema (refusals, concurrent
creation, read-only), its options and URLs (no password shown), its NOTIFYs
(debounced, only when someone may care) and its LISTEN connection across a
server restart.  Real server, real time, asyncio and trio."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import anyio
import anyio.to_thread
import pytest

from duetime import Status
from duetime.durable import (
    Done,
    NewRow,
    NotAStore,
    PostgresStore,
    ReadOnlyStore,
    StoreLost,
    open_store,
)
from duetime.durable.conformance import row

from .postgres_server import PostgresServer, admin

pytestmark = pytest.mark.anyio

Factory = Callable[..., PostgresStore]


def rows_of(url: str, sql: str) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        return list(conn.execute(sql.encode()).fetchall())


# -- import, options, URLs ---------------------------------------------------------


def test_import_is_lazy_and_open_store_takes_both_schemes() -> None:
    code = (
        "import sys, duetime.durable\n"
        "assert 'psycopg' not in sys.modules\n"
        "print(duetime.durable.PostgresStore.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "PostgresStore"
    for url in ("postgresql://u:s3cret@db.example/app", "postgres://u:s3cret@db.example/app"):
        store = open_store(url, read_only=True, schema="jobs")
        assert isinstance(store, PostgresStore)
        assert store.read_only
        assert store.schema == "jobs"
        assert "s3cret" not in repr(store)


def test_a_key_value_dsn_never_shows_its_password() -> None:
    store = PostgresStore("host=db.example dbname=app user=u password=s3cret")
    assert "s3cret" not in repr(store)
    assert "host=db.example" in repr(store)
    with pytest.raises(ValueError, match="cannot parse") as info:
        PostgresStore("host=db.example password='s3cret")  # unbalanced quote: not parsable
    assert "s3cret" not in str(info.value)


def test_bad_options_are_refused_at_the_call() -> None:
    with pytest.raises(TypeError):
        PostgresStore(b"host=x")  # type: ignore[arg-type]
    for schema in ("Jobs", "a-b", "pg_x", "x" * 60, ""):
        with pytest.raises(ValueError, match="schema"):
            PostgresStore("host=x", schema=schema)
    with pytest.raises(ValueError, match="lease"):
        PostgresStore("host=x", lease=0)
    with pytest.raises(ValueError, match="result_ttl"):
        PostgresStore("host=x", dedupe_ttl=10, result_ttl=20)
    with pytest.raises(ValueError, match="pool_size"):
        PostgresStore("host=x", pool_size=0)


# -- the schema ----------------------------------------------------------------------


async def test_another_applications_table_is_refused_and_left_untouched(
    postgres_store: Factory, postgres_url: str, postgres_schema: str, real_time: None
) -> None:
    s = postgres_schema
    admin(
        postgres_url,
        f"CREATE SCHEMA {s}",
        f"CREATE TABLE {s}.entries (id int PRIMARY KEY, name text)",
        f"INSERT INTO {s}.entries VALUES (1, 'theirs')",
    )
    with pytest.raises(NotAStore, match="another application"):
        async with postgres_store():
            pass
    assert rows_of(postgres_url, f"SELECT * FROM {s}.entries") == [(1, "theirs")]
    assert rows_of(postgres_url, f"SELECT to_regclass('{s}.meta')") == [(None,)]


async def test_another_schema_version_is_refused_and_left_untouched(
    postgres_store: Factory, postgres_url: str, postgres_schema: str, real_time: None
) -> None:
    async with postgres_store() as store:
        await store.add([row("a", 1)])
    admin(postgres_url, f"UPDATE {postgres_schema}.meta SET v = '99' WHERE k = 'schema_version'")
    for read_only in (False, True):
        with pytest.raises(NotAStore, match="schema version '99'"):
            async with postgres_store(read_only=read_only):
                pass
    assert rows_of(postgres_url, f"SELECT key FROM {postgres_schema}.entries") == [("a",)]


async def test_concurrent_openers_create_the_schema_once(
    postgres_store: Factory, postgres_url: str, postgres_schema: str, real_time: None
) -> None:
    opened: list[int] = []

    async def open_one(i: int) -> None:
        async with postgres_store(pool_size=2) as store:
            await store.add([row(f"k{i}", i)])
            opened.append(i)

    async with anyio.create_task_group() as tg:
        for i in range(8):
            tg.start_soon(open_one, i)
    assert len(opened) == 8
    meta = rows_of(postgres_url, f"SELECT k, v FROM {postgres_schema}.meta ORDER BY k")
    assert meta == [("application", "duetime"), ("schema_version", "1")]
    count = rows_of(postgres_url, f"SELECT count(*) FROM {postgres_schema}.entries")
    assert count == [(8,)]


async def test_read_only_creates_nothing_and_writes_nothing(
    postgres_store: Factory, postgres_url: str, postgres_schema: str, real_time: None
) -> None:
    with pytest.raises(NotAStore, match="no duetime store"):
        async with postgres_store(read_only=True):
            pass
    assert rows_of(postgres_url, f"SELECT to_regnamespace('{postgres_schema}')") == [(None,)]
    async with postgres_store() as writer:
        await writer.add([row("a", 1), row("b", 2, delay=60)])
        async with postgres_store(read_only=True) as reader:
            assert [e.key for e in await reader.entries()] == ["a", "b"]
            assert (await reader.get("a")).args == (1,)  # type: ignore[union-attr]
            assert await reader.head() is not None
            for write in (
                reader.add([row("c")]),
                reader.claim("w", 1),
                reader.cancel("a"),
                reader.abort("a"),
                reader.retry("a"),
                reader.delete("a"),
                reader.extend([("a", 1)]),
                reader.finish_many([("a", 1, Done())]),
            ):
                with pytest.raises(ReadOnlyStore):
                    await write
            with anyio.move_on_after(2):
                await reader.wait_finished(0.05)
    assert rows_of(postgres_url, f"SELECT count(*) FROM {postgres_schema}.awaiting") == [(0,)]


# -- rows another program wrote ----------------------------------------------------------

_BAD = {
    "payload over 64 KiB": "payload = '[\"' || repeat('x', 70000) || '\"]'",
    "payload not JSON": "payload = 'not json'",
    "visible_at NaN": "visible_at = 'NaN'",
    "visible_at -Infinity": "visible_at = '-Infinity'",
    "attempt 0": "attempt = 0",
    "empty task": "task = ''",
    "due out of range": "due = 1e300",
}


@pytest.mark.parametrize("fault", sorted(_BAD))
async def test_a_bad_row_is_dead_lettered_alone(
    postgres_store: Factory, postgres_url: str, fault: str, real_time: None
) -> None:
    async with postgres_store() as store:
        await store.add([row("good1", 1), row("bad", 2), row("good2", 3)])
        sql = f"UPDATE {store.schema}.entries SET {_BAD[fault]} WHERE key = 'bad'"
        await anyio.to_thread.run_sync(admin, postgres_url, sql)
        assert {e.key for e in await store.entries()} == {"good1", "bad", "good2"}
        assert await store.head() is not None
        claims = []
        for _ in range(3):
            claims += await store.claim("w", 10)
        assert sorted(c.entry.key for c in claims) == ["good1", "good2"]
        bad = await store.get("bad")
        assert bad is not None
        assert bad.status is Status.FAILED
        assert str(bad.last_error).startswith("malformed row: "), bad.last_error
        assert await store.delete("bad")
        assert await store.claim("w", 10) == []


# -- NOTIFY: debounced, only when someone may care --------------------------------------


class Notes:
    """A plain psycopg LISTEN connection, counting the store's notifications."""

    def __init__(self, url: str, schema: str) -> None:
        import psycopg

        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute(f'LISTEN "{schema}.wake"'.encode())

    def take(self) -> list[str]:
        return [n.payload for n in self.conn.notifies(timeout=0.3)]

    def close(self) -> None:
        self.conn.close()


async def test_notify_only_when_the_head_moves_earlier_or_someone_awaits(
    postgres_store: Factory, postgres_url: str, real_time: None
) -> None:
    async with postgres_store() as store, postgres_store() as other:
        notes = Notes(postgres_url, store.schema)
        try:
            now = await store.time()
            await store.add([row(f"b{i}", due=now + 100 + i) for i in range(100)])
            assert await anyio.to_thread.run_sync(notes.take) == ["c"]  # a batch: one
            for i in range(20):  # behind the head: none
                await store.add([row(f"l{i}", due=now + 500 + i)])
            assert await anyio.to_thread.run_sync(notes.take) == []
            await store.add([row("soon", due=now + 50)])
            assert await anyio.to_thread.run_sync(notes.take) == ["c"]
            # finishes: no NOTIFY until some store object awaits finishes
            await store.add([row("r1"), row("r2")])
            assert await anyio.to_thread.run_sync(notes.take) == ["c"]
            c1, c2 = sorted(await store.claim("w", 2), key=lambda c: c.entry.key)
            await store.finish_many([("r1", c1.token, Done())])
            assert await anyio.to_thread.run_sync(notes.take) == []
            await other.wait_finished(0)  # announces its interest
            await store.finish_many([("r2", c2.token, Done())])
            assert await anyio.to_thread.run_sync(notes.take) == ["f"]
            # an abort of a running row: always
            await store.add([row("r3")])
            [c3] = await store.claim("w", 1)
            notes.take()
            assert await store.abort("r3")
            assert await anyio.to_thread.run_sync(notes.take) == ["a"]
            assert await store.aborts([("r3", c3.token)]) == [True]
        finally:
            notes.close()


async def test_finishes_and_aborts_wake_another_store_object(
    postgres_store: Factory, real_time: None
) -> None:
    async with postgres_store(poll=30.0) as store, postgres_store(poll=30.0) as other:
        await store.add([row("a"), row("b")])
        ca, _ = sorted(await store.claim("w", 2), key=lambda c: c.entry.key)
        await other.wait_finished(0)
        await other.wait_aborted(0)
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(other.wait_finished, 600.0)
                await anyio.sleep(0.1)
                await store.finish_many([("a", ca.token, Done("[1]"))])
        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(other.wait_aborted, 600.0)
                await anyio.sleep(0.1)
                assert await store.abort("b")
        assert (await other.get("a")).result == "[1]"  # type: ignore[union-attr]


# -- the LISTEN connection across a server restart ---------------------------------------


async def test_wake_ups_come_back_after_an_immediate_server_restart(real_time: None) -> None:
    with PostgresServer() as server:
        async with (
            PostgresStore(server.url, poll=60.0) as store,
            PostgresStore(server.url, poll=60.0) as other,
        ):
            now = await store.time()
            await store.add([row("late", due=now + 1000)])
            await store.wait_changed(0)  # changes count from the end of this wait
            await anyio.to_thread.run_sync(server.restart)
            with anyio.fail_after(10):
                await store.wait_changed(600.0)  # the reconnect itself counts as a wake-up
            t0 = anyio.current_time()
            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(store.wait_changed, 600.0)
                    await anyio.sleep(0.2)
                    while True:  # the other store's pool reconnects on its next query
                        try:
                            await other.add([row("soon", delay=1)])
                            break
                        except Exception:
                            await anyio.sleep(0.05)
            assert anyio.current_time() - t0 < 5.0  # a notification, not the 60 s poll


async def test_a_payload_round_trips_exactly(postgres_store: Factory, real_time: None) -> None:
    payload = json.dumps(['é\\"{},NULL', "\u2028", 1.5, None, [1, {"a": "b"}]])
    async with postgres_store() as store:
        [e] = await store.add([NewRow('k{,"}', "t", payload, delay=0.0)])
        assert e.key == 'k{,"}'
        [c] = await store.claim("w", 1)
        assert c.payload == payload
        assert c.entry.key == 'k{,"}'
        [ok] = await store.finish_many([(c.entry.key, c.token, Done(payload))])
        assert ok
        assert (await store.get('k{,"}')).result == payload  # type: ignore[union-attr]


async def test_a_frozen_server_times_out_and_the_store_comes_back(real_time: None) -> None:
    with PostgresServer() as server:
        async with PostgresStore(server.url, timeout=1.0) as store:
            await store.add([row("a", 1)])
            frozen = freeze(server)  # connections stay open, nothing answers
            try:
                t0 = anyio.current_time()
                with pytest.raises(TimeoutError, match="no reply within 1 s"):
                    await store.get("a")
                assert anyio.current_time() - t0 < 5.0
            finally:
                for pid in frozen:
                    os.kill(pid, signal.SIGCONT)
            assert (await store.get("a")).args == (1,)  # type: ignore[union-attr]


def freeze(server: PostgresServer) -> list[int]:
    """SIGSTOP the server's postmaster and every process it forked (each of
    them leads its own session, so a signal to the postmaster's group misses
    them); their pids, for SIGCONT."""
    pids = [server.pid]
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()  # noqa: SIM115 - a tiny read
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == server.pid:
                pids.append(int(entry))
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    return pids


async def test_a_dropped_schema_is_a_lost_store(
    postgres_store: Factory, postgres_url: str, postgres_schema: str, real_time: None
) -> None:
    async with postgres_store() as store:
        await store.add([row("a", 1)])
        await anyio.to_thread.run_sync(
            admin, postgres_url, f"DROP SCHEMA {postgres_schema} CASCADE"
        )
        with pytest.raises(StoreLost, match="was dropped"):
            await store.claim("w", 10)
        with pytest.raises(StoreLost):  # every call from now on, without asking the server
            await store.get("a")


def test_the_cli_never_shows_the_password(capsys: pytest.CaptureFixture[str]) -> None:
    from duetime.__main__ import main

    from .postgres_server import free_port

    url = f"postgresql://duetime:s3cret-pw@127.0.0.1:{free_port()}/nowhere"
    assert main(["entries", "--store", url]) == 2  # the store's error, not a bug (1)
    out = capsys.readouterr()
    text = out.out + out.err
    assert "s3cret-pw" not in text
    assert "OperationalError" in text
    assert "127.0.0.1" in text
    assert "Traceback" not in text


def test_a_postgres_url_without_the_extra_names_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # makes the import fail
    for url in ("postgresql://localhost/app", "postgres://localhost/app"):
        with pytest.raises(ImportError, match="postgres' extra"):
            open_store(url)


def test_without_psycopg_the_store_names_the_extra() -> None:
    code = (
        "import sys; sys.modules['psycopg'] = None\n"
        "import duetime.durable\n"
        "try:\n"
        "    duetime.durable.PostgresStore\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'duetime[postgres]'" in out.stdout
