"""call_* and Handle.cancel() from other threads (a FastAPI ``def`` endpoint's shape)."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

import duetime
from duetime import Scheduler, SchedulerClosed, Status
from duetime.testing import hold_autojump

pytestmark = pytest.mark.anyio


def add(a: int, b: int) -> int:
    return a + b


async def in_thread(fn: Any, *args: Any) -> Any:
    with hold_autojump():  # real work outside the loop: virtual time waits for it
        return await anyio.to_thread.run_sync(fn, *args)


async def test_call_later_from_a_worker_thread_schedules_and_fires() -> None:
    async with Scheduler() as s:
        h = await in_thread(lambda: s.call_later(0.1, add, 1, 2))
        assert await h == 3
        # The timer loop is not wedged: later entries still fire, from any side.
        assert await s.call_later(0.1, add, 2, 2) == 4
        h2 = await in_thread(lambda: s.call_soon(add, 3, 3))
        assert await h2 == 6
    stats = s.statistics()
    assert (stats.pending, stats.running, stats.completed) == (0, 0, 3)


async def test_calls_from_one_thread_keep_their_order() -> None:
    order: list[int] = []
    async with Scheduler() as s:

        def submit() -> list[duetime.Handle[None]]:
            return [s.call_soon(order.append, i) for i in range(200)]

        handles = await in_thread(submit)
        for h in handles:
            await h
    assert order == list(range(200))


async def test_many_threads_at_once_every_handle_ends() -> None:
    async with Scheduler() as s:
        results: list[duetime.Handle[int]] = []
        lock = threading.Lock()

        def burst(base: int) -> None:
            for i in range(100):
                h = s.call_later(0.01 * (i % 5), add, base, i)
                with lock:
                    results.append(h)

        async with anyio.create_task_group() as tg:
            for t in range(4):
                tg.start_soon(in_thread, burst, t * 1000)
        values = [await h for h in results]
    assert sorted(values) == sorted(t * 1000 + i for t in range(4) for i in range(100))
    assert s.statistics().completed == 400


async def test_cancel_from_a_thread_is_exact() -> None:
    async with Scheduler() as s:
        h = s.call_later(10, add, 1, 1)
        assert await in_thread(h.cancel) is True
        assert h.status is Status.CANCELLED
        assert await in_thread(h.cancel) is False
        done = s.call_soon(add, 1, 1)
        await done
        assert await in_thread(done.cancel) is False
        # A handle made in a thread, cancelled from that thread before the loop took it.
        h2 = await in_thread(lambda: (x := s.call_later(5, add, 0, 0), x.cancel())[0])
        assert h2.status is Status.CANCELLED
    stats = s.statistics()
    assert (stats.pending, stats.cancelled, stats.completed) == (0, 2, 1)


async def test_a_running_async_callback_cancelled_from_a_thread() -> None:
    async def slow() -> None:
        await anyio.sleep(100)

    async with Scheduler() as s:
        h = s.call_soon(slow)
        await anyio.sleep(1)
        assert h.status is Status.RUNNING
        assert await in_thread(h.cancel) is True
        await h.wait()
        assert h.status is Status.CANCELLED


async def test_from_a_thread_after_the_block_closed_raises_and_changes_nothing() -> None:
    async with Scheduler() as s:
        pass
    with pytest.raises(SchedulerClosed):
        await in_thread(lambda: s.call_later(1, add, 1, 1))
    assert s.statistics().pending == 0


async def test_call_every_and_options_from_a_thread() -> None:
    async with Scheduler() as s:
        r = await in_thread(lambda: s.call_every(1, add, 1, 1, max_runs=2))
        assert await r == 2
        h = await in_thread(lambda: s.call_later(0.1, add, 1, 1, name="named"))
        assert h.name == "named"
        assert await h == 2
        with pytest.raises(RuntimeError, match="inherit_deadline"):
            await in_thread(lambda: s.call_later(1, add, 1, 1, inherit_deadline=True))
        with pytest.raises(TypeError):  # bad input still raises at the call site
            await in_thread(lambda: s.call_later(1, 42))  # type: ignore[call-overload]
