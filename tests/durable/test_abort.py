"""Aborting a durable run through the public front, on MemoryStore under virtual
time, both backends: ``Deferred.cancel(abort=True)`` and
``Scheduler.cancel_deferred(key, abort=True)``, from the process that runs the
task or from another; what awaiters get; an abort that races the finish."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import pytest

from duetime import CallbackCancelled, Retry, Scheduler, Status
from duetime.durable import ABORTED, MemoryStore, TaskRegistry, current_entry
from duetime.testing import hold_autojump
from tests.durable.waiting import wait_for

pytestmark = pytest.mark.anyio


def registry(log: list[str] | None = None) -> TaskRegistry:
    tasks = TaskRegistry()
    seen = log if log is not None else []

    @tasks.task("slow", retry=Retry(attempts=3, backoff=1))
    async def slow(seconds: float) -> str:
        seen.append("start")
        try:
            await anyio.sleep(seconds)
        except anyio.get_cancelled_exc_class():
            seen.append("cancelled")
            raise
        seen.append("end")
        return "done"

    @tasks.task("stubborn")
    async def stubborn() -> str:
        try:
            await anyio.sleep(100)
        except anyio.get_cancelled_exc_class():
            return "finished anyway"
        return "never"

    @tasks.task("fails", retry=Retry(attempts=3, backoff=1))
    async def fails(seconds: float) -> None:
        await anyio.sleep(seconds)
        raise ValueError("boom")

    @tasks.task("tick")
    async def tick() -> None:
        seen.append("tick")
        await anyio.sleep(5)

    return tasks


async def test_an_operator_aborts_a_run_in_another_process() -> None:
    log: list[str] = []
    store = MemoryStore()
    tasks = registry(log)
    async with (
        Scheduler(store=store, tasks=tasks) as worker,  # the process that runs it
        Scheduler(store=store, tasks=tasks, worker=False) as web,  # another process
    ):
        d = await web.defer("slow", 100.0, key="report-7")
        mine = worker.deferred_handle("report-7")
        results: list[BaseException] = []

        async def wait(h: Any) -> None:
            with pytest.raises(CallbackCancelled) as info:
                await h
            results.append(info.value)

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait, d)
            tg.start_soon(wait, mine)
            await anyio.sleep(10)
            t_abort = anyio.current_time()
            assert await web.deferred_handle("report-7").cancel(abort=True)
        assert anyio.current_time() == t_abort  # awaiters woke at once, no poll
        e = await web.deferred("report-7")
        await anyio.sleep(60)  # not retried
    assert log == ["start", "cancelled"]
    assert e is not None
    assert (e.status, e.last_error, e.attempt) == (Status.CANCELLED, ABORTED, 1)
    assert len(results) == 2
    assert all("'report-7' was aborted" in str(x) for x in results)


async def test_a_task_that_returns_from_its_cancellation_ends_cancelled() -> None:
    async with Scheduler(store=MemoryStore(), tasks=registry()) as s:
        d = await s.defer("stubborn", key="k")
        await anyio.sleep(1)
        assert await s.cancel_deferred("k", abort=True)
        with pytest.raises(CallbackCancelled, match="aborted"):
            await d
        e = await s.deferred("k")
    assert e is not None
    assert (e.status, e.result) == (Status.CANCELLED, None)


async def test_without_abort_a_running_entry_is_left_alone() -> None:
    async with Scheduler(store=MemoryStore(), tasks=registry()) as s:
        d = await s.defer("slow", 10.0, key="k")
        await anyio.sleep(1)
        assert not await s.cancel_deferred("k")  # 0.2's meaning
        assert not await d.cancel()
        assert await d == "done"
        assert not await d.cancel(abort=True)  # finished: nothing to abort


async def test_abort_of_a_pending_entry_deletes_it() -> None:
    async with Scheduler(store=MemoryStore(), tasks=registry(), worker=False) as s:
        d = await s.defer("slow", 1.0, key="k", delay=60)
        other = s.deferred_handle("k")
        assert await d.cancel(abort=True)
        with pytest.raises(CallbackCancelled, match="was cancelled"):
            await d
        with pytest.raises(LookupError):
            await other
        assert await s.deferred("k") is None
        assert not await s.cancel_deferred("k", abort=True)


async def test_abort_must_be_a_bool() -> None:
    async with Scheduler(store=MemoryStore(), tasks=registry(), worker=False) as s:
        d = await s.defer("slow", 1.0, key="k", delay=60)
        with pytest.raises(TypeError, match="abort must be a bool"):
            await d.cancel(abort="yes")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="abort must be a bool"):
            await s.cancel_deferred("k", abort=1)  # type: ignore[arg-type]
        assert (await d.refresh()).status is Status.PENDING


async def test_a_sync_task_that_polls_abort_requested_ends_cancelled() -> None:
    tasks = TaskRegistry()
    started = threading.Event()
    polled: list[bool] = []

    @tasks.task("crunch")
    def crunch(n: int) -> int:
        started.set()
        total = 0
        deadline = time.monotonic() + 30  # real time; never reached when passing
        while time.monotonic() < deadline:
            if current_entry().abort_requested:
                polled.append(True)
                return total  # a partial result: discarded
            total += n
            time.sleep(0.005)
        return -1

    async with Scheduler(store=MemoryStore(), tasks=tasks) as s:
        d = await s.defer(crunch, 2, key="k")
        with hold_autojump(), anyio.fail_after(30):
            await anyio.to_thread.run_sync(started.wait)
            assert await d.cancel(abort=True)
            with pytest.raises(CallbackCancelled, match="aborted"):
                await d
        e = await s.deferred("k")
    assert polled == [True]
    assert e is not None
    assert (e.status, e.result, e.last_error) == (Status.CANCELLED, None, ABORTED)


async def test_abort_of_a_series_stops_it_and_aborts_its_running_occurrence() -> None:
    log: list[str] = []
    async with Scheduler(store=MemoryStore(), tasks=registry(log)) as s:
        series = await s.defer_every(10, "tick", key="s")
        with pytest.raises(TypeError, match="deferred"):
            await series
        await anyio.sleep(12)  # the second occurrence runs (10..15)
        assert log == ["tick", "tick"]
        assert await series.cancel(abort=True)
        e = await wait_for(s, "s", Status.CANCELLED)
        await anyio.sleep(100)
        assert not await series.cancel(abort=True)
    assert log == ["tick", "tick"]
    assert (e.last_error, e.occurrence) == (ABORTED, 1)


async def test_abort_of_a_series_between_occurrences_deletes_it() -> None:
    log: list[str] = []
    async with Scheduler(store=MemoryStore(), tasks=registry(log)) as s:
        series = await s.defer_every(10, "tick", key="s")
        await anyio.sleep(7)  # the first occurrence ran (0..5)
        assert await series.cancel(abort=True)
        await anyio.sleep(100)
        assert await s.deferred("s") is None
    assert log == ["tick"]


async def test_abort_of_an_entry_whose_worker_died_holding_it() -> None:
    log: list[str] = []
    store = MemoryStore(lease=30)
    tasks = registry(log)
    async with Scheduler(store=store, tasks=tasks, worker=False) as web:
        d = await web.defer("slow", 1.0, key="k")
        [_claim] = await store.claim("dead-worker", 1)  # it dies before it runs the task
        assert await d.cancel(abort=True)
        store.crash("dead-worker")
        async with Scheduler(store=store, tasks=tasks):  # a live worker claims next
            with pytest.raises(CallbackCancelled, match="aborted"):
                await d.result(timeout=60)
    assert log == []


class SlowFinish(MemoryStore):
    """A MemoryStore whose finishes take a second of (virtual) time on the way in:
    an abort can land between a run's end and its recorded outcome."""

    async def finish_many(self, items: Any) -> list[bool]:
        await anyio.sleep(1)
        return await super().finish_many(items)


@pytest.mark.parametrize("task", ["slow", "fails", "stubborn"])
@pytest.mark.parametrize("at", [0.0, 3.0, 4.999, 5.0, 5.001, 5.5, 6.0, 7.0])
@pytest.mark.parametrize("slow_finish", [False, True])
async def test_an_abort_racing_the_finish_has_one_outcome(
    task: str, at: float, slow_finish: bool
) -> None:
    """The task ends at 5 s (``stubborn`` never ends unless aborted; ``fails``
    raises and would be retried); the abort comes at ``at``.  Exactly one outcome:
    every awaiter, in either process, agrees with ``deferred(key)``."""
    store = SlowFinish() if slow_finish else MemoryStore()
    tasks = registry()
    args = () if task == "stubborn" else (5.0,)
    async with (
        Scheduler(store=store, tasks=tasks) as worker,
        Scheduler(store=store, tasks=tasks, worker=False) as web,
    ):
        d = await web.defer(task, *args, key="k")
        got: list[object] = []

        async def wait(h: Any) -> None:
            try:
                got.append(await h)
            except Exception as exc:
                got.append(type(exc))

        async with anyio.create_task_group() as tg:
            tg.start_soon(wait, d)
            tg.start_soon(wait, worker.deferred_handle("k"))
            await anyio.sleep(at)
            requested = await web.cancel_deferred("k", abort=True)
        e = await web.deferred("k")
        await anyio.sleep(30)  # past any retry: the outcome stays
        assert await web.deferred("k") == e
    expected: object
    if e is None:  # it was PENDING (not yet claimed, or between attempts): deleted
        assert requested
        expected = LookupError
    elif e.status is Status.COMPLETED:
        assert task == "slow"
        expected = "done"
    else:
        assert (e.status, e.last_error) == (Status.CANCELLED, ABORTED)
        assert requested
        expected = CallbackCancelled
    assert got == [expected, expected]
    ended = 5.0 + (1.0 if slow_finish else 0.0)  # when a run ending at 5 s is recorded
    if slow_finish and at == 5.5:  # requested while the run's outcome was on its way
        assert requested
        assert e is not None
        assert e.status is (Status.COMPLETED if task == "slow" else Status.CANCELLED)
    if task != "slow":
        assert e is None or e.status is Status.CANCELLED
    elif not 5.0 <= at <= ended:  # in between: either, but only one
        assert (e is not None and e.status is Status.COMPLETED) == (at > ended)


async def test_a_handle_whose_abort_came_too_late_gives_the_value() -> None:
    store = SlowFinish()
    async with Scheduler(store=store, tasks=registry()) as s:
        d = await s.defer("slow", 5.0, key="k")
        await anyio.sleep(5.5)  # the run ended; its outcome is on its way to the store
        assert await d.cancel(abort=True)  # still RUNNING in the store: requested
        assert await d == "done"  # the run completed: this handle agrees
        e = await s.deferred("k")
    assert e is not None
    assert e.status is Status.COMPLETED
