"""RedisStore against a server that stops answering, restarts or speaks no TLS.

Each test starts a private ``redis-server`` and pauses it with SIGSTOP (a hung
or partitioned host: the kernel still accepts connections, nothing answers) or
restarts it.  Opening and every command give up after the store's timeouts, a
cancellation of the caller's scope interrupts them at any moment, and after a
restart the store reconnects, its scripts come back without a word in the log
and a wake-up reaches a waiter again.  Deadlines here are generous upper bounds
(a loaded machine), never expected durations.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

import duetime
from duetime import Status
from duetime.durable import NewRow, RedisStore

from .redis_server import RedisServer, free_port

pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("real_time")]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path, appendonly=True) as server:
        yield server
        assert server.proc is not None
        server.proc.send_signal(signal.SIGCONT)  # a stopped server ignores SIGTERM


def pause(server: RedisServer) -> None:
    assert server.proc is not None
    server.proc.send_signal(signal.SIGSTOP)


def row(key: str) -> NewRow:
    return NewRow(key=key, task="t", payload="[]", delay=0.0)


# -- a server that does not answer ---------------------------------------------------


async def test_open_gives_up_after_connect_timeout(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    pause(server)
    store = RedisStore(server.url, connect_timeout=0.5)
    with (
        caplog.at_level(logging.DEBUG),
        anyio.fail_after(30),
        pytest.raises(TimeoutError, match="connect_timeout"),
    ):
        async with store:
            pass
    # The one error is the store's: coredis's cancelled handshake logs no traceback.
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


async def test_a_cancelled_caller_interrupts_open(server: RedisServer) -> None:
    pause(server)
    store = RedisStore(server.url, connect_timeout=3600)
    with anyio.fail_after(30), anyio.move_on_after(0.5) as scope:
        async with store:
            pytest.fail("opened a stopped server")
    assert scope.cancelled_caught
    server.proc.send_signal(signal.SIGCONT)  # type: ignore[union-attr]
    async with store:  # the failed open left nothing behind
        assert await store.entries() == []


async def test_a_scheduler_on_a_stopped_server_can_be_cancelled(server: RedisServer) -> None:
    # As a worker's signal handler does: cancel the scope the Scheduler opens in.
    pause(server)
    store = RedisStore(server.url, connect_timeout=3600)
    with anyio.fail_after(30), anyio.move_on_after(0.5) as scope:
        async with duetime.Scheduler(store=store, tasks=duetime.TaskRegistry()):
            pytest.fail("opened a stopped server")
    assert scope.cancelled_caught


async def test_a_command_gives_up_after_timeout_and_can_be_cancelled(
    server: RedisServer,
) -> None:
    with anyio.fail_after(60):
        async with RedisStore(server.url, timeout=0.5) as store:
            await store.add([row("a")])
            pause(server)
            with pytest.raises(TimeoutError, match="no reply to CLAIM"):
                await store.claim("w", 10)
            with pytest.raises(TimeoutError):
                await store.head()
            store.timeout = 3600
            with anyio.move_on_after(0.5) as scope:
                await store.claim("w", 10)
            assert scope.cancelled_caught
        # ... and leaving the store did not wait for the stopped server either


async def test_tls_to_a_plain_port_fails_plainly(server: RedisServer) -> None:
    url = f"rediss://127.0.0.1:{server.port}/0"
    with anyio.fail_after(30), pytest.raises((TimeoutError, ConnectionError)):
        async with RedisStore(url, connect_timeout=1.0):
            pass


async def test_nothing_listening_fails_plainly() -> None:
    with anyio.fail_after(30), pytest.raises(ConnectionError, match="cannot open"):
        async with RedisStore(f"redis://127.0.0.1:{free_port()}/0"):
            pass


# -- a restart -----------------------------------------------------------------------


async def test_after_a_restart_scripts_reload_without_a_log_line(
    server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        async with RedisStore(server.url) as store:
            await store.add([row("before")])
            server.stop()
            server.start()  # same port; the script cache is empty now
            with anyio.fail_after(30):
                while True:
                    try:
                        await store.add([row("after")])
                        break
                    except ConnectionError:
                        await anyio.sleep(0.1)
            assert {e.key for e in await store.entries()} == {"before", "after"}
    assert "No matching script" not in caplog.text
    assert "NOSCRIPT" not in caplog.text
    assert "NoneType: None" not in caplog.text  # coredis's empty exc_info


async def test_a_wake_up_reaches_a_waiter_after_a_restart(server: RedisServer) -> None:
    # A long safety poll: only the pub/sub message can wake the waiter in time.
    async with RedisStore(server.url, poll=3600) as waiter, RedisStore(server.url) as producer:
        server.stop()
        await anyio.sleep(3)
        server.start()
        await producer.add([row("far")])  # the first writes may land before the
        woke = anyio.Event()  # subscription is back: retry until one wakes the waiter

        async def wait() -> None:
            await waiter.wait_changed(3600)
            woke.set()

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                n = 0
                while not woke.is_set():
                    n += 1
                    # Each add moves the head earlier, so each publishes a wake-up.
                    await producer.add([NewRow(f"k{n}", "t", "[]", due=1e9 - n)])
                    with anyio.move_on_after(0.5):
                        await woke.wait()


async def test_a_worker_runs_an_entry_deferred_after_a_restart_and_stops(
    server: RedisServer,
) -> None:
    tasks = duetime.TaskRegistry()
    ran: list[str] = []
    event = anyio.Event()

    @tasks.task("note")
    async def note(what: str) -> None:
        ran.append(what)
        event.set()

    with anyio.fail_after(90):
        async with duetime.Scheduler(store=RedisStore(server.url), tasks=tasks) as s:
            await s.defer(note, "before", key="before")
            await event.wait()
            event = anyio.Event()
            server.stop()
            await anyio.sleep(3)
            server.start()
            while True:  # the first calls may still meet the dropped connection
                try:
                    await s.defer(note, "after", key="after")
                    break
                except ConnectionError:
                    await anyio.sleep(0.1)
            await event.wait()
        # leaving the Scheduler (as a worker does at SIGTERM) did not hang
    assert ran == ["before", "after"]
    async with RedisStore(server.url) as store:
        entry = await store.get("after")
        assert entry is not None
        assert entry.status is Status.COMPLETED


async def test_an_abort_reaches_a_waiter_after_a_restart(server: RedisServer) -> None:
    """The subscription comes back after a restart and carries abort requests
    again; the return of the subscription itself wakes the waiter (requests sent
    meanwhile were lost)."""
    async with RedisStore(server.url, poll=3600) as worker, RedisStore(server.url) as operator:
        await operator.add([row("a")])
        [c] = await operator.claim("w", 1)
        await worker.wait_aborted(0)
        server.stop()
        await anyio.sleep(1)
        server.start()
        with anyio.fail_after(60):
            await worker.wait_aborted(3600)  # the resubscription
        woke = anyio.Event()

        async def wait() -> None:
            await worker.wait_aborted(3600)
            woke.set()

        with anyio.fail_after(60):
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait)
                await anyio.sleep(0.1)
                assert await operator.abort("a")
        assert await worker.aborts([("a", c.token)]) == [True]
