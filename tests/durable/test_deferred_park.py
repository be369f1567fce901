"""How durable awaiters wait, both backends: several waiters on one key, some
cancelled while they wait, and what 2,000 waiting awaiters cost."""

from __future__ import annotations

import gc
import tracemalloc
from typing import Any

import anyio
import pytest

from duetime import Deferred, Scheduler
from duetime.durable import TaskRegistry
from duetime.testing import MemoryStore

pytestmark = pytest.mark.anyio


def registry() -> TaskRegistry:
    tasks = TaskRegistry()

    @tasks.task("add")
    async def add(a: int, b: int) -> int:
        return a + b

    @tasks.task("never")
    async def never() -> None:
        return None

    return tasks


async def test_waiters_cancelled_on_a_key_leave_the_others_to_be_woken() -> None:
    async with Scheduler(store=MemoryStore(), tasks=registry()) as s:
        d = await s.defer("add", 1, 2, delay=10)
        other = s.deferred_handle(d.key)
        got: list[Any] = []
        caught: list[bool] = []

        async def patient(h: Deferred[Any]) -> None:
            got.append(await h)

        async def impatient(h: Deferred[Any], after: float) -> None:
            with anyio.move_on_after(after) as scope:
                await h
            caught.append(scope.cancelled_caught)

        async with anyio.create_task_group() as tg:
            tg.start_soon(impatient, d, 1)
            tg.start_soon(patient, d)
            tg.start_soon(impatient, other, 2)
            tg.start_soon(patient, other)
            await anyio.sleep(5)
            # Both cancelled, the key still awaited by the other two.
            assert caught == [True, True]
            assert s._client().watcher().watched == 1
            # One more, with a deadline after the finish: woken, not cancelled.
            tg.start_soon(impatient, d, 20)
        assert got == [3, 3]
        assert caught == [True, True, False]
        assert s._client().watcher().watched == 0
        # A later await of the finished key reads it again.
        assert await other == 3


async def _traced(n: int, start: Any) -> int:
    """Traced bytes while n tasks started by ``start(tg)`` all wait."""
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    async with anyio.create_task_group() as tg:
        await start(tg)
        await anyio.wait_all_tasks_blocked()
        await anyio.sleep(1)
        gc.collect()
        used = tracemalloc.get_traced_memory()[0] - before
        tg.cancel_scope.cancel()
    return used


async def test_a_waiting_awaiter_costs_less_than_an_event_per_key() -> None:
    n = 2000
    async with Scheduler(store=MemoryStore(), tasks=registry(), worker=False) as s:
        handles = await s.defer_many("never", [() for _ in range(n)], delay=3600)
        release = anyio.Event()

        async def bare() -> None:
            await release.wait()

        async def start_bare(tg: anyio.abc.TaskGroup) -> None:
            for _ in range(n):
                tg.start_soon(bare)

        async def await_it(h: Deferred[None]) -> None:
            await h

        async def start_awaiters(tg: anyio.abc.TaskGroup) -> None:
            for h in handles:
                tg.start_soon(await_it, h)

        tracemalloc.start()
        try:
            bare_bytes = await _traced(n, start_bare)
            awaiting_bytes = await _traced(n, start_awaiters)
        finally:
            tracemalloc.stop()
    # An awaiter adds its coroutine frame and a small slot to a waiting task: an
    # Event per key (an asyncio.Event's deque alone is 760 bytes) would not fit.
    assert (awaiting_bytes - bare_bytes) / n < 400
