"""Hostile review of PostgresStore's non-blocking connect, on a real server
that asks a password of one role (scram-sha-256) and trusts ``postgres``."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import anyio
import psycopg
import pytest

from duetime.durable import PostgresStore

from .postgres_server import PostgresServer, admin, find_bindir, psycopg_module

pytestmark = pytest.mark.anyio

SECRET = "Sekr3t-pass-word"


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    psycopg_module()
    if find_bindir() is None:
        pytest.skip("the PostgreSQL server is not installed")
    server = PostgresServer()
    hba = server.directory / "hba.conf"
    hba.write_text(
        "local all postgres trust\n"
        "host all postgres 127.0.0.1/32 trust\n"
        "host all all 127.0.0.1/32 scram-sha-256\n"
    )
    os.chmod(hba, 0o644)
    server.settings["hba_file"] = str(hba)
    try:
        server.start()
        admin(server.url, "CREATE ROLE pwuser LOGIN PASSWORD 'right'")
        yield server
    finally:
        server.close()


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture
def silent() -> Iterator[int]:
    """The port of a socket that accepts connections and never answers."""
    with socket.socket() as lsn:
        lsn.bind(("127.0.0.1", 0))
        lsn.listen(16)
        yield lsn.getsockname()[1]


@pytest.mark.parametrize(
    "how", ["localhost", "ip", "socket dir", "socket dir url", "first host refused", "ipv6 first"]
)
async def test_every_kind_of_host(server: PostgresServer, how: str, real_time: None) -> None:
    port, where = server.port, server.directory
    dsn = {
        "localhost": f"postgresql://postgres@localhost:{port}/postgres",
        "ip": f"postgresql://postgres@127.0.0.1:{port}/postgres",
        "socket dir": f"host={where} port={port} user=postgres dbname=postgres",
        "socket dir url": f"postgresql://postgres@/postgres?host={where}&port={port}",
        # libpq moves on to the next host: the socket it waits on changes
        "first host refused": f"host=127.0.0.1,127.0.0.1 port=1,{port} user=postgres"
        " dbname=postgres",
        "ipv6 first": f"host=::1,127.0.0.1 port={port} user=postgres dbname=postgres",
    }[how]
    async with PostgresStore(dsn, schema="review3") as store:
        assert await store.time() > 0


@pytest.mark.parametrize("how", ["url", "key=value", "unreachable port"])
async def test_a_refused_connect_never_shows_the_password(
    server: PostgresServer, how: str, real_time: None
) -> None:
    dsn = {
        "url": f"postgresql://pwuser:{SECRET}@127.0.0.1:{server.port}/postgres",
        "key=value": f"host=127.0.0.1 port={server.port} user=pwuser password={SECRET}"
        " dbname=postgres",
        "unreachable port": f"postgresql://pwuser:{SECRET}@127.0.0.1:1/postgres",
    }[how]
    with pytest.raises(psycopg.OperationalError) as info:
        async with PostgresStore(dsn, schema="review3", timeout=20):
            pass
    text = "".join(str(e) + repr(e) for e in _chain(info.value))
    assert SECRET not in text
    assert ("password authentication failed" in text) or ("refused" in text)


def _chain(exc: BaseException | None) -> Iterator[BaseException]:
    while exc is not None:
        yield exc
        exc = exc.__cause__ or exc.__context__


async def test_cancelled_mid_connect_leaks_no_socket(silent: int, real_time: None) -> None:
    dsn = f"postgresql://u:{SECRET}@127.0.0.1:{silent}/db"
    before = _fds()
    for _ in range(5):
        with anyio.move_on_after(0.3) as scope:
            async with PostgresStore(dsn, schema="review3"):
                pass
        assert scope.cancelled_caught
    assert _fds() == before


async def test_a_shorter_connect_timeout_in_the_dsn_is_kept(silent: int, real_time: None) -> None:
    # The store's own connect_timeout (60 s) must not lift the DSN's (2 s).
    dsn = f"postgresql://u:{SECRET}@127.0.0.1:{silent}/db?connect_timeout=2"
    with anyio.fail_after(30), pytest.raises(psycopg.OperationalError) as info:
        async with PostgresStore(dsn, schema="review3", connect_timeout=60, timeout=120):
            pass
    assert "took over 2 s" in str(info.value)
    assert SECRET not in str(info.value)


async def test_a_shorter_store_connect_timeout_beats_the_dsns(silent: int, real_time: None) -> None:
    dsn = f"host=127.0.0.1 port={silent} user=u dbname=db connect_timeout=600"
    with anyio.fail_after(30), pytest.raises(psycopg.OperationalError) as info:
        async with PostgresStore(dsn, schema="review3", connect_timeout=2, timeout=120):
            pass
    assert "took over 2 s" in str(info.value)
