"""Deferred handles on MemoryStore under virtual time, both backends: outcomes,
waiting, timeouts, handles by key, series, and the one watcher."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

import anyio
import pytest

from duetime import (
    CallbackCancelled,
    Deferred,
    DeferredFailed,
    Retry,
    Scheduler,
    SchedulerClosed,
    Status,
)
from duetime.durable import TaskRegistry
from duetime.testing import MemoryStore

pytestmark = pytest.mark.anyio


def registry() -> TaskRegistry:
    tasks = TaskRegistry()

    @tasks.task("add")
    async def add(a: int, b: int) -> int:
        await anyio.sleep(2)
        return a + b

    @tasks.task("when")
    def when(d: str) -> date:  # a sync task, in a thread
        return date.fromisoformat(d)

    @tasks.task("none")
    async def none() -> None:
        return None

    @tasks.task("boom", retry=Retry(attempts=2, backoff=1))
    async def boom() -> None:
        raise KeyError("missing")

    @tasks.task("odd")
    async def odd() -> object:
        return {1, 2}  # a set: the codec does not carry it

    @tasks.task("big")
    async def big() -> str:
        return "x" * 70_000

    return tasks


async def test_await_gives_the_return_value_through_the_codec() -> None:
    async with Scheduler(store=MemoryStore(), tasks=registry()) as s:
        d = await s.defer("add", 1, 2, key="k")
        assert isinstance(d, Deferred)
        assert (d.key, d.task) == ("k", "add")
        assert d.entry is not None
        assert d.entry.status is Status.PENDING
        t0 = anyio.current_time()
        assert await d == 3
        assert anyio.current_time() - t0 == pytest.approx(2.0, abs=0.01)  # woken at once
        assert await d.result() == 3  # again: read from the tombstone
        assert (await d.refresh()).status is Status.COMPLETED
        assert await (await s.defer("when", "2026-12-01")) == date(2026, 12, 1)
        assert await (await s.defer("none")) is None


async def test_a_handle_by_key_reads_nothing_until_awaited() -> None:
    store = MemoryStore()
    async with Scheduler(store=store, tasks=registry()) as s:
        h = s.deferred_handle("later")
        assert (h.key, h.task, h.entry) == ("later", None, None)
        with pytest.raises(LookupError, match="never stored"):
            await h
        with pytest.raises(LookupError):
            await h.refresh()
        await s.defer("add", 2, 3, key="later")
        assert await h == 5
        assert h.task == "add"
        with pytest.raises(TypeError):
            s.deferred_handle(3)  # type: ignore[arg-type]


async def test_a_failure_is_described_not_rebuilt() -> None:
    async with Scheduler(store=MemoryStore(), tasks=registry()) as s:
        d = await s.defer("boom", key="b")
        with pytest.raises(DeferredFailed) as info:
            await d
        exc = info.value
        assert exc.key == "b"
        assert exc.error_type == "KeyError"
        assert "missing" in exc.message
        assert "raise KeyError" in exc.traceback
        assert "b" in str(exc)


async def test_unknown_task_fails_with_a_description() -> None:
    store = MemoryStore()
    async with Scheduler(store=store, tasks=registry(), worker=False) as web:
        d = await web.defer("add", 1, 1, key="u")
    async with Scheduler(store=store, tasks=TaskRegistry()) as worker:
        with pytest.raises(DeferredFailed) as info:
            await worker.deferred_handle("u")
    assert info.value.error_type == "LookupError"
    assert d.key == "u"


async def test_a_timeout_changes_nothing() -> None:
    async with Scheduler(store=MemoryStore(), tasks=registry()) as s:
        d = await s.defer("add", 1, 2, delay=60)
        with pytest.raises(TimeoutError):
            await d.result(timeout=5)
        assert (await d.refresh()).status is Status.PENDING
        assert await d.result(timeout=120) == 3
        with pytest.raises(ValueError, match="timeout"):
            await d.result(timeout=-1)


async def test_awaiting_is_cancellable() -> None:
    async with Scheduler(store=MemoryStore(), tasks=registry()) as s:
        d = await s.defer("add", 1, 2, delay=60)
        with anyio.move_on_after(1) as scope:
            await d
        assert scope.cancelled_caught
        assert await d == 3


async def test_cancel_deletes_and_awaiting_raises_cancelled() -> None:
    async with Scheduler(store=MemoryStore(), tasks=registry()) as s:
        d = await s.defer("add", 1, 2, delay=60, key="c")
        other = s.deferred_handle("c")
        async with anyio.create_task_group() as tg:
            errors: list[BaseException] = []

            async def wait_other() -> None:
                try:
                    await other
                except LookupError as exc:
                    errors.append(exc)

            tg.start_soon(wait_other)
            await anyio.sleep(1)
            assert await d.cancel()
        with pytest.raises(CallbackCancelled):
            await d
        assert len(errors) == 1  # another handle: the key is gone


async def test_a_value_the_codec_cannot_carry_completes_and_warns(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="duetime.durable")
    async with Scheduler(store=MemoryStore(), tasks=registry()) as s:
        odd = await s.defer("odd", key="odd")
        with pytest.raises(TypeError, match=r"'odd'.*not kept.*set"):
            await odd
        assert (await odd.refresh()).status is Status.COMPLETED
        big = await s.defer("big", key="big")
        with pytest.raises(TypeError, match=r"'big'.*65536"):
            await big
    warnings = [r for r in caplog.records if "return value is not kept" in r.getMessage()]
    assert len(warnings) == 2


async def test_a_result_expires_with_result_ttl_and_the_tombstone_with_dedupe_ttl() -> None:
    store = MemoryStore(dedupe_ttl=100, result_ttl=10)
    async with Scheduler(store=store, tasks=registry()) as s:
        d = await s.defer("add", 1, 2)
        assert await d == 3
        await anyio.sleep(9)
        assert await d == 3
        await anyio.sleep(2)
        with pytest.raises(LookupError, match="result_ttl"):
            await d
        await anyio.sleep(100)
        with pytest.raises(LookupError, match="never stored"):
            await d
    with pytest.raises(ValueError, match="dedupe_ttl"):
        MemoryStore(dedupe_ttl=10, result_ttl=11)


async def test_a_series_handle_says_to_use_deferred() -> None:
    async with Scheduler(store=MemoryStore(), tasks=registry()) as s:
        series = await s.defer_every(10, "none", key="tick")
        with pytest.raises(TypeError, match=r"deferred\(key\)"):
            await series
        with pytest.raises(TypeError, match=r"deferred\(key\)"):
            await s.deferred_handle("tick")


async def test_many_awaiters_share_one_watcher() -> None:
    async with Scheduler(store=MemoryStore(), tasks=registry()) as s:
        handles = await s.defer_many("add", [(i, i) for i in range(300)])
        results: list[Any] = []
        async with anyio.create_task_group() as tg:
            for h in handles:

                async def one(h: Deferred[Any] = h) -> None:
                    results.append(await h)

                tg.start_soon(one)
            await anyio.sleep(0.5)
            watcher = s._client().watcher()
            assert watcher.watched == 300
        assert sorted(results) == [2 * i for i in range(300)]
        assert watcher.watched == 0


async def test_leaving_the_block_wakes_waiters_with_scheduler_closed() -> None:
    got: list[BaseException] = []
    async with (
        anyio.create_task_group() as tg,
        Scheduler(store=MemoryStore(), tasks=registry(), worker=False) as s,
    ):
        d = await s.defer("add", 1, 2)

        async def wait() -> None:
            try:
                await d
            except SchedulerClosed as exc:
                got.append(exc)

        tg.start_soon(wait)
        await anyio.sleep(1)
    assert len(got) == 1
    with pytest.raises(SchedulerClosed):
        await d


async def test_the_watcher_survives_a_store_outage(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryStore()
    real_get = store.get
    failing = [0]

    async def get(key: str) -> Any:
        if failing[0]:
            failing[0] -= 1
            raise OSError("connection reset")
        return await real_get(key)

    store.get = get  # type: ignore[method-assign]
    async with Scheduler(store=store, tasks=registry()) as s:
        d = await s.defer("add", 1, 2, delay=10)
        async with anyio.create_task_group() as tg:
            got: list[int] = []

            async def wait() -> None:
                got.append(await d)

            tg.start_soon(wait)
            await anyio.sleep(1)
            failing[0] = 3  # the watcher's next reads fail
        assert got == [3]
    assert any("reading the store failed" in r.getMessage() for r in caplog.records)
