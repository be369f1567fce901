"""Tests for duetime.testing: virtual time on asyncio (VirtualTimeLoop) and trio (MockClock)."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from functools import partial
from typing import Any, TypeVar

import anyio
import anyio.lowlevel
import pytest
from anyio.abc import SocketStream

from duetime.testing import (
    DEFAULT_WALL_START,
    VirtualTimeLoop,
    VirtualWallClock,
    advance_time,
    anyio_backend_fixture,
    hold_autojump,
    virtual_time_backend,
    virtual_time_backends,
)

# Every async test in this module runs on asyncio+VirtualTimeLoop and trio+MockClock.
anyio_backend = anyio_backend_fixture()

pytestmark = pytest.mark.anyio

T = TypeVar("T")


def busy_work(seconds: float = 0.05) -> str:
    """Keep a worker thread busy (spinning, not sleeping) for a short real time."""
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        pass
    return "done"


# -- clock basics ----------------------------------------------------------------------


@pytest.mark.parametrize("run", [1, 2])
async def test_each_test_gets_a_fresh_clock(run: int) -> None:
    assert anyio.current_time() == 0.0
    await anyio.sleep(1000 * run)
    assert anyio.current_time() == 1000 * run


async def test_24_hour_sleep_is_fast() -> None:
    started = time.perf_counter()
    before = anyio.current_time()
    await anyio.sleep(24 * 3600)
    assert anyio.current_time() - before == 24 * 3600
    assert time.perf_counter() - started < 5


async def test_fixed_rate_sleep_until_lands_on_exact_times() -> None:
    start = anyio.current_time()
    for k in range(1, 1441):
        target = start + k * 60
        await anyio.sleep_until(target)
        assert anyio.current_time() == target
    assert anyio.current_time() == start + 24 * 3600


async def test_concurrent_sleepers_wake_in_order() -> None:
    woke: list[tuple[int, float]] = []

    async def sleeper(n: int) -> None:
        await anyio.sleep(n * 10)
        woke.append((n, anyio.current_time()))

    async with anyio.create_task_group() as tg:
        for n in (3, 1, 2):
            tg.start_soon(sleeper, n)
    assert woke == [(1, 10.0), (2, 20.0), (3, 30.0)]


async def test_move_on_after_follows_virtual_time() -> None:
    start = anyio.current_time()
    with anyio.move_on_after(10) as scope:
        await anyio.sleep(100)
    assert scope.cancelled_caught
    assert anyio.current_time() - start == 10


async def test_fail_after_follows_virtual_time() -> None:
    start = anyio.current_time()
    with pytest.raises(TimeoutError), anyio.fail_after(30):
        await anyio.sleep(60)
    assert anyio.current_time() - start == 30

    with anyio.fail_after(30):
        await anyio.sleep(29)
    assert anyio.current_time() - start == 59


async def test_virtual_time_never_goes_backwards() -> None:
    seen = [anyio.current_time()]

    async def ticker() -> None:
        for _ in range(50):
            await anyio.sleep(0.7)
            seen.append(anyio.current_time())

    async with anyio.create_task_group() as tg:
        tg.start_soon(ticker)
        for i in range(50):
            await anyio.lowlevel.checkpoint()
            seen.append(anyio.current_time())
            if i % 10 == 0:
                advance_time(1.5)
                seen.append(anyio.current_time())
            if i % 17 == 0:
                await anyio.to_thread.run_sync(busy_work, 0.001)
                seen.append(anyio.current_time())
            await anyio.sleep(0.3)
            seen.append(anyio.current_time())
    assert seen == sorted(seen)
    assert seen[-1] > seen[0]
    with pytest.raises(ValueError, match="backwards"):
        advance_time(-1)
    assert anyio.current_time() == seen[-1]


async def test_advance_time_fires_due_timers() -> None:
    start = anyio.current_time()
    advance_time(3600)
    assert anyio.current_time() == start + 3600
    with anyio.fail_after(1):  # a pending timer at start+3601 must not fire early
        await anyio.sleep(0.5)
    assert anyio.current_time() == start + 3600.5


# -- things that must keep working ---------------------------------------------------------


async def test_to_thread_run_sync_works() -> None:
    assert await anyio.to_thread.run_sync(busy_work, 0.001) == "done"
    assert await anyio.to_thread.run_sync(lambda: 6 * 7) == 42


async def test_timeout_around_thread_work_does_not_jump_when_held() -> None:
    start = anyio.current_time()
    with hold_autojump(), anyio.fail_after(5):
        assert await anyio.to_thread.run_sync(busy_work) == "done"
    elapsed = anyio.current_time() - start
    # Virtual time flowed (at most) at the real rate instead of jumping 5 s.
    assert 0 <= elapsed < 5


async def test_raw_thread_wakes_idle_loop_without_timers() -> None:
    """No timer pending: the loop must block on real I/O until the thread reports."""
    token = anyio.lowlevel.current_token()
    done = anyio.Event()

    def worker() -> None:
        busy_work(0.02)
        anyio.from_thread.run_sync(done.set, token=token)

    thread = threading.Thread(target=worker)
    thread.start()
    await done.wait()
    thread.join()


async def test_raw_thread_with_timeout_under_hold_autojump() -> None:
    token = anyio.lowlevel.current_token()
    done = anyio.Event()

    def worker() -> None:
        busy_work(0.05)
        anyio.from_thread.run_sync(done.set, token=token)

    thread = threading.Thread(target=worker)
    with hold_autojump(), anyio.fail_after(10):
        thread.start()
        await done.wait()
    thread.join()


async def test_memory_object_streams_work() -> None:
    send, receive = anyio.create_memory_object_stream[tuple[int, float]](1)
    received: list[tuple[int, float]] = []

    async def producer() -> None:
        async with send:
            for i in range(5):
                await anyio.sleep(60)
                await send.send((i, anyio.current_time()))

    start = anyio.current_time()
    async with anyio.create_task_group() as tg:
        tg.start_soon(producer)
        async with receive:
            async for item in receive:
                received.append(item)
    assert received == [(i, start + 60 * (i + 1)) for i in range(5)]


async def test_real_tcp_socket_pair_works() -> None:
    ticks = 0

    async def ticker() -> None:
        # Keeps timers pending (so autojump is active) while real I/O is in flight.
        nonlocal ticks
        while True:
            await anyio.sleep(1)
            ticks += 1

    async def echo(stream: SocketStream) -> None:
        async with stream:
            async for chunk in stream:
                await stream.send(chunk.upper())

    async with (
        await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0) as listener,
        anyio.create_task_group() as tg,
    ):
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        tg.start_soon(listener.serve, echo)
        tg.start_soon(ticker)
        with anyio.fail_after(3600):
            async with await anyio.connect_tcp("127.0.0.1", port) as client:
                for word in (b"hello", b"virtual", b"time"):
                    await client.send(word)
                    assert await client.receive() == word.upper()
        tg.cancel_scope.cancel()


@pytest.mark.skipif(not hasattr(signal, "SIGUSR1"), reason="needs SIGUSR1")
async def test_signals_are_delivered() -> None:
    with anyio.open_signal_receiver(signal.SIGUSR1) as signals:
        os.kill(os.getpid(), signal.SIGUSR1)
        with anyio.fail_after(60):
            async for signum in signals:
                assert signum == signal.SIGUSR1
                break


# -- VirtualWallClock -------------------------------------------------------------------


async def test_wall_clock_follows_virtual_time() -> None:
    start = datetime(2030, 6, 1, 12, 0, tzinfo=UTC)
    wall = VirtualWallClock(start)
    t0 = anyio.current_time()
    assert wall() == start
    await anyio.sleep(90)
    assert wall() == start + timedelta(seconds=90)
    for _ in range(3):
        await anyio.sleep(3600)
        assert wall() == start + timedelta(seconds=anyio.current_time() - t0)
    assert wall().tzinfo is UTC


async def test_wall_clock_step_and_set_do_not_move_loop_clock() -> None:
    wall = VirtualWallClock()
    assert wall() == DEFAULT_WALL_START
    loop_before = anyio.current_time()

    wall.step(-3600)  # e.g. an NTP correction backwards
    assert wall() == DEFAULT_WALL_START - timedelta(hours=1)
    assert anyio.current_time() == loop_before

    await anyio.sleep(10)
    assert wall() == DEFAULT_WALL_START - timedelta(hours=1) + timedelta(seconds=10)

    target = datetime(2031, 1, 1, tzinfo=UTC)
    wall.set(target)
    assert wall() == target
    await anyio.sleep(5)
    assert wall() == target + timedelta(seconds=5)
    assert anyio.current_time() == loop_before + 15


async def test_wall_clock_converts_aware_start_to_utc() -> None:
    cet = timezone(timedelta(hours=1))
    wall = VirtualWallClock(datetime(2030, 1, 1, 13, 0, tzinfo=cet))
    assert wall() == datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
    assert wall().utcoffset() == timedelta(0)


def test_wall_clock_rejects_naive_datetimes() -> None:
    with pytest.raises(ValueError, match="aware"):
        VirtualWallClock(datetime(2030, 1, 1))
    wall = VirtualWallClock()
    with pytest.raises(ValueError, match="aware"):
        wall.set(datetime(2030, 1, 1))


def test_wall_clock_created_outside_loop_anchors_on_first_call() -> None:
    wall = VirtualWallClock()

    async def main() -> tuple[datetime, datetime]:
        await anyio.sleep(100)  # before the first call: not counted
        first = wall()
        await anyio.sleep(25)
        return first, wall()

    first, second = anyio.run(
        main, backend="asyncio", backend_options={"loop_factory": VirtualTimeLoop}
    )
    assert first == DEFAULT_WALL_START
    assert second == DEFAULT_WALL_START + timedelta(seconds=25)


# -- asyncio-specific VirtualTimeLoop behaviour (driven by anyio.run directly) ----------------


def run_virtual(main: Callable[[], Awaitable[T]], **loop_options: Any) -> T:
    factory = partial(VirtualTimeLoop, **loop_options) if loop_options else VirtualTimeLoop
    return anyio.run(main, backend="asyncio", backend_options={"loop_factory": factory})


def test_anyio_run_with_loop_factory() -> None:
    async def main() -> float:
        assert isinstance(asyncio.get_running_loop(), VirtualTimeLoop)
        await anyio.sleep(7 * 24 * 3600)
        return anyio.current_time()

    started = time.perf_counter()
    assert run_virtual(main) == 7 * 24 * 3600
    assert run_virtual(main, start=1000.0) == 1000.0 + 7 * 24 * 3600
    assert time.perf_counter() - started < 5


def test_thread_work_suspends_autojump() -> None:
    """A timeout around busy anyio/asyncio thread work must not fire instantly."""

    async def main() -> float:
        start = anyio.current_time()
        with anyio.fail_after(5):
            assert await anyio.to_thread.run_sync(busy_work) == "done"
        with anyio.fail_after(5):
            assert await asyncio.to_thread(busy_work) == "done"
        with anyio.fail_after(5):
            loop = asyncio.get_running_loop()
            assert await loop.run_in_executor(None, busy_work) == "done"
        return anyio.current_time() - start

    elapsed = run_virtual(main)
    assert 0 < elapsed < 5


def test_autojump_disabled_moves_only_by_advance() -> None:
    async def main() -> list[float]:
        loop = asyncio.get_running_loop()
        assert isinstance(loop, VirtualTimeLoop)
        assert loop.autojump is False
        woke: list[float] = []

        async def sleeper() -> None:
            await anyio.sleep(10)
            woke.append(anyio.current_time())

        async with anyio.create_task_group() as tg:
            tg.start_soon(sleeper)
            await anyio.wait_all_tasks_blocked()
            loop.advance(4)
            await anyio.wait_all_tasks_blocked()
            assert woke == []
            loop.advance(6)
        return woke

    assert run_virtual(main, autojump=False) == [10.0]


def test_autojump_threshold_still_jumps() -> None:
    async def main() -> float:
        await anyio.sleep(3600)
        return anyio.current_time()

    assert run_virtual(main, autojump_threshold=0.001) == 3600.0


def test_loop_rejects_invalid_settings() -> None:
    loop = VirtualTimeLoop()
    try:
        with pytest.raises(ValueError, match="backwards"):
            loop.advance(-0.1)
        with pytest.raises(ValueError, match="autojump_threshold"):
            loop.autojump_threshold = -1
        loop.advance(2.5)
        assert loop.time() == 2.5
    finally:
        loop.close()
    with pytest.raises(ValueError, match="finite"):
        VirtualTimeLoop(start=float("nan"))


# -- pytest glue ---------------------------------------------------------------------------


def test_virtual_time_backend_values() -> None:
    assert virtual_time_backends == ("asyncio", "trio")
    assert virtual_time_backend("asyncio") == ("asyncio", {"loop_factory": VirtualTimeLoop})
    name, options = virtual_time_backend("trio")
    assert name == "trio"
    assert options["clock"] is not virtual_time_backend("trio")[1]["clock"]
    with pytest.raises(ValueError, match="unknown backend"):
        virtual_time_backend("curio")


def test_advance_time_outside_virtual_loop_raises() -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match="VirtualTimeLoop"):
            advance_time(1)
        with hold_autojump():  # no-op on a real clock
            await anyio.lowlevel.checkpoint()

    anyio.run(main, backend="asyncio")
