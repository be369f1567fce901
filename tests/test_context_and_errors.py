"""Each callback in a context of its own; failures reported only if nobody looks at them."""

from __future__ import annotations

import contextvars
import gc
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import duetime
from duetime import Handle, Recurring, Scheduler, Status
from duetime.testing import hold_autojump

pytestmark = pytest.mark.anyio

var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")


# -- context ----------------------------------------------------------------------


async def test_a_variable_set_by_one_async_callback_is_not_seen_by_the_next() -> None:
    async def setter() -> str:
        var.set("leaked")
        await anyio.lowlevel.checkpoint()
        return var.get()

    async def reader() -> str:
        await anyio.lowlevel.checkpoint()
        return var.get()

    async with Scheduler() as s:
        assert await s.call_soon(setter) == "leaked"
        # The same reused runner task takes the next callback.
        assert await s.call_soon(reader) == "unset"
        assert [await s.call_soon(reader) for _ in range(20)] == ["unset"] * 20


async def test_a_variable_set_by_one_sync_callback_is_not_seen_by_the_next() -> None:
    seen: list[str] = []

    def setter() -> None:
        var.set("leaked")

    async with Scheduler() as s:
        s.call_soon(setter)
        s.call_soon(lambda: seen.append(var.get()))
        in_thread = s.call_later(1, lambda: seen.append(var.get()), in_thread=True)
        with hold_autojump():  # a worker thread: virtual time must not jump past it
            await in_thread
    assert seen == ["unset", "unset"]


async def test_callbacks_copy_the_context_that_entered_the_block() -> None:
    var.set("outer")
    async with Scheduler() as s:
        var.set("changed in the body, after entering")

        async def read() -> str:
            return var.get()

        assert await s.call_soon(var.get) == "outer"
        assert await s.call_soon(read) == "outer"
    assert var.get() == "changed in the body, after entering"


async def test_context_option_runs_the_callback_in_that_context() -> None:
    ctx = contextvars.copy_context()
    ctx.run(var.set, "given")

    async def async_read_and_set() -> str:
        value = var.get()
        var.set("set by the callback")
        return value

    async with Scheduler() as s:
        assert await s.call_soon(var.get, context=ctx) == "given"
        assert await s.call_later(1, async_read_and_set, context=ctx) == "given"
        # As with asyncio's call_later(context=): the callback ran in ctx itself.
        assert ctx.run(var.get) == "set by the callback"
        with hold_autojump():
            assert await s.call_soon(var.get, context=ctx, in_thread=True) == "set by the callback"
        # current_run() still works in a given context, and leaves no trace in it.
        h = s.call_soon(lambda: duetime.current_run().handle, context=ctx)
        assert await h is h
        with pytest.raises(TypeError, match="context"):
            s.call_soon(var.get, context={"not": "a context"})  # type: ignore[call-overload, call-arg]
        series: Recurring[str] = s.call_every(1, var.get, context=ctx, max_runs=2)
        assert [run.return_value async for run in series] == ["set by the callback"] * 2


# -- observed errors --------------------------------------------------------------


def divide(a: int, b: int) -> float:
    return a / b


async def fail_later() -> None:
    await anyio.sleep(0.1)
    raise ValueError("async failure")


async def test_failures_the_program_awaits_later_are_never_reported() -> None:
    reported: list[BaseException] = []
    async with Scheduler(on_error=lambda h, e: reported.append(e)) as s:
        handles: list[Handle[Any]] = [s.call_later(i, divide, 1, 0) for i in range(5)]
        handles.append(s.call_later(0.5, fail_later))
        await anyio.sleep(10)  # all have failed before anyone awaits them
        for h in handles:
            with pytest.raises((ZeroDivisionError, ValueError)):
                await h
        gc.collect()
    assert reported == []


@pytest.mark.parametrize("look", ["exception", "return_value", "wait", "done_callback"])
async def test_any_look_at_the_outcome_counts_as_observing_it(look: str) -> None:
    reported: list[BaseException] = []
    async with Scheduler(on_error=lambda h, e: reported.append(e)) as s:
        h = s.call_soon(divide, 1, 0)
        await anyio.sleep(1)
        assert h.status is Status.FAILED
        if look == "exception":
            assert isinstance(h.exception, ZeroDivisionError)
        elif look == "return_value":
            with pytest.raises(ZeroDivisionError):
                h.return_value  # noqa: B018
        elif look == "wait":
            await h.wait()
        else:
            h.add_done_callback(lambda _h: None)
    assert reported == []


async def test_a_dropped_failed_handle_is_reported_while_the_block_runs() -> None:
    reported: list[str] = []
    async with Scheduler(on_error=lambda h, e: reported.append(f"{h.name}: {e!r}")) as s:
        s.call_soon(divide, 1, 0, name="dropped")  # the handle is thrown away
        s.call_later(0.5, fail_later)
        await anyio.sleep(1)
        gc.collect()
        await anyio.sleep(1)
        assert sorted(reported) == [
            "dropped: ZeroDivisionError('division by zero')",
            "fail_later: ValueError('async failure')",
        ]


async def test_a_kept_failed_handle_nobody_looks_at_is_reported_at_exit() -> None:
    reported: list[BaseException] = []
    async with Scheduler(on_error=lambda h, e: reported.append(e)) as s:
        kept = s.call_soon(divide, 1, 0)
        await anyio.sleep(1)
        assert reported == []
    assert len(reported) == 1
    assert reported[0] is kept.exception


async def test_held_failures_are_bounded() -> None:
    reported: list[BaseException] = []
    async with Scheduler(on_error=lambda h, e: reported.append(e)) as s:
        kept = [s.call_soon(divide, i, 0) for i in range(1100)]
        await anyio.sleep(1)
        # Past 1024 held failures, the oldest are reported at once.
        assert len(reported) == 1100 - 1024
        assert reported[0] is kept[0].exception
