"""Scheduler(store=, tasks=, worker=): the durable methods, on virtual time, both backends."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

import duetime
from duetime import Cron, Retry, Scheduler, Status
from duetime.durable import TaskRegistry, current_entry
from duetime.testing import MemoryStore
from tests.durable.waiting import wait_for

pytestmark = pytest.mark.anyio


async def test_defer_runs_a_registered_task_beside_call_later() -> None:
    tasks = TaskRegistry()
    seen: list[tuple[int, str, float]] = []

    @tasks.task("add")
    async def add(a: int, b: int) -> None:
        seen.append((a + b, current_entry().key, anyio.current_time()))

    async with Scheduler(store=MemoryStore(), tasks=tasks) as s:
        t0 = anyio.current_time()
        h = s.call_later(1, lambda: "in memory")
        d = await s.defer(add, 1, 2, delay=5, key="k")
        e = d.entry
        assert e is not None
        assert (d.key, d.task, e.args, e.status) == ("k", "add", (1, 2), Status.PENDING)
        assert await h == "in memory"
        await wait_for(s, "k", Status.COMPLETED)
        # The store's entries are not the Scheduler's callbacks.
        st = s.statistics()
        assert (st.pending, st.completed) == (0, 1)
    assert seen[0][:2] == (3, "k")
    assert seen[0][2] - t0 == pytest.approx(5.0, abs=1e-6)


async def test_without_a_store_the_durable_methods_raise_runtime_error() -> None:
    async with Scheduler() as s:
        with pytest.raises(RuntimeError, match="no durable store"):
            await s.defer("x")
        with pytest.raises(RuntimeError, match="no durable store"):
            await s.defer_many("x", [()])
        with pytest.raises(RuntimeError, match="no durable store"):
            await s.defer_every(10, "x", key="k")
        with pytest.raises(RuntimeError, match="no durable store"):
            await s.cancel_deferred("k")
        with pytest.raises(RuntimeError, match="no durable store"):
            await s.deferred("k")
        with pytest.raises(RuntimeError, match="no durable store"):
            await s.dead_letters()


def test_bad_durable_arguments_fail_at_construction() -> None:
    with pytest.raises(TypeError, match="go together"):
        Scheduler(store=MemoryStore())
    with pytest.raises(TypeError, match="go together"):
        Scheduler(tasks=TaskRegistry())
    with pytest.raises(TypeError, match="worker"):
        Scheduler(store=MemoryStore(), tasks=TaskRegistry(), worker="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="Store protocol"):
        Scheduler(store=object(), tasks=TaskRegistry())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="TaskRegistry"):
        Scheduler(store=MemoryStore(), tasks={})  # type: ignore[arg-type]


async def test_durable_methods_outside_the_block_raise_scheduler_closed() -> None:
    tasks = TaskRegistry()

    @tasks.task("t")
    async def t() -> None: ...

    s = Scheduler(store=MemoryStore(), tasks=tasks)
    with pytest.raises(duetime.SchedulerClosed):
        await s.defer(t)
    async with s:
        pass
    with pytest.raises(duetime.SchedulerClosed):
        await s.defer(t)


async def test_a_producer_with_worker_false_defers_and_a_worker_runs() -> None:
    tasks = TaskRegistry()
    runs: list[str] = []

    @tasks.task("job")
    async def job(name: str) -> None:
        runs.append(name)

    store = MemoryStore()
    async with Scheduler(store=store, tasks=tasks, worker=False) as web:
        await web.defer(job, "a", key="a")
        await web.defer_many(job, [("b",), ("c",)], keys=["b", "c"])
        await anyio.sleep(10)
        assert runs == []
        assert [e.key for e in await web.deferred_entries(status=Status.PENDING)] == [
            "a",
            "b",
            "c",
        ]
    async with Scheduler(store=store, tasks=tasks) as w:
        await wait_for(w, "c", Status.COMPLETED)
    assert sorted(runs) == ["a", "b", "c"]


@pytest.mark.parametrize(("max_concurrency", "expected"), [(3, 3), (None, 16)])
async def test_durable_work_runs_under_max_concurrency(
    max_concurrency: int | None, expected: int
) -> None:
    tasks = TaskRegistry()
    now = 0
    peak = 0

    @tasks.task("slow")
    async def slow(i: int) -> None:
        nonlocal now, peak
        now += 1
        peak = max(peak, now)
        await anyio.sleep(1)
        now -= 1

    async with Scheduler(store=MemoryStore(), tasks=tasks, max_concurrency=max_concurrency) as s:
        entries = await s.defer_many(slow, [(i,) for i in range(40)])
        for e in entries:
            await wait_for(s, e.key, Status.COMPLETED)
    assert peak == expected


async def test_leaving_gives_running_durable_tasks_the_schedulers_grace() -> None:
    tasks = TaskRegistry()
    finished: list[str] = []

    @tasks.task("short")
    async def short() -> None:
        await anyio.sleep(3)
        finished.append("short")

    @tasks.task("long")
    async def long() -> None:
        await anyio.sleep(100)
        finished.append("long")

    store = MemoryStore()
    async with Scheduler(store=store, tasks=tasks, grace=5) as s:
        await s.defer(short, key="s")
        await s.defer(long, key="l")
        await anyio.sleep(1)
        t0 = anyio.current_time()
    # Grace is one budget for durable tasks and callbacks alike.
    assert anyio.current_time() - t0 == pytest.approx(5.0, abs=1e-6)
    assert finished == ["short"]
    e = await store.get("l")
    assert e is not None
    assert (e.status, e.deliveries) == (Status.PENDING, 0)  # released, not left to lapse


async def test_defer_every_with_a_cron_runs_on_its_wall_clock_points() -> None:
    tasks = TaskRegistry()
    runs: list[str] = []

    @tasks.task("quarter")
    async def quarter() -> None:
        runs.append(current_entry().due.strftime("%H:%M"))

    store = MemoryStore()  # its clock starts at 2024-01-01T00:00Z
    async with Scheduler(store=store, tasks=tasks) as s:
        await anyio.sleep(60)
        e = (await s.defer_every(Cron("*/15 * * * *"), quarter, key="q")).entry
        assert e is not None
        assert e.due == datetime(2024, 1, 1, 0, 15, tzinfo=UTC)
        with anyio.fail_after(3600):
            while len(runs) < 3:
                await anyio.sleep(1)
        assert await s.cancel_deferred("q")
    assert runs == ["00:15", "00:30", "00:45"]


async def test_defer_every_with_an_interval() -> None:
    tasks = TaskRegistry()
    runs: list[float] = []

    @tasks.task("tick")
    async def tick() -> None:
        runs.append(current_entry().due.timestamp())

    async with Scheduler(store=MemoryStore(), tasks=tasks) as s:
        e = (await s.defer_every(timedelta(seconds=10), tick, key="t")).entry
        assert e is not None
        await anyio.sleep(25)
    base = e.due.timestamp()
    assert [r - base for r in runs] == [0.0, 10.0, 20.0]


async def test_failures_are_logged_with_the_key_and_dead_letters_are_retryable(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = TaskRegistry()
    calls: list[int] = []
    handles: list[Any] = []

    @tasks.task("flaky", retry=Retry(attempts=2, backoff=1.0, jitter=0))
    async def flaky() -> None:
        calls.append(current_entry().attempt)
        if len(calls) < 3:
            raise ValueError("boom")

    caplog.set_level(logging.ERROR, logger="duetime")
    async with Scheduler(
        store=MemoryStore(), tasks=tasks, on_error=lambda h, exc: handles.append(h)
    ) as s:
        await s.defer(flaky, key="f")
        dead = await wait_for(s, "f", Status.FAILED)
        assert dead.last_error == "ValueError: boom"
        assert [e.key for e in await s.dead_letters()] == ["f"]
        assert any("'f'" in r.getMessage() for r in caplog.records if r.name == "duetime.durable")
        assert handles == []  # on_error takes Handles: durable failures are logged instead
        assert await s.retry_deferred("f")
        await wait_for(s, "f", Status.COMPLETED)
        assert await s.delete_deferred("f")
        assert await s.deferred("f") is None
    assert calls == [1, 2, 1]


async def test_a_store_that_cannot_open_leaves_the_scheduler_closed(tmp_path: Path) -> None:
    from duetime import SQLiteStore

    path = tmp_path / "notes.txt"
    path.write_text("not a database, and long enough to have a header " * 3)
    s = Scheduler(store=SQLiteStore(path), tasks=TaskRegistry())
    with pytest.raises(ValueError, match="not a SQLite database"):
        async with s:
            pass  # pragma: no cover
    assert s.closed
    assert path.read_text().startswith("not a database")
