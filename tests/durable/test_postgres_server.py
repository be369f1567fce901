"""The PostgreSQL test plugin itself (tests/durable/postgres_server.py), on a real
server through psycopg: the fixtures give each test its own database or schema,
and PostgresServer really crashes, restarts and freezes the server."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.durable.postgres_server import PostgresServer, find_bindir, unavailable

psycopg = pytest.importorskip("psycopg")


def fetch_one(url: str, query: str) -> object:
    with psycopg.connect(url, connect_timeout=10) as conn:
        row = conn.execute(query).fetchone()
        assert row is not None
        return row[0]


def test_postgres_url_answers(postgres_url: str) -> None:
    assert fetch_one(postgres_url, "SELECT current_setting('server_version_num')::int >= 150000")


def test_postgres_database_is_fresh_and_its_own(postgres_url: str, postgres_database: str) -> None:
    assert postgres_database != postgres_url
    name = fetch_one(postgres_database, "SELECT current_database()")
    assert name != fetch_one(postgres_url, "SELECT current_database()")
    tables = (
        "SELECT count(*) FROM pg_tables WHERE schemaname <> ALL ('{pg_catalog,information_schema}')"
    )
    assert fetch_one(postgres_database, tables) == 0
    with psycopg.connect(postgres_database) as conn:
        conn.execute("CREATE TABLE t (x int)")
    # The fixture's teardown drops it even with a connection still open.
    psycopg.connect(postgres_database).close()


def test_postgres_schema_is_new_and_dropped_after(postgres_url: str, postgres_schema: str) -> None:
    exists = f"SELECT count(*) FROM pg_namespace WHERE nspname = '{postgres_schema}'"
    assert fetch_one(postgres_url, exists) == 0
    with psycopg.connect(postgres_url) as conn:
        conn.execute(f'CREATE SCHEMA "{postgres_schema}"')
        conn.execute(f'CREATE TABLE "{postgres_schema}".t (x int)')
    assert fetch_one(postgres_url, exists) == 1


def test_unavailable_skips_locally_and_fails_under_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match="no PostgreSQL server: why"):
        unavailable("why")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true but PostgreSQL is unavailable: why"):
        unavailable("why")


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    if find_bindir() is None:
        unavailable("the PostgreSQL server is not installed (apt-get install postgresql-15)")
    with PostgresServer() as server:
        yield server


@pytest.fixture
def running(server: PostgresServer) -> PostgresServer:
    """The module's private server, started again if a test left it down."""
    if server.proc is None:
        server.start()
    return server


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not yet reaped, does not)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status


def test_kill_takes_down_every_server_process_and_start_recovers(running: PostgresServer) -> None:
    with psycopg.connect(running.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS kept (x int)")
        conn.execute("INSERT INTO kept VALUES (1)")
        backend = conn.info.backend_pid
        postmaster = running.pid
        running.kill()
        assert not alive(postmaster)
        assert not alive(backend)
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    running.start()
    # A committed row survives the crash, fsync off or not: it reached the OS.
    assert fetch_one(running.url, "SELECT count(*) FROM kept WHERE x = 1") == 1
    assert "database system was interrupted" in running.log.read_text()


def test_immediate_restart_drops_connections_and_keeps_commits(running: PostgresServer) -> None:
    before = running.pid
    with psycopg.connect(running.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS restarted (x int)")
        conn.execute("INSERT INTO restarted VALUES (2)")
        running.restart("immediate")
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
    assert running.pid != before
    assert fetch_one(running.url, "SELECT count(*) FROM restarted WHERE x = 2") == 1
    # Recovery ran: an immediate stop writes no shutdown checkpoint.
    assert "not properly shut down; automatic recovery in progress" in running.log.read_text()


def test_pause_freezes_the_server_and_resume_thaws_it(running: PostgresServer) -> None:
    with psycopg.connect(running.url, autocommit=True) as conn:
        running.pause()
        try:
            # Nothing answers: a new connection's start-up times out.
            with pytest.raises(psycopg.OperationalError):
                psycopg.connect(running.url, connect_timeout=1)
            # A query on an open connection waits for the server; it finishes
            # once the server runs again.
            result: list[object] = []
            query = conn.execute
            waiter = threading.Thread(target=lambda: result.append(query("SELECT 42").fetchone()))
            waiter.start()
        finally:
            running.resume()
        waiter.join(timeout=60)
        assert result == [(42,)]
    assert fetch_one(running.url, "SELECT 1") == 1


def test_stop_refuses_an_unknown_mode(running: PostgresServer) -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        running.stop("gentle")


def test_close_removes_the_directory() -> None:
    if find_bindir() is None:
        unavailable("the PostgreSQL server is not installed (apt-get install postgresql-15)")
    with PostgresServer() as server:
        directory = server.directory
        assert fetch_one(server.url, "SELECT 1") == 1
        if os.geteuid() == 0:
            assert directory.stat().st_uid != 0  # the server refuses root: it runs as postgres
    assert not directory.exists()
