"""A BaseException from a callback, a done-callback or on_error ends the block as itself."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

import anyio
import pytest

from duetime import Handle, Scheduler, Status, WorkerPool
from duetime.testing import hold_autojump

pytestmark = pytest.mark.anyio


class Custom(BaseException):
    pass


KINDS: list[Callable[[], BaseException]] = [
    lambda: KeyboardInterrupt("ctrl-c"),
    lambda: SystemExit(3),
    lambda: GeneratorExit("gone"),
    lambda: Custom("mine"),
]


@pytest.mark.parametrize(
    "make", KINDS, ids=["KeyboardInterrupt", "SystemExit", "GeneratorExit", "custom"]
)
@pytest.mark.parametrize("how", ["inline", "async", "thread"])
async def test_a_callback_base_exception_fails_its_handle_and_leaves_as_itself(
    make: Callable[[], BaseException], how: str
) -> None:
    exc = make()
    if how == "thread" and isinstance(exc, GeneratorExit):
        # asyncio hands a worker thread's GeneratorExit back as a new instance;
        # a thread raising GeneratorExit is not a real program anyway.
        pytest.skip("GeneratorExit raised in a worker thread")

    def sync_boom() -> None:
        raise exc

    async def async_boom() -> None:
        await anyio.sleep(0.01)
        raise exc

    seen_by_outsider: list[Status] = []
    async with anyio.create_task_group() as outer:  # an awaiter outside the block
        with pytest.raises(type(exc)) as caught:
            async with Scheduler() as s:
                if how == "async":
                    victim: Handle[Any] = s.call_later(0.1, async_boom)
                else:
                    victim = s.call_later(0.1, sync_boom, in_thread=(how == "thread") or None)
                bystander = s.call_later(50, print, "never")

                async def outsider() -> None:
                    await victim.wait()
                    seen_by_outsider.append(victim.status)

                outer.start_soon(outsider)
                # A worker thread is real work: virtual time must not jump past it.
                with hold_autojump() if how == "thread" else nullcontext():
                    await victim.wait()
                await anyio.sleep(10)
    assert caught.value is exc  # as itself, never wrapped in a group
    assert victim.status is Status.FAILED
    assert victim.exception is exc
    assert bystander.status is Status.CANCELLED
    assert seen_by_outsider == [Status.FAILED]  # the awaiter was released
    stats = s.statistics()
    assert (stats.pending, stats.running, stats.failed, stats.cancelled) == (0, 0, 1, 1)


async def test_a_done_callback_base_exception_runs_the_others_then_leaves() -> None:
    calls: list[str] = []

    def first(_h: Handle[Any]) -> None:
        calls.append("first")
        raise KeyboardInterrupt("from a done-callback")

    with pytest.raises(KeyboardInterrupt):
        async with Scheduler() as s:
            h = s.call_later(0.01, int, 1)
            other = s.call_later(50, int, 2)
            h.add_done_callback(first)
            h.add_done_callback(lambda _h: calls.append("second"))
            await anyio.sleep(1)
    assert calls == ["first", "second"]
    assert h.status is Status.COMPLETED
    assert other.status is Status.CANCELLED


async def test_on_error_raising_a_base_exception_leaves_as_itself() -> None:
    def on_error(h: Handle[Any], exc: BaseException) -> None:
        raise SystemExit("from on_error")

    with pytest.raises(SystemExit, match="from on_error"):
        async with Scheduler(on_error=on_error) as s:
            s.call_soon(lambda: 1 / 0)
            await anyio.sleep(1)


async def test_the_event_loop_survives_and_a_new_scheduler_works() -> None:
    with pytest.raises(KeyboardInterrupt):
        async with Scheduler() as s:
            s.call_soon(_raise_keyboard_interrupt)
            await anyio.sleep(1)
    async with Scheduler() as s2:
        assert await s2.call_later(1, int, 7) == 7


def _raise_keyboard_interrupt() -> None:
    raise KeyboardInterrupt


async def test_the_body_exception_group_leaves_as_itself() -> None:
    async def handler(item: int) -> int:
        return item

    for factory in (Scheduler, lambda: WorkerPool(handler)):
        mine = ExceptionGroup("mine", [ValueError("x")])
        with pytest.raises(ExceptionGroup) as caught:
            async with factory():
                raise mine
        assert caught.value is mine
