"""A bounded shutdown by default; cancel() tells the truth; awaiting is a checkpoint."""

from __future__ import annotations

import tracemalloc

import anyio
import pytest

import duetime
from duetime import Scheduler, Status
from tests.support import memory_held

pytestmark = pytest.mark.anyio


async def test_grace_is_thirty_seconds_by_default() -> None:
    async def forever() -> None:
        await anyio.sleep(10_000)

    async with Scheduler() as s:
        h = s.call_soon(forever)
        await anyio.sleep(1)
        exit_started = anyio.current_time()
    assert anyio.current_time() - exit_started == pytest.approx(30, abs=0.01)
    assert h.status is Status.CANCELLED


async def test_drain_does_not_wait_for_what_is_due_after_grace() -> None:
    started = anyio.current_time()
    async with Scheduler(on_exit="drain", grace=5) as s:
        soon = s.call_later(2, int, 1)
        late = s.call_later(3600, int, 2)
    assert anyio.current_time() - started == pytest.approx(2, abs=0.01)
    assert soon.status is Status.COMPLETED
    assert late.status is Status.CANCELLED


async def test_a_callback_started_during_the_drain_gets_its_own_grace() -> None:
    async def work() -> str:
        await anyio.sleep(0.5)
        return "done"

    async with Scheduler(on_exit="drain", grace=0.5) as s:
        h = s.call_later(0.3, work)  # starts 0.3 s into a 0.5 s grace, runs 0.5 s
    assert await h == "done"


async def test_grace_none_waits_as_long_as_it_takes() -> None:
    started = anyio.current_time()
    async with Scheduler(on_exit="drain", grace=None) as s:
        late = s.call_later(3600, int, 2)
    assert late.status is Status.COMPLETED
    assert anyio.current_time() - started == pytest.approx(3600, abs=0.01)


async def test_cancel_true_always_ends_cancelled() -> None:
    async def cancels_itself() -> bool:
        return duetime.current_run().handle.cancel()  # no checkpoint afterwards

    def sync_cancels_itself() -> bool:
        return duetime.current_run().handle.cancel()

    async with Scheduler() as s:
        h = s.call_soon(cancels_itself)
        await anyio.sleep(1)
        assert h.status is Status.CANCELLED
        # A sync callback on the loop cannot be interrupted: cancel() says False
        # and it completes, whether it runs inline or in a runner (awaited).
        inline = s.call_soon(sync_cancels_itself)
        await anyio.sleep(1)
        assert (inline.status, inline.return_value) == (Status.COMPLETED, False)
        awaited = s.call_soon(sync_cancels_itself)
        assert await awaited is False
        assert awaited.status is Status.COMPLETED


async def test_await_on_a_finished_handle_is_a_checkpoint() -> None:
    async with Scheduler() as s:
        h = s.call_soon(int, 5)
        await h
        with anyio.CancelScope() as scope:
            scope.cancel()
            await h  # a checkpoint: the cancelled scope stops it here
            pytest.fail("await on a finished handle did not check for cancellation")
        assert scope.cancelled_caught
        ran: list[int] = []
        s2 = s.call_soon(ran.append, 1)
        await h  # and it lets other tasks (the timer loop) run
        await anyio.lowlevel.cancel_shielded_checkpoint()
        await s2
        assert ran == [1]


async def test_a_big_cancel_storm_is_compacted_a_slice_at_a_time() -> None:
    async with Scheduler() as s:
        with memory_held() as held:
            base = tracemalloc.get_traced_memory()[0] - held()
            handles = [s.call_later(1000 + i * 1e-3, int, i) for i in range(120_000)]
            full = held()
            for i, h in enumerate(handles):
                if i % 4:
                    h.cancel()  # three in four, spread all over the heap
            del h
            handles = handles[::4]
            # Not inside cancel(): every cancel stayed O(1).  (Each cancel drops
            # the callback's arguments at once; the heap tuples stay for now.)
            assert held() > full * 0.7
            # The timer loop compacts a slice per pass, never in one long stall:
            # other tasks run between its passes, before the memory is back.
            for _ in range(2):
                await anyio.lowlevel.checkpoint()
            assert tracemalloc.get_traced_memory()[0] - base > full * 0.7
            await anyio.sleep(1)
            assert held() < full * 0.4  # the memory came back
        assert s.statistics().pending == 30_000
        assert await s.call_later(2000, int, 3) == 3
