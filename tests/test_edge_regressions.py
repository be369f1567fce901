"""Defects a hostile review found in the hardened core, each pinned on both backends."""

from __future__ import annotations

import contextlib
import contextvars
import gc
import threading
from typing import Any

import anyio
import pytest

import duetime
from duetime import Handle, Scheduler, Status, WorkerPool
from duetime.testing import hold_autojump

pytestmark = pytest.mark.anyio


def fail() -> None:
    raise ValueError("boom")


async def test_a_thread_callback_cut_off_by_its_timeout_or_a_cancel_leaves_the_rest_alone() -> None:
    release = threading.Event()

    def blocked() -> str:
        release.wait(5)
        return "late"

    async with Scheduler() as s:
        other = s.call_later(100, int, 1)
        with hold_autojump():  # real threads: virtual time flows at the real rate
            timed = s.call_soon(blocked, in_thread=True, timeout=0.1)
            await timed.wait()
            cancelled = s.call_soon(blocked, in_thread=True)
            await anyio.sleep(0.05)
            assert cancelled.cancel() is True
            await cancelled.wait()
            release.set()
        assert isinstance(timed.exception, TimeoutError)
        assert cancelled.status is Status.CANCELLED
        assert other.status is Status.PENDING  # the scheduler lives on
        assert await s.call_soon(int, 2) == 2


async def test_a_context_entered_elsewhere_fails_that_callback_only() -> None:
    ctx = contextvars.copy_context()
    entered = threading.Event()
    release = threading.Event()

    def hold_ctx() -> None:
        entered.set()
        release.wait(5)

    async with Scheduler() as s:
        other = s.call_later(100, int, 1)
        with hold_autojump():
            holder = s.call_soon(hold_ctx, in_thread=True, context=ctx)
            await anyio.to_thread.run_sync(entered.wait, 5)
            clash = s.call_soon(int, 3, context=ctx)
            await clash.wait()
            release.set()
            await holder
        assert isinstance(clash.exception, RuntimeError)  # "cannot enter context"
        assert other.status is Status.PENDING


async def test_a_done_callback_base_exception_while_exit_cancels_ends_every_handle() -> None:
    def interrupt(_h: Handle[Any]) -> None:
        raise KeyboardInterrupt

    handles: list[Handle[Any]] = []
    with pytest.raises(KeyboardInterrupt):
        async with Scheduler() as s:
            first = s.call_later(100, int, 0)
            first.add_done_callback(interrupt)
            handles += [first, *(s.call_later(100 + i, int, i) for i in range(3))]
    assert [h.status for h in handles] == [Status.CANCELLED] * 4
    assert s.statistics().pending == 0


async def test_an_awaiter_that_gave_up_does_not_hide_a_later_failure() -> None:
    reports: list[BaseException] = []
    async with Scheduler(on_error=lambda h, e: reports.append(e)) as s:
        h = s.call_later(1, fail)
        with anyio.move_on_after(0.1):
            await h  # gives up before the outcome
        await anyio.sleep(2)
        del h
        gc.collect()
        await anyio.sleep(0.1)
        assert [repr(e) for e in reports] == ["ValueError('boom')"]


async def test_unobserved_failures_are_reported_when_the_exit_is_cancelled() -> None:
    reports: list[BaseException] = []
    keep: list[Handle[None]] = []
    with anyio.move_on_after(1):
        async with Scheduler(
            on_exit="drain", grace=None, on_error=lambda h, e: reports.append(e)
        ) as s:
            keep.append(s.call_soon(fail))
            s.call_later(100, int, 0)  # holds the drain open until the outer cancel
    assert [repr(e) for e in reports] == ["ValueError('boom')"]


async def test_a_recurring_run_the_program_handles_is_not_reported() -> None:
    reports: list[BaseException] = []

    def tick() -> None:
        raise ValueError("handled by the program")

    async with Scheduler(on_error=lambda h, e: reports.append(e)) as s:
        r = s.call_every(1, tick, max_runs=1)
        await r
        assert r.last is not None
        with pytest.raises(ValueError, match="handled"):
            await r.last
    assert reports == []


async def test_a_recurring_run_nobody_looks_at_is_still_reported() -> None:
    reports: list[BaseException] = []

    def tick() -> None:
        raise ValueError("nobody looked")

    async with Scheduler(on_error=lambda h, e: reports.append(e)) as s:
        await s.call_every(1, tick, max_runs=3)
    assert [str(e) for e in reports] == ["nobody looked"] * 3


async def test_a_recurring_run_raising_keyboardinterrupt_is_not_also_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def tick() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        async with Scheduler() as s:
            s.call_every(1, tick)
            await anyio.sleep(5)
    assert not [r for r in caplog.records if "unobserved" in r.getMessage()]


async def test_a_pool_failure_the_program_awaits_later_is_not_reported() -> None:
    reports: list[BaseException] = []

    async def handler(item: int) -> int:
        if item == 0:
            raise ValueError("item 0 failed")
        await anyio.sleep(1)
        return item

    async with WorkerPool(handler, workers=3, on_error=lambda h, e: reports.append(e)) as pool:
        handles = [await pool.submit(i) for i in range(3)]
        await anyio.sleep(2)  # item 0 failed long before anyone awaits it
        for h in handles:
            with contextlib.suppress(ValueError):
                await h
    assert reports == []


async def test_the_run_info_is_there_in_a_thread_and_gone_after() -> None:
    async with Scheduler() as s:
        with hold_autojump():
            info = await s.call_soon(duetime.current_run, in_thread=True)
        assert info.attempt == 1
