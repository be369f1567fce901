"""A BaseException from a pool handler, a done-callback or on_error ends the block as itself.

The edges of the core: the item's handle ends FAILED with it (awaiters and done-callbacks
released), every other item ends in a final state, and KeyboardInterrupt/SystemExit
leave ``async with WorkerPool(...)`` as themselves, never wrapped in a group.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from duetime import Handle, Status, WorkerPool, process_batch

pytestmark = pytest.mark.anyio


class Custom(BaseException):
    pass


KINDS: list[Callable[[], BaseException]] = [
    lambda: KeyboardInterrupt("ctrl-c"),
    lambda: SystemExit(3),
    lambda: GeneratorExit("gone"),
    lambda: Custom("mine"),
]
IDS = ["KeyboardInterrupt", "SystemExit", "GeneratorExit", "custom"]
FINAL = {Status.COMPLETED, Status.FAILED, Status.CANCELLED, Status.EXPIRED}


@pytest.mark.parametrize("make", KINDS, ids=IDS)
@pytest.mark.parametrize("kind", ["async", "sync"])
async def test_a_handler_base_exception_fails_its_item_and_leaves_as_itself(
    make: Callable[[], BaseException], kind: str
) -> None:
    exc = make()

    async def async_handler(item: int) -> int:
        await anyio.sleep(1)
        if item == 1:
            raise exc
        return item

    def sync_handler(item: int) -> int:
        if item == 1:
            raise exc
        return item

    seen_by_outsider: list[Status] = []
    done_callback_saw: list[Status] = []
    handles: list[Handle[int]] = []
    async with anyio.create_task_group() as outer:  # an awaiter outside the block
        with pytest.raises(type(exc)) as caught:
            pool: WorkerPool[int, int]
            if kind == "async":
                pool = WorkerPool(async_handler, workers=2)
            else:
                pool = WorkerPool(sync_handler, workers=1)
            async with pool:
                handles.extend(pool.submit_nowait(i) for i in range(6))
                victim = handles[1]
                victim.add_done_callback(lambda h: done_callback_saw.append(h.status))

                async def outsider() -> None:
                    await victim.wait()
                    seen_by_outsider.append(victim.status)

                outer.start_soon(outsider)
                await anyio.sleep(100)
                pytest.fail("the body should have been cancelled by the handler's exception")
    assert caught.value is exc  # as itself, never wrapped in a group
    assert victim.status is Status.FAILED
    assert victim.exception is exc
    assert seen_by_outsider == [Status.FAILED]  # the awaiter was released
    assert done_callback_saw == [Status.FAILED]
    assert all(h.status in FINAL for h in handles)
    assert {h.status for h in handles[2:]} <= {Status.CANCELLED, Status.COMPLETED}
    assert any(h.status is Status.CANCELLED for h in handles)
    stats = pool.statistics()
    assert (stats.queued, stats.running, stats.failed) == (0, 0, 1)
    assert stats.completed + stats.failed + stats.cancelled + stats.expired == 6


@pytest.mark.parametrize("make", KINDS[:2], ids=IDS[:2])
async def test_a_base_exception_during_the_drain_leaves_as_itself(
    make: Callable[[], BaseException],
) -> None:
    # The body has ended; the exit is waiting for the queue to drain.
    exc = make()

    async def handler(item: int) -> int:
        await anyio.sleep(1)
        if item == 3:
            raise exc
        return item

    with pytest.raises(type(exc)) as caught:
        async with WorkerPool(handler, workers=1) as pool:
            handles = [pool.submit_nowait(i) for i in range(6)]
    assert caught.value is exc
    statuses = [h.status for h in handles]
    assert statuses == [Status.COMPLETED] * 3 + [Status.FAILED] + [Status.CANCELLED] * 2


async def test_a_done_callback_base_exception_leaves_as_itself() -> None:
    async def handler(item: int) -> int:
        await anyio.sleep(1)
        return item

    def boom(h: Handle[int]) -> None:
        raise KeyboardInterrupt("from a done-callback")

    calls: list[int] = []
    with pytest.raises(KeyboardInterrupt, match="from a done-callback"):
        async with WorkerPool(handler) as pool:
            first = await pool.submit(0)
            first.add_done_callback(boom)
            first.add_done_callback(lambda h: calls.append(1))
            later = await pool.submit(1)
            await anyio.sleep(100)
    assert first.status is Status.COMPLETED
    assert calls == [1]  # every done-callback ran
    assert later.status is Status.CANCELLED


async def test_on_error_raising_a_base_exception_leaves_as_itself() -> None:
    async def handler(item: int) -> int:
        await anyio.sleep(1)
        raise ValueError(item)

    def on_error(h: Handle[Any], exc: BaseException) -> None:
        raise SystemExit(7)

    with pytest.raises(SystemExit) as caught:
        async with WorkerPool(handler, on_error=on_error) as pool:
            # Its failure is unobserved, and reported (to on_error) once the
            # handle is dropped: here at once.
            await pool.submit(0)
            later = await pool.submit(1)
            await anyio.sleep(100)
    assert caught.value.code == 7
    assert later.status is Status.CANCELLED


async def test_the_event_loop_survives_and_the_next_pool_works() -> None:
    # On asyncio a KeyboardInterrupt escaping a task stops the event loop.
    async def handler(item: int) -> int:
        await anyio.sleep(0.1)
        if item == 0:
            raise KeyboardInterrupt
        return item * 2

    for _ in range(3):
        with pytest.raises(KeyboardInterrupt):
            async with WorkerPool(handler, workers=3) as pool:
                for i in range(5):
                    await pool.submit(i)
    async with WorkerPool(handler) as pool:
        h = await pool.submit(4)
    assert await h == 8


@pytest.mark.parametrize("workers", [1, 3])
async def test_process_batch_lets_keyboard_interrupt_leave_as_itself(workers: int) -> None:
    async def handler(item: int) -> int:
        await anyio.sleep(0.1)
        if item == 4:
            raise KeyboardInterrupt("stop the batch")
        return item

    with pytest.raises(KeyboardInterrupt, match="stop the batch"):
        await process_batch(list(range(10)), handler, workers=workers)
