"""The worker's side of abort, on MemoryStore under virtual time, both backends:
an abort request (``Store.abort``, from any process) reaches the run that holds
the lease; the run ends CANCELLED, never retried or dead-lettered; a sync task
sees ``current_entry().abort_requested``; the abort watcher is idle when no run
is held, and its store errors go through the worker's outage logging."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import anyio
import pytest

from duetime import Retry, Status
from duetime.durable import (
    ABORTED,
    Done,
    MemoryStore,
    StoreSession,
    TaskRegistry,
    current_entry,
)
from duetime.durable._log import STORE, WORKER
from duetime.testing import hold_autojump
from tests.durable.test_worker_runtime import FlakyStore
from tests.durable.waiting import wait_for

pytestmark = pytest.mark.anyio


class Counting(MemoryStore):
    """A MemoryStore that counts the abort watcher's calls."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.calls: list[tuple[str, float]] = []

    async def aborts(self, claims: Any) -> list[bool]:
        self.calls.append(("aborts", anyio.current_time()))
        return await super().aborts(claims)

    async def wait_aborted(self, timeout: float) -> None:
        self.calls.append(("wait_aborted", anyio.current_time()))
        await super().wait_aborted(timeout)


async def test_an_async_task_is_cancelled_at_once_and_ends_cancelled(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="duetime")
    tasks = TaskRegistry()
    seen: list[tuple[str, float]] = []
    errors: list[BaseException] = []

    @tasks.task("slow", retry=Retry(attempts=5, backoff=1))
    async def slow() -> int:
        seen.append(("start", anyio.current_time()))
        try:
            await anyio.sleep(100)
        except anyio.get_cancelled_exc_class():
            seen.append(("cancelled", anyio.current_time()))
            assert current_entry().abort_requested
            raise
        return 1

    store = MemoryStore()
    async with (
        StoreSession(store, tasks, worker=True, owner="w1", on_error=lambda e, x: errors.append(x)),
        StoreSession(store, tasks, worker=False) as producer,
    ):
        await producer.client.defer(slow, key="k")
        await anyio.sleep(3)
        t_abort = anyio.current_time()
        assert await store.abort("k")  # the producer's process: no worker there
        e = await wait_for(producer.client, "k", Status.CANCELLED)
        await anyio.sleep(60)  # nothing retries it
    assert seen == [("start", 0.0), ("cancelled", t_abort)]  # woken by the request
    assert (e.attempt, e.last_error, e.result, e.abort_requested) == (1, ABORTED, None, False)
    assert errors == []
    lines = [r for r in caplog.records if r.name == WORKER and "aborted" in r.getMessage()]
    assert [(r.levelname, r.getMessage()) for r in lines] == [
        ("INFO", "durable task 'slow' (entry 'k') aborted")
    ]
    assert (lines[0].__dict__["key"], lines[0].__dict__["task"]) == ("k", "slow")
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_task_that_swallows_the_cancellation_still_ends_cancelled() -> None:
    tasks = TaskRegistry()

    @tasks.task("stubborn")
    async def stubborn() -> str:
        try:
            await anyio.sleep(100)
        except anyio.get_cancelled_exc_class():
            return "finished anyway"  # swallowed: its value is discarded
        return "never"

    store = MemoryStore()
    async with StoreSession(store, tasks, worker=True) as r:
        await r.client.defer(stubborn, key="k")
        await anyio.sleep(1)
        assert await store.abort("k")
        e = await wait_for(r.client, "k", Status.CANCELLED)
    assert (e.last_error, e.result) == (ABORTED, None)


async def test_a_task_that_raises_on_its_cancellation_is_not_retried() -> None:
    tasks = TaskRegistry()
    runs: list[int] = []
    errors: list[BaseException] = []

    @tasks.task("raises", retry=Retry(attempts=3, backoff=1))
    async def raises() -> None:
        runs.append(current_entry().attempt)
        try:
            await anyio.sleep(100)
        except anyio.get_cancelled_exc_class():
            raise ValueError("cleanup failed") from None

    store = MemoryStore()
    async with StoreSession(store, tasks, worker=True, on_error=lambda e, x: errors.append(x)) as r:
        await r.client.defer(raises, key="k")
        await anyio.sleep(1)
        assert await store.abort("k")
        e = await wait_for(r.client, "k", Status.CANCELLED)
        await anyio.sleep(30)
    assert runs == [1]
    assert errors == []
    assert e.last_error == ABORTED


async def test_a_sync_task_polls_abort_requested_and_its_value_is_discarded() -> None:
    tasks = TaskRegistry()
    started = threading.Event()
    polls: list[bool] = []

    @tasks.task("crunch")
    def crunch() -> str:
        started.set()
        deadline = time.monotonic() + 30  # a bound in real time, never reached when passing
        while time.monotonic() < deadline:
            requested = current_entry().abort_requested
            polls.append(requested)
            if requested:
                return "partial"
            time.sleep(0.005)
        return "timed out"

    store = MemoryStore()
    async with StoreSession(store, tasks, worker=True) as r:
        await r.client.defer(crunch, key="k")
        with hold_autojump(), anyio.fail_after(30):
            await anyio.to_thread.run_sync(started.wait)
            assert await store.abort("k")
            e = await wait_for(r.client, "k", Status.CANCELLED, limit=30)
    assert polls[0] is False
    assert polls[-1] is True
    assert (e.last_error, e.result) == (ABORTED, None)


async def test_a_running_series_occurrence_is_aborted_and_the_series_stops() -> None:
    tasks = TaskRegistry()
    runs: list[float] = []

    @tasks.task("tick")
    async def tick() -> None:
        runs.append(anyio.current_time())
        await anyio.sleep(5)

    store = MemoryStore()
    async with StoreSession(store, tasks, worker=True) as r:
        await r.client.defer_every(10, tick, key="s")
        await anyio.sleep(22)  # the third occurrence runs (20..25)
        assert len(runs) == 3
        assert await store.abort("s")
        e = await wait_for(r.client, "s", Status.CANCELLED)
        await anyio.sleep(100)
    assert len(runs) == 3
    assert (e.last_error, e.occurrence) == (ABORTED, 2)


async def test_an_entry_whose_worker_died_after_the_request_never_runs_again() -> None:
    tasks = TaskRegistry()
    runs: list[str] = []

    @tasks.task("t")
    async def t() -> None:
        runs.append(current_entry().key)

    store = MemoryStore()
    async with StoreSession(store, tasks, worker=False) as producer:
        await producer.client.defer(t, key="k")
        [c] = await store.claim("dead", 1)  # a worker that dies holding it
        assert await store.abort("k")
        store.crash("dead")
        async with StoreSession(store, tasks, worker=True, owner="w2"):
            e = await wait_for(producer.client, "k", Status.CANCELLED)
            await anyio.sleep(60)
    assert runs == []
    assert e.last_error == ABORTED
    assert await store.finish_many([("k", c.token, Done())]) == [False]


async def test_the_watcher_calls_nothing_while_no_run_is_held() -> None:
    tasks = TaskRegistry()

    @tasks.task("t", lease=30)
    async def t() -> None:
        await anyio.sleep(50)

    store = Counting()
    async with StoreSession(store, tasks, worker=True) as r:
        await anyio.sleep(1000)
        assert store.calls == []  # never held a run
        await r.client.defer(t, key="k")
        await wait_for(r.client, "k", Status.COMPLETED)
        busy = list(store.calls)
        await anyio.sleep(10_000)
        idle = store.calls[len(busy) :]
    # While the run was held: one wait_aborted + aborts per lease/3, not a loop.
    assert 2 <= len(busy) <= 2 * (50 // 10 + 2), busy
    assert len(idle) <= 1, idle  # at most the wait in progress when the run ended


async def test_a_store_error_in_the_watcher_is_logged_as_an_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = TaskRegistry()

    @tasks.task("t", lease=30)
    async def t() -> None:
        await anyio.sleep(100)

    store = FlakyStore()
    async with StoreSession(store, tasks, worker=True) as r:
        await r.client.defer(t, key="k")
        await anyio.sleep(0.5)
        store.outage(5)  # every call of the worker fails (not Store.abort)
        await anyio.sleep(2)
        assert await store.abort("k")  # the watcher wakes, then its aborts() fails
        e = await wait_for(r.client, "k", Status.CANCELLED)
        t_end = anyio.current_time()
    assert e.last_error == ABORTED
    assert store.failures >= 1
    assert 5.5 <= t_end <= 5.5 + 2.5  # within the backoff cap of the outage's end
    lines = [(rec.levelname, rec.getMessage()) for rec in caplog.records if rec.name == STORE]
    assert len(lines) == 2, lines
    assert lines[0][0] == "WARNING"
    assert "failed (ConnectionError" in lines[0][1]
    assert lines[0][1].startswith("durable store: aborts failed")
    assert "answers again" in lines[1][1]


async def test_a_sync_task_that_never_checks_ends_cancelled_when_it_returns() -> None:
    tasks = TaskRegistry()
    started, gate = threading.Event(), threading.Event()

    @tasks.task("blind", lease=1.5)
    def blind() -> str:
        started.set()
        gate.wait(30)  # a bound in real time, never reached when passing
        return "value"

    store = MemoryStore()
    async with StoreSession(store, tasks, worker=True) as r:
        await r.client.defer(blind, key="k")
        with hold_autojump(), anyio.fail_after(30):
            await anyio.to_thread.run_sync(started.wait)
            assert await store.abort("k")
            await anyio.sleep(3)  # two leases: the thread runs on, its lease renewed
        e = await store.get("k")
        assert e is not None
        assert (e.status, e.abort_requested, e.deliveries) == (Status.RUNNING, True, 1)
        gate.set()
        with hold_autojump():
            e = await wait_for(r.client, "k", Status.CANCELLED, limit=30)
    assert (e.last_error, e.result) == (ABORTED, None)


async def test_leaving_does_not_wait_for_the_watcher() -> None:
    class Hangs(MemoryStore):
        async def wait_aborted(self, timeout: float) -> None:
            await anyio.sleep_forever()  # a store whose wait never returns

    tasks = TaskRegistry()

    @tasks.task("t")
    async def t() -> None:
        await anyio.sleep(5)

    with anyio.fail_after(60):
        async with StoreSession(Hangs(), tasks, worker=True) as r:
            await r.client.defer(t, key="k")
            await wait_for(r.client, "k", Status.COMPLETED)
