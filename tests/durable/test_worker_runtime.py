"""The worker at run time: sync tasks' threads and their leases, store outages.

Real threads where the task is sync (each blocks on a ``threading.Event`` the
test sets), virtual time for everything else, on asyncio and trio.  While a
thread runs, asyncio's virtual clock flows at the real rate (trio's jumps), so
the thread tests span a few leases of a second or two, not minutes.
"""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

from duetime import Retry, Status
from duetime.durable import MemoryStore, StoreSession, TaskRegistry, current_entry

# The time bounds the worker and the session document (private constants: the
# tests check that shutdown and backoff keep to them).
from duetime.durable._session import CLOSE_CAP
from duetime.durable._worker import MAX_BACKOFF, STOP_CAP
from duetime.testing import hold_autojump
from tests.durable.waiting import wait_for

pytestmark = pytest.mark.anyio


class Threads:
    """Counts the threads of a sync task that run at once; each attempt blocks
    until the test opens its gate."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.starts: list[tuple[str, int]] = []
        self.gates: dict[int, threading.Event] = {}
        self.started = threading.Event()

    def gate(self, attempt: int) -> threading.Event:
        with self.lock:
            return self.gates.setdefault(attempt, threading.Event())

    def body(self) -> None:
        entry = current_entry()
        gate = self.gate(entry.attempt)
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.starts.append((entry.key, entry.attempt))
        self.started.set()
        try:
            gate.wait(60)  # a bound in real time, never reached by a passing test
        finally:
            with self.lock:
                self.running -= 1


async def wait_started(threads: Threads) -> None:
    with hold_autojump(), anyio.fail_after(30):
        await anyio.to_thread.run_sync(threads.started.wait)
    threads.started.clear()


async def test_a_timed_out_sync_task_keeps_its_lease_until_its_thread_returns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = TaskRegistry()
    threads = Threads()

    @tasks.task("sync.slow", timeout=0.5, lease=1.5, retry=Retry(attempts=2, backoff=0.1))
    def slow() -> None:
        threads.body()

    store = MemoryStore()
    async with (
        StoreSession(store, tasks, worker=True, owner="w1") as r1,
        StoreSession(store, tasks, worker=True, owner="w2"),
    ):
        await r1.client.defer(slow, key="k")
        await wait_started(threads)
        # Far past the timeout and a few leases: the thread still runs, so its
        # entry stays leased, and no next attempt starts here or in w2.
        await anyio.sleep(4)
        e = await store.get("k")
        assert e is not None
        assert (e.status, e.attempt, e.deliveries) == (Status.RUNNING, 1, 1)
        assert threads.starts == [("k", 1)]
        assert any("past its timeout of 0.5 s" in m for m in caplog.messages)
        threads.gate(1).set()
        await wait_started(threads)  # attempt 2 starts only now
        await anyio.sleep(1)  # past its timeout too
        threads.gate(2).set()
        with hold_autojump():
            e = await wait_for(r1.client, "k", Status.FAILED, limit=30)
    assert threads.starts == [("k", 1), ("k", 2)]
    assert threads.most == 1
    assert e.last_error == (
        "TimeoutError: task 'sync.slow' (entry 'k', attempt 2) timed out after 0.5 s"
    )


async def test_an_async_timeout_says_what_timed_out() -> None:
    tasks = TaskRegistry()

    @tasks.task("slow", timeout=2.5)
    async def slow() -> None:
        await anyio.sleep(100)

    async with StoreSession(MemoryStore(), tasks, worker=True, on_error=lambda e, x: None) as r:
        await r.client.defer(slow, key="s")
        e = await wait_for(r.client, "s", Status.FAILED)
    assert e.last_error == "TimeoutError: task 'slow' (entry 's', attempt 1) timed out after 2.5 s"


async def test_shutdown_waits_for_a_sync_task_and_renews_its_lease(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = TaskRegistry()
    threads = Threads()

    @tasks.task("sync.slow", lease=1.5)
    def slow() -> None:
        threads.body()

    store = MemoryStore()
    left = anyio.Event()

    async def first_worker() -> None:
        async with StoreSession(store, tasks, worker=True, grace=0.5, owner="w1") as r1:
            await r1.client.defer(slow, key="k")
            await wait_started(threads)
        left.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(first_worker)
        with hold_autojump(), anyio.fail_after(30):
            while not threads.starts:
                await anyio.sleep(0.01)
        async with StoreSession(store, tasks, worker=True, owner="w2"):
            # Far past w1's grace and a few leases: w1 waits for its thread and
            # keeps the entry leased, so w2 never runs it.
            await anyio.sleep(4)
            assert not left.is_set()
            e = await store.get("k")
            assert e is not None
            assert (e.status, e.deliveries) == (Status.RUNNING, 1)
            assert any(
                "'sync.slow' (entry 'k') still runs in a thread" in m for m in caplog.messages
            )
            threads.gate(1).set()
            with hold_autojump(), anyio.fail_after(30):
                await left.wait()
            # The thread's outcome is recorded: done, not released for a re-run.
            e = await store.get("k")
            assert e is not None
            assert e.status is Status.COMPLETED
            await anyio.sleep(3)
    assert threads.starts == [("k", 1)]


class FlakyStore(MemoryStore):
    """A MemoryStore that raises ConnectionError from the calls named in ``down``
    while the virtual clock is before ``until``."""

    def __init__(self) -> None:
        super().__init__()
        self.until = -1.0
        self.down: set[str] = set()
        self.failures = 0

    def outage(self, seconds: float, *calls: str) -> None:
        self.until = anyio.current_time() + seconds
        self.down = set(calls) or {
            "claim",
            "head",
            "time",
            "extend",
            "finish_many",
            "wait_changed",
            "aborts",
            "wait_aborted",
        }

    def _check(self, call: str) -> None:
        if call in self.down and anyio.current_time() < self.until:
            self.failures += 1
            raise ConnectionError("Unable to establish a connection to 127.0.0.1:6379")

    async def claim(self, owner: str, limit: int) -> Any:
        self._check("claim")
        return await super().claim(owner, limit)

    async def head(self) -> Any:
        self._check("head")
        return await super().head()

    async def time(self) -> float:
        self._check("time")
        return await super().time()

    async def extend(self, claims: Any) -> list[bool]:
        self._check("extend")
        return await super().extend(claims)

    async def finish_many(self, items: Any) -> list[bool]:
        self._check("finish_many")
        return await super().finish_many(items)

    async def finish_and_claim(self, items: Any, owner: str, limit: int) -> Any:
        self._check("finish_many")
        self._check("claim")
        return await super().finish_and_claim(items, owner, limit)

    async def wait_changed(self, timeout: float) -> None:
        self._check("wait_changed")
        await super().wait_changed(timeout)

    async def aborts(self, claims: Any) -> list[bool]:
        self._check("aborts")
        return await super().aborts(claims)

    async def wait_aborted(self, timeout: float) -> None:
        self._check("wait_aborted")
        await super().wait_aborted(timeout)


async def test_a_thread_outcome_gets_its_own_time_to_be_recorded_after_the_grace() -> None:
    """Leaving gives each outcome STOP_CAP from when it is ready: a sync task's
    thread that returns long after the grace still has its outcome recorded
    through a short outage (not given up at once, and not run again)."""
    tasks = TaskRegistry()
    threads = Threads()

    @tasks.task("sync.slow", lease=6)
    def slow() -> None:
        threads.body()

    store = FlakyStore()
    left = anyio.Event()

    async def first_worker() -> None:
        async with StoreSession(store, tasks, worker=True, grace=0, owner="w1") as r1:
            await r1.client.defer(slow, key="k")
            await wait_started(threads)
        left.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(first_worker)
        with hold_autojump(), anyio.fail_after(30):
            while not threads.starts:
                await anyio.sleep(0.01)
        await anyio.sleep(STOP_CAP + 1)  # past the grace's end + STOP_CAP
        assert not left.is_set()
        store.outage(2, "finish_many")  # shorter than STOP_CAP and than the lease left
        threads.gate(1).set()
        with hold_autojump(), anyio.fail_after(30):
            await left.wait()
    e = await store.get("k")
    assert e is not None
    assert (e.status, e.deliveries) == (Status.COMPLETED, 1)
    assert store.failures >= 1
    assert threads.starts == [("k", 1)]


async def test_a_worker_resumes_within_the_backoff_cap_after_a_long_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = TaskRegistry()
    runs: list[float] = []

    @tasks.task("t")
    async def t() -> None:
        runs.append(anyio.current_time())

    store = FlakyStore()
    async with StoreSession(store, tasks, worker=True) as r:
        await r.client.defer(t, key="k", delay=5)  # due during the outage
        await anyio.sleep(1)
        store.outage(41)
        back = store.until
        await wait_for(r.client, "k", Status.COMPLETED)
    assert store.failures > 5
    assert back <= runs[0] <= back + MAX_BACKOFF + 0.01
    store_lines = [r for r in caplog.records if r.name == "duetime.durable.store"]
    assert [r.levelname for r in store_lines] == ["WARNING", "WARNING"]
    assert "claim failed (ConnectionError: Unable to establish" in store_lines[0].getMessage()
    # From the first failed call (the loop slept until the entry was due, at 5 s)
    # to the first call that got through.
    assert "answers again after 37." in store_lines[1].getMessage()
    assert 37 <= store_lines[1].__dict__["duration"] <= 37 + MAX_BACKOFF
    assert all(r.exc_info is None for r in caplog.records if r.levelname != "DEBUG")


async def test_a_finish_is_retried_while_the_lease_holds_and_completes_once() -> None:
    tasks = TaskRegistry()
    runs: list[float] = []

    @tasks.task("t", lease=10)
    async def t() -> None:
        runs.append(anyio.current_time())
        store.outage(6, "finish_many", "time", "head", "claim")

    store = FlakyStore()
    async with StoreSession(store, tasks, worker=True) as r:
        await r.client.defer(t, key="k")
        e = await wait_for(r.client, "k", Status.COMPLETED)
        assert anyio.current_time() - runs[0] < 10  # within the lease
        await anyio.sleep(30)
    assert len(runs) == 1
    assert e.deliveries == 1


async def test_a_finish_is_given_up_when_the_lease_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = TaskRegistry()
    runs: list[float] = []

    @tasks.task("t", lease=4)
    async def t() -> None:
        runs.append(anyio.current_time())
        if len(runs) == 1:
            store.outage(6, "finish_many")

    store = FlakyStore()
    async with StoreSession(store, tasks, worker=True) as r:
        await r.client.defer(t, key="k")
        await wait_for(r.client, "k", Status.COMPLETED)
    # Given up at the lease's end, run again once the lease lapsed: at least once.
    assert len(runs) == 2
    assert runs[1] - runs[0] >= 4 - 1e-6  # the store's epoch clock resolves ~0.24 us
    assert any("before their leases ended" in m for m in caplog.messages)


async def test_leaving_gives_up_a_claim_and_a_close_that_hang(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = TaskRegistry()

    @tasks.task("t")
    async def t() -> None: ...

    class Hangs(MemoryStore):
        hang = False

        async def claim(self, owner: str, limit: int) -> Any:
            if self.hang:
                await anyio.sleep_forever()
            return await super().claim(owner, limit)

        async def __aexit__(self, *exc_info: object) -> None:
            await super().__aexit__(*exc_info)
            await anyio.sleep_forever()  # a client that never finishes closing

    store = Hangs()
    async with StoreSession(store, tasks, worker=True) as r:
        store.hang = True
        await r.client.defer(t, key="k")  # wakes the claim loop: its claim hangs
        await anyio.sleep(1)
        t0 = anyio.current_time()
    assert anyio.current_time() - t0 == pytest.approx(STOP_CAP + CLOSE_CAP)
    assert any("closing it took over" in m for m in caplog.messages)
    assert not [r for r in caplog.records if r.name == "duetime.durable.store"]  # no outage


async def test_a_store_that_fails_to_close_is_logged_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    class FailsClosing(MemoryStore):
        async def __aexit__(self, *exc_info: object) -> None:
            await super().__aexit__(*exc_info)
            raise ExceptionGroup("from a nursery", [anyio.ClosedResourceError()])

    async with StoreSession(FailsClosing(), TaskRegistry(), worker=True):
        pass
    assert any(
        "closing it failed (ExceptionGroup: from a nursery (1 sub-exception))" in m
        for m in caplog.messages
    )
