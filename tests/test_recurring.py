"""call_every / Recurring, and Retry through the heap, on both backends in virtual time."""

from __future__ import annotations

import gc
import itertools
import logging
import weakref
from datetime import timedelta
from typing import Any

import anyio
import pytest

import duetime
from duetime import Recurring, Retry, Scheduler, Status
from duetime.testing import VirtualWallClock, advance_time

from .support import count_instances, duetime_activity

pytestmark = pytest.mark.anyio


def noop() -> None:
    pass


async def test_fixed_rate_grid_has_zero_drift_with_slow_runs() -> None:
    times: list[float] = []

    async def slow() -> None:
        times.append(anyio.current_time())
        await anyio.sleep(0.93)  # nearly the whole interval, every time

    async with Scheduler() as s:
        t0 = anyio.current_time()
        r = s.call_every(1.0, slow, start=0.5, max_runs=1000)
        assert await r == 1000
    assert times == [t0 + 0.5 + k * 1.0 for k in range(1000)]
    assert r.missed == 0
    assert r.status is Status.COMPLETED


async def test_sync_runs_and_timedelta_interval_stay_on_the_grid() -> None:
    times: list[float] = []
    async with Scheduler() as s:
        t0 = anyio.current_time()
        r = s.call_every(timedelta(milliseconds=10), lambda: times.append(anyio.current_time()))
        await anyio.sleep(2.0 - 1e-9)
        r.cancel()
        assert await r == 200
    # First run immediately, then every 10 ms, computed as t0 + k * 0.01.
    assert times == [t0 + k * 0.01 for k in range(200)]


async def test_status_runs_last_next_at_and_await() -> None:
    async with Scheduler() as s:
        t0 = anyio.current_time()
        r = s.call_every(2, duetime.current_run, start=timedelta(seconds=1), max_runs=3)
        assert isinstance(r, Recurring)
        assert r.status is Status.PENDING
        assert r.next_at == t0 + 1
        assert r.last is None
        await anyio.sleep(1.5)
        assert r.status is Status.RUNNING
        assert r.runs == 1
        assert r.started == 1
        assert r.next_at == t0 + 3
        assert r.last is not None
        info = await r.last
        assert info.scheduled == t0 + 1
        assert info.missed == 0
        assert await r == 3
        assert r.status is Status.COMPLETED
        assert r.next_at is None
        assert r.done()
        series = weakref.ref(r)
        del r, info
        gc.collect()
        assert series() is None  # a finished series is not kept by the scheduler


async def test_until_as_delay_and_datetime() -> None:
    wall = VirtualWallClock()
    async with Scheduler(wall_clock=wall) as s:
        r1 = s.call_every(1, noop, until=3.0)  # runs at 0, 1, 2, 3
        r2 = s.call_every(
            1, noop, start=wall() + timedelta(seconds=10), until=timedelta(seconds=12)
        )
        assert r2.next_at == pytest.approx(anyio.current_time() + 10)
        assert await r1 == 4
        assert await r2 == 3  # 10, 11, 12
        assert r2.status is Status.COMPLETED


async def test_jitter_is_per_run_and_never_cumulative() -> None:
    times: list[float] = []
    async with Scheduler() as s:
        t0 = anyio.current_time()
        r = s.call_every(1, lambda: times.append(anyio.current_time()), jitter=0.5, max_runs=300)
        await r
    offsets = [t - (t0 + k) for k, t in enumerate(times)]
    assert all(0 <= off < 0.5 for off in offsets)
    assert len(set(offsets)) > 10  # really random, yet run 299 is still within its slot


async def test_misfire_coalesce_runs_once_and_reports_missed() -> None:
    infos: list[duetime.RunInfo] = []

    def tick() -> None:
        info = duetime.current_run()
        infos.append(info)
        if len(infos) == 2:
            advance_time(3.5)  # the loop is blocked for 3.5 intervals

    async with Scheduler() as s:
        t0 = anyio.current_time()
        r = s.call_every(1, tick, max_runs=4)
        await r
    # runs at 0, 1, then (blocked until 4.5) one run standing for point 4, then 5
    assert [i.scheduled - t0 for i in infos] == [0, 1, 4, 5]
    assert [i.missed for i in infos] == [0, 0, 2, 0]
    assert r.missed == 2


async def test_misfire_skip_waits_for_the_next_grid_point() -> None:
    infos: list[duetime.RunInfo] = []

    def tick() -> None:
        infos.append(duetime.current_run())
        if len(infos) == 2:
            advance_time(3.5)

    async with Scheduler() as s:
        t0 = anyio.current_time()
        r = s.call_every(1, tick, max_runs=3, misfire="skip")
        await r
    assert [i.scheduled - t0 for i in infos] == [0, 1, 5]
    assert [i.started - t0 for i in infos] == [0, 1, 5]
    assert [i.missed for i in infos] == [0, 0, 3]  # points 2, 3 and 4
    assert r.missed == 3


async def test_misfire_catch_up_runs_every_missed_point_in_turn() -> None:
    infos: list[duetime.RunInfo] = []

    def tick() -> None:
        infos.append(duetime.current_run())
        if len(infos) == 2:
            advance_time(3.5)

    async with Scheduler() as s:
        t0 = anyio.current_time()
        r = s.call_every(1, tick, max_runs=6, misfire="catch_up")
        await r
    assert [i.scheduled - t0 for i in infos] == [0, 1, 2, 3, 4, 5]
    assert [i.started - t0 for i in infos] == [0, 1, 4.5, 4.5, 4.5, 5]
    assert r.missed == 0


async def test_catch_up_runs_do_not_overlap_each_other() -> None:
    starts: list[float] = []

    async def work() -> None:
        starts.append(anyio.current_time())
        if len(starts) == 1:
            advance_time(3.5)  # blocked: points 1, 2 and 3 are due at once
            return
        await anyio.sleep(0.3)

    async with Scheduler() as s:
        t0 = anyio.current_time()
        r = s.call_every(1, work, max_runs=4, misfire="catch_up", overlap="allow")
        await r
    # Even with overlap="allow", catch-up runs go one after another.
    assert [t - t0 for t in starts] == pytest.approx([0, 3.5, 3.8, 4.1], abs=1e-9)


async def test_overlap_skip_counts_missed() -> None:
    async def slow() -> None:
        await anyio.sleep(2.5)

    async with Scheduler() as s:
        t0 = anyio.current_time()
        r = s.call_every(1, slow, until=5.0)
        starts: list[float] = []
        async for run in r:
            starts.append(run.when - t0)
    # runs at 0 (busy until 2.5: skip 1, 2), 3 (busy until 5.5: skip 4, 5)
    assert starts == [0, 3]
    assert r.missed == 4


async def test_overlap_wait_queues_one_run() -> None:
    started: list[float] = []

    async def slow() -> None:
        started.append(anyio.current_time())
        await anyio.sleep(2.5)

    async with Scheduler() as s:
        t0 = anyio.current_time()
        r = s.call_every(1, slow, max_runs=3, overlap="wait")
        await r
    # 0 runs until 2.5; point 1 waits and starts at 2.5; point 2 is missed (one
    # waiter at most); point 3 waits for the run ending at 5.0.
    assert [t - t0 for t in started] == [0, 2.5, 5.0]
    assert r.missed == 1


async def test_overlap_allow_runs_concurrently() -> None:
    running = 0
    peak = 0

    async def slow() -> None:
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await anyio.sleep(3.5)
        running -= 1

    async with Scheduler() as s:
        r = s.call_every(1, slow, max_runs=6, overlap="allow")
        assert await r == 6
    assert peak == 4
    assert r.missed == 0


async def test_pause_and_resume_continue_on_the_grid() -> None:
    times: list[float] = []
    async with Scheduler() as s:
        t0 = anyio.current_time()
        r = s.call_every(1, lambda: times.append(anyio.current_time() - t0), max_runs=4)
        await anyio.sleep(1.2)
        r.pause()
        assert r.paused
        assert r.next_at is None
        await anyio.sleep(2.0)  # points 2 and 3 pass while paused
        r.resume()
        assert r.next_at == t0 + 4
        await r
    assert times == [0, 1, 4, 5]
    assert r.missed == 0  # paused points are not misfires


async def test_cancel_stops_the_series_without_interrupting_a_run() -> None:
    ended: list[float] = []

    async def work() -> None:
        await anyio.sleep(0.5)
        ended.append(anyio.current_time())

    async with Scheduler() as s:
        t0 = anyio.current_time()
        r = s.call_every(1, work)
        await anyio.sleep(2.2)
        assert r.cancel() is True
        assert r.cancel() is False
        assert r.status is Status.CANCELLED
        assert r.next_at is None
        assert await r == 3  # does not raise
        assert r.started == 3
        await anyio.sleep(5)
        assert [t - t0 for t in ended] == [0.5, 1.5, 2.5]
        assert s.statistics().pending == 0
        with duetime_activity() as activity:  # nothing of the series is left to run
            await anyio.sleep(100)
        assert activity() == 0


async def test_cancel_before_the_first_run() -> None:
    async with Scheduler() as s:
        calls: list[float] = []
        r = s.call_every(1, calls.append, 0.0, start=10)
        r.cancel()
        assert await r == 0
        assert r.status is Status.CANCELLED
        series = weakref.ref(r)
        del r
        gc.collect()
        assert series() is None  # the scheduler let go of it at once
        await anyio.sleep(20)
        assert calls == []


async def test_scheduler_exit_cancels_the_series() -> None:
    async with Scheduler(on_exit="drain") as s:
        r = s.call_every(1, noop)
        await anyio.sleep(2.5)
    assert r.status is Status.CANCELLED
    assert r.runs == 3
    series = weakref.ref(r)
    del r
    gc.collect()
    assert series() is None  # the exited scheduler does not keep it
    assert s.closed


async def test_failing_runs_do_not_end_the_series_and_are_reported() -> None:
    reported: list[BaseException] = []
    n = 0

    def flaky() -> int:
        nonlocal n
        n += 1
        if n % 2:
            raise ValueError(n)
        return n

    async with Scheduler(on_error=lambda h, e: reported.append(e)) as s:
        r = s.call_every(1, flaky, max_runs=5)
        assert await r == 5
    assert [e.args[0] for e in reported] == [1, 3, 5]
    assert s.statistics().failed == 3
    assert s.statistics().completed == 2


async def test_async_for_yields_finished_runs_in_order() -> None:
    async with Scheduler(on_error=lambda h, e: None) as s:
        r = s.call_every(1, duetime.current_run, max_runs=5)
        seen = [run async for run in r]
    assert [run.status for run in seen] == [Status.COMPLETED] * 5
    assert [(await run).handle for run in seen] == seen
    assert r.dropped == 0


async def test_async_for_buffer_drops_oldest_and_counts() -> None:
    async with Scheduler() as s:
        r = s.call_every(1, int, max_runs=200)
        await r  # nobody consumes while the 200 runs finish
        seen = [run async for run in r]
    assert r.dropped == 200 - 128  # the documented buffer size
    assert len(seen) == 128
    assert seen[0].when < seen[-1].when
    assert seen[-1] is r.last


async def test_iterated_failures_are_left_to_the_consumer() -> None:
    reported: list[BaseException] = []
    async with Scheduler(on_error=lambda h, e: reported.append(e)) as s:
        r = s.call_every(1, int, "x", max_runs=2)
        excs = [run.exception async for run in r]
    assert [type(e) for e in excs] == [ValueError, ValueError]
    assert reported == []


async def test_per_run_options_timeout_name_and_retry() -> None:
    attempts: list[int] = []

    async def flaky() -> None:
        info = duetime.current_run()
        attempts.append(info.attempt)
        if info.attempt == 1:
            raise ConnectionError
        await anyio.sleep(10)  # the timeout cuts it

    async with Scheduler(on_error=lambda h, e: None) as s:
        r = s.call_every(
            5, flaky, name="poll", timeout=1.0, retry=Retry(attempts=2, jitter=0), max_runs=2
        )
        runs = [run async for run in r]
    assert [run.name for run in runs] == ["poll", "poll"]
    assert [type(run.exception) for run in runs] == [TimeoutError, TimeoutError]
    assert attempts == [1, 2, 1, 2]


async def test_inherit_deadline_bounds_the_series() -> None:
    async with Scheduler() as s:
        with anyio.move_on_after(3.5):
            r = s.call_every(1, anyio.sleep, 0.8, inherit_deadline=True)
        await r
        assert r.runs == 4  # 0, 1, 2, 3: the last is cut off at 3.5
        assert isinstance(r.last and r.last.exception, duetime.DeadlineExpired)
        assert r.status is Status.COMPLETED


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"interval": 0}, ValueError),
        ({"interval": -1}, ValueError),
        ({"interval": float("nan")}, ValueError),
        ({"interval": "1"}, TypeError),
        ({"jitter": -0.1}, ValueError),
        ({"jitter": 1.0}, ValueError),
        ({"max_runs": 0}, ValueError),
        ({"max_runs": 1.5}, TypeError),
        ({"misfire": "later"}, ValueError),
        ({"overlap": "queue"}, ValueError),
        ({"start": -1}, ValueError),
        ({"until": float("inf")}, ValueError),
        ({"name": 3}, TypeError),
        ({"timeout": 1.0}, ValueError),  # inline sync callback
        ({"retry": 3}, TypeError),
        ({"func": 42}, TypeError),
    ],
)
async def test_bad_input(kwargs: dict[str, Any], exc: type[Exception]) -> None:
    args: dict[str, Any] = {"interval": 1.0, "func": noop}
    args.update(kwargs)
    async with Scheduler() as s:
        before = count_instances(Recurring)
        with pytest.raises(exc):
            s.call_every(args.pop("interval"), args.pop("func"), **args)
        assert count_instances(Recurring) == before  # nothing half-made is kept
        assert s.statistics().pending == 0


async def test_naive_datetime_start_and_closed_scheduler() -> None:
    from datetime import datetime

    s = Scheduler()
    with pytest.raises(duetime.SchedulerClosed):
        s.call_every(1, noop)
    async with s:
        with pytest.raises(ValueError, match="naive"):
            s.call_every(1, noop, start=datetime(2030, 1, 1))


# ---------------------------------------------------------------------- Retry


async def test_retry_waits_on_the_heap_not_in_a_task() -> None:
    attempts: list[float] = []

    async def flaky() -> str:
        attempts.append(anyio.current_time())
        if len(attempts) < 3:
            raise ConnectionError
        return "ok"

    async with Scheduler() as s:
        await s.call_soon(anyio.sleep, 0)  # the scheduler's runner tasks are up
        idle_tasks = len(anyio.get_running_tasks())
        t0 = anyio.current_time()
        h = s.call_soon(flaky, retry=Retry(attempts=3, backoff=2, factor=3, jitter=0))
        await anyio.sleep(1)
        # Between attempts the handle is a heap entry again: pending, nothing runs.
        assert h.status is Status.PENDING
        assert h.when == t0 + 2
        assert s.statistics().pending == 1
        assert s.statistics().running == 0
        assert len(anyio.get_running_tasks()) == idle_tasks  # no task waits for it
        assert await h == "ok"
    assert [t - t0 for t in attempts] == [0, 2, 8]


async def test_retry_in_thread_and_cancel_between_attempts() -> None:
    calls = 0

    def failing() -> None:
        nonlocal calls
        calls += 1
        raise OSError

    async with Scheduler() as s:
        h = s.call_soon(failing, in_thread=True, retry=Retry(attempts=5, backoff=10, jitter=0))
        while calls == 0 or h.status is not Status.PENDING:
            await anyio.sleep(1)
        assert h.cancel() is True
        assert h.status is Status.CANCELLED
        await anyio.sleep(100)
    assert calls == 1


async def test_retry_on_timeout_and_jitter_range(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="duetime")
    starts: list[float] = []

    async def hang() -> None:
        starts.append(anyio.current_time())
        await anyio.sleep(100)

    async with Scheduler() as s:
        h = s.call_soon(hang, timeout=1, retry=Retry(attempts=3, backoff=1, factor=1, jitter=0.5))
        with pytest.raises(TimeoutError):
            await h
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert len(starts) == 3
    assert all(1 + 0.5 <= g <= 1 + 1.5 for g in gaps)  # 1 s run + pause in [0.5, 1.5]


async def test_cancel_and_pause_withdraw_a_run_waiting_for_the_limiter() -> None:
    ran: list[str] = []

    async def blocker() -> None:
        await anyio.sleep(0.5)

    def tick() -> None:
        ran.append("tick")

    async with Scheduler(max_concurrency=1) as s:
        s.call_soon(blocker)
        r = s.call_every(10, tick)
        await anyio.sleep(0.1)  # the first run is due, waiting for the limiter
        assert r.cancel() is True
        await anyio.sleep(1)
        assert ran == []
        assert r.status is Status.CANCELLED
        assert (r.started, r.runs) == (0, 0)
        assert await r == 0

        s.call_soon(blocker)
        r2 = s.call_every(10, tick)
        await anyio.sleep(0.1)
        r2.pause()
        await anyio.sleep(1)
        assert ran == []
        r2.resume()
        await anyio.sleep(10)
        assert ran == ["tick"]
        r2.cancel()


async def test_failures_an_early_leaving_consumer_never_saw_are_reported() -> None:
    reported: list[BaseException] = []

    def boom() -> None:
        raise ValueError("boom")

    async with Scheduler(on_error=lambda h, e: reported.append(e)) as s:
        r = s.call_every(0.01, boom, max_runs=5)
        async for run in r:
            assert isinstance(run.exception, ValueError)
            await anyio.sleep(1)  # slow: the other four finish meanwhile
            break
        await r
        # The abandoned iterator is finalized at the next checkpoint (trio and
        # asyncio both close it through their async-generator hooks).
        await anyio.sleep(0.1)
    assert len(reported) == 4


async def test_a_day_of_one_minute_runs_lands_on_exact_times() -> None:
    starts: list[float] = []
    async with Scheduler() as s:
        t0 = anyio.current_time()
        r = s.call_every(60, lambda: starts.append(anyio.current_time() - t0), max_runs=1440)
        assert await r == 1440
    assert starts == [k * 60.0 for k in range(1440)]  # exact: no drift, no jitter
    assert r.missed == 0
