"""A PostgresStore whose server froze (SIGSTOP: connections stay open, nothing
answers, new TCP connections are accepted and never served): its calls fail
within its ``timeout`` even when they must open a new connection, and a
Scheduler using it leaves its ``async with`` within a bound set by that
``timeout``, not by ``connect_timeout`` or the time libpq spends on a
connection nobody waits for any more.  Real server, real time."""

from __future__ import annotations

import contextlib
import os
import signal
import time

import anyio
import pytest

from duetime import Scheduler, Status
from duetime.durable import PostgresStore, TaskRegistry, current_entry

from .postgres_server import PostgresServer, server_pids

pytestmark = pytest.mark.anyio

TIMEOUT = 1.0
#: Far above the bound below: a connect that only libpq's connect_timeout ends
#: would make the test fail.
CONNECT_TIMEOUT = 60.0
BOUND = TIMEOUT * 3 + 10


def freeze(server: PostgresServer) -> set[int]:
    """SIGSTOP the postmaster, then every process it forked (it can fork no more
    once stopped: a backend forked while the list was read is not missed);
    their pids, for SIGCONT."""
    stopped = {server.pid}
    os.kill(server.pid, signal.SIGSTOP)
    while fresh := server_pids(server.pid) - stopped:
        for pid in fresh:
            with contextlib.suppress(ProcessLookupError):  # it ended meanwhile
                os.kill(pid, signal.SIGSTOP)
        stopped |= fresh
    return stopped


def registry() -> TaskRegistry:
    tasks = TaskRegistry()

    @tasks.task("t")
    async def t(i: int) -> None:
        pass

    return tasks


async def test_a_frozen_server_bounds_calls_and_leaving_by_the_timeout(real_time: None) -> None:
    with PostgresServer() as server:
        store = PostgresStore(
            server.url, timeout=TIMEOUT, connect_timeout=CONNECT_TIMEOUT, poll=0.2
        )
        frozen: set[int] = set()
        try:
            async with Scheduler(store=store, tasks=registry(), grace=0) as s:
                await s.defer("t", 1, key="a")
                frozen = freeze(server)
                # The first call waits on an open connection, which it gives up;
                # the second must open a new one, to a server that never answers.
                for _ in range(2):
                    t0 = time.monotonic()
                    with pytest.raises(TimeoutError, match="no reply within 1 s"):
                        await s.deferred("a")
                    assert time.monotonic() - t0 < BOUND
                # The worker's own calls (claims, the safety poll) fail alike
                # meanwhile, and reconnect: leave while they do.
                await anyio.sleep(1.0)
                left = time.monotonic()
            assert time.monotonic() - left < BOUND
        finally:
            for pid in frozen:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)


async def test_leaving_with_runs_in_flight_on_a_frozen_server_is_bounded(
    real_time: None, caplog: pytest.LogCaptureFixture
) -> None:
    tasks = TaskRegistry()
    started: list[str] = []
    all_started = anyio.Event()

    @tasks.task("slow")  # the store's lease (30 s): longer than the bound
    async def slow() -> None:
        started.append(current_entry().key)
        if len(started) == 3:
            all_started.set()
        await anyio.sleep_forever()

    keys = ["a", "b", "c"]
    with PostgresServer() as server:
        store = PostgresStore(
            server.url, timeout=TIMEOUT, connect_timeout=CONNECT_TIMEOUT, poll=0.2
        )
        frozen: set[int] = set()
        try:
            async with Scheduler(store=store, tasks=tasks, grace=0) as s:
                for key in keys:
                    await s.defer("slow", key=key)
                with anyio.fail_after(60):
                    await all_started.wait()
                frozen = freeze(server)
                left = time.monotonic()
            # Cancelled at once (grace=0): their releases cannot be recorded,
            # and are left to the lease instead of retried until it ends.
            assert time.monotonic() - left < BOUND
        finally:
            for pid in frozen:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGCONT)
        assert any(
            "3 outcome(s)" in r.getMessage() and r.levelname == "WARNING" for r in caplog.records
        )
        # Nothing lost, nothing ran to its end: each row is still leased, or
        # released (a release whose reply the freeze held back may have landed).
        async with PostgresStore(server.url) as again:
            for key in keys:
                e = await again.get(key)
                assert e is not None
                # Still leased, or released (the release undoes its delivery).
                assert (e.status, e.deliveries) in {(Status.RUNNING, 1), (Status.PENDING, 0)}
