"""The Scheduler and its Handles, on asyncio and trio, in virtual time."""

from __future__ import annotations

import gc
import logging
import threading
import weakref
from functools import partial
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import duetime
from duetime import CallbackCancelled, Scheduler, Status

from .support import duetime_activity, memory_held

pytestmark = pytest.mark.anyio

# Bytes a test of 1,000 pending timers may hold (a pending timer costs about
# 250 B); a cancel storm of 9,000-10,000 timers kept uncompacted holds 1.5 MB.
CANCEL_STORM_BUDGET = 600_000


def add(a: int, b: int) -> int:
    return a + b


async def async_add(a: int, b: int) -> int:
    await anyio.sleep(1)
    return a + b


def boom() -> None:
    raise ZeroDivisionError("boom")


async def test_call_later_returns_awaitable_handle() -> None:
    async with Scheduler() as s:
        start = anyio.current_time()
        h = s.call_later(0.5, add, 1, 2)
        assert h.status is Status.PENDING
        assert h.when == pytest.approx(start + 0.5)
        assert await h == 3
        assert anyio.current_time() - start == pytest.approx(0.5, abs=1e-6)
        assert h.status is Status.COMPLETED
        assert h.done()
        assert h.return_value == 3
        assert h.exception is None
        assert h.name == "add"


async def test_async_callback_and_timedelta_delay() -> None:
    from datetime import timedelta

    async with Scheduler() as s:
        start = anyio.current_time()
        h = s.call_later(timedelta(seconds=2), async_add, 2, 3)
        assert await h == 5
        # due at +2, then the callback itself sleeps 1 s
        assert anyio.current_time() - start == pytest.approx(3.0, abs=1e-6)


async def test_keyword_arguments_go_through_partial() -> None:
    def greet(name: str, *, punct: str) -> str:
        return name + punct

    async with Scheduler() as s:
        assert await s.call_soon(partial(greet, "hi", punct="!")) == "hi!"


async def test_call_at_loop_time_and_never_early() -> None:
    fired: list[float] = []
    async with Scheduler() as s:
        target = anyio.current_time() + 5
        h = s.call_at(target, lambda: fired.append(anyio.current_time()))
        await h
    assert fired[0] >= target


async def test_same_due_time_runs_fifo() -> None:
    order: list[int] = []
    async with Scheduler() as s:
        when = anyio.current_time() + 1
        for i in range(50):
            s.call_at(when, order.append, i)
        s.call_at(when - 0.5, order.append, -1)
        await anyio.sleep(2)
    assert order == [-1, *range(50)]


async def test_call_soon_runs_after_already_due() -> None:
    order: list[str] = []
    async with Scheduler() as s:
        s.call_soon(order.append, "a")
        s.call_soon(order.append, "b")
        await s.call_soon(order.append, "c")
    assert order == ["a", "b", "c"]


async def test_earlier_entry_rearms_sleeping_loop() -> None:
    async with Scheduler() as s:
        late = s.call_later(100, add, 0, 0)
        await anyio.sleep(1)  # the loop is now asleep until +100
        start = anyio.current_time()
        await s.call_later(2, add, 1, 1)
        assert anyio.current_time() - start == pytest.approx(2.0, abs=1e-6)
        assert late.status is Status.PENDING


async def test_cancel_pending() -> None:
    ran: list[int] = []
    async with Scheduler() as s:
        h = s.call_later(1, ran.append, 1)
        assert h.cancel() is True
        assert h.cancel() is False
        assert h.status is Status.CANCELLED
        with pytest.raises(CallbackCancelled):
            await h
        with pytest.raises(CallbackCancelled):
            _ = h.return_value
        with pytest.raises(CallbackCancelled):
            _ = h.exception
        assert s.statistics().pending == 0
        await anyio.sleep(2)
    assert ran == []
    assert s.statistics().cancelled == 1


async def test_cancel_running_async_callback() -> None:
    async with Scheduler() as s:
        h = s.call_soon(anyio.sleep, 10)
        await anyio.sleep(1)
        assert h.status is Status.RUNNING
        assert h.cancel() is True
        await h.wait()
        assert h.status is Status.CANCELLED
        assert s.statistics().cancelled == 1
        # the scheduler keeps working
        assert await s.call_later(1, add, 2, 2) == 4


async def test_return_value_before_finish_raises_task_not_finished() -> None:
    async with Scheduler() as s:
        h = s.call_later(1, add, 1, 1)
        with pytest.raises(anyio.TaskNotFinished):
            _ = h.return_value
        with pytest.raises(anyio.TaskNotFinished):
            _ = h.exception
        h.cancel()


async def test_failure_is_captured_and_reraised() -> None:
    async with Scheduler(on_error=lambda h, e: None) as s:
        h = s.call_soon(boom)
        with pytest.raises(ZeroDivisionError, match="boom") as info:
            await h
        assert h.status is Status.FAILED
        assert isinstance(h.exception, ZeroDivisionError)
        # its own traceback: the frame of boom() is in it
        assert any(tb.name == "boom" for tb in info.traceback)
        with pytest.raises(ZeroDivisionError):
            _ = h.return_value


async def test_unobserved_error_goes_to_on_error_observed_does_not() -> None:
    seen: list[tuple[duetime.Handle[Any], BaseException]] = []
    async with Scheduler(on_error=lambda h, e: seen.append((h, e))) as s:
        unobserved = s.call_soon(boom)
        observed = s.call_later(1, boom)
        observed.add_done_callback(lambda h: None)
        cancelled = s.call_later(1, boom)
        cancelled.cancel()
        await anyio.sleep(2)
        assert s.call_soon(add, 1, 1) is not None  # loop still alive
        await anyio.sleep(1)
    assert [h for h, _ in seen] == [unobserved]
    assert isinstance(seen[0][1], ZeroDivisionError)


async def test_default_on_error_logs_with_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.ERROR, logger="duetime")
    async with Scheduler() as s:
        s.call_soon(boom, name="exploder")
        await anyio.sleep(1)
    records = [r for r in caplog.records if r.name == "duetime"]
    assert len(records) == 1
    assert records[0].levelno == logging.ERROR
    assert "exploder" in records[0].getMessage()
    assert records[0].exc_info is not None
    assert records[0].exc_info[0] is ZeroDivisionError


async def test_async_failure_does_not_stop_the_loop() -> None:
    async def fail_later() -> None:
        await anyio.sleep(1)
        raise ValueError("nope")

    async with Scheduler(on_error=lambda h, e: None) as s:
        bad = s.call_soon(fail_later)
        good = s.call_later(2, add, 1, 1)
        assert await good == 2
        assert isinstance(bad.exception, ValueError)


async def test_body_exception_propagates_unwrapped_and_cancels_all() -> None:
    handles: list[duetime.Handle[Any]] = []
    with pytest.raises(KeyError, match="body"):
        async with Scheduler() as s:
            handles.append(s.call_later(5, add, 1, 1))
            handles.append(s.call_soon(anyio.sleep, 100))
            await anyio.sleep(1)
            raise KeyError("body")
    assert [h.status for h in handles] == [Status.CANCELLED, Status.CANCELLED]


async def test_exit_cancel_mode_cancels_pending_and_awaits_running() -> None:
    async with Scheduler() as s:
        pending = s.call_later(10, add, 1, 1)
        running = s.call_soon(async_add, 1, 2)
        await anyio.sleep(0.5)
        start = anyio.current_time()
    assert pending.status is Status.CANCELLED
    assert running.status is Status.COMPLETED
    assert running.return_value == 3
    assert anyio.current_time() - start == pytest.approx(0.5, abs=1e-6)


async def test_exit_drain_mode_runs_pending_at_due_time() -> None:
    fired: list[float] = []
    async with Scheduler(on_exit="drain") as s:
        start = anyio.current_time()
        h = s.call_later(10, lambda: fired.append(anyio.current_time()))
    assert h.status is Status.COMPLETED
    assert fired == [pytest.approx(start + 10, abs=1e-6)]


async def test_exit_grace_cancels_slow_running_callbacks() -> None:
    async with Scheduler(grace=2) as s:
        slow = s.call_soon(anyio.sleep, 100)
        quick = s.call_soon(anyio.sleep, 1)
        await anyio.sleep(0.1)
        start = anyio.current_time()
    assert quick.status is Status.COMPLETED
    assert slow.status is Status.CANCELLED
    assert anyio.current_time() - start == pytest.approx(2, abs=1e-6)


async def test_scheduling_outside_the_block_raises() -> None:
    s = Scheduler()
    with pytest.raises(duetime.SchedulerClosed, match="not been entered"):
        s.call_soon(add, 1, 1)
    async with s:
        pass
    with pytest.raises(duetime.SchedulerClosed):
        s.call_later(1, add, 1, 1)
    with pytest.raises(RuntimeError, match="once"):
        async with s:
            pass


async def test_timeout_on_async_callback() -> None:
    async with Scheduler() as s:
        h = s.call_soon(anyio.sleep, 10, timeout=2)
        with pytest.raises(TimeoutError):
            await h
        assert h.status is Status.FAILED
        assert type(h.exception) is TimeoutError


async def test_in_thread_runs_in_a_worker_thread() -> None:
    main = threading.get_ident()
    async with Scheduler() as s:
        ident = await s.call_soon(threading.get_ident, in_thread=True)
        assert ident != main
        assert await s.call_soon(threading.get_ident) == main
    async with Scheduler(sync_in_thread=True) as s:
        assert await s.call_soon(threading.get_ident) != main
        assert await s.call_soon(threading.get_ident, in_thread=False) == main


async def test_max_concurrency_limits_running_callbacks() -> None:
    peak = 0
    running = 0

    async def job() -> None:
        nonlocal peak, running
        running += 1
        peak = max(peak, running)
        await anyio.sleep(1)
        running -= 1

    async with Scheduler(max_concurrency=3) as s:
        handles = [s.call_soon(job) for _ in range(10)]
        start = anyio.current_time()
        for h in handles:
            await h
        assert anyio.current_time() - start == pytest.approx(4, abs=1e-6)
    assert peak == 3


async def test_blocking_sync_callback_is_reported(caplog: pytest.LogCaptureFixture) -> None:
    # Virtual clocks don't move during a busy loop, so lower the threshold instead.
    caplog.set_level(logging.WARNING, logger="duetime")
    async with Scheduler(slow_callback_duration=0) as s:
        await s.call_soon(add, 1, 1, name="slowpoke")
    assert any("slowpoke" in r.getMessage() and "blocked" in r.getMessage() for r in caplog.records)


async def test_current_run_in_sync_async_and_thread_callbacks() -> None:
    def sync_info() -> duetime.RunInfo:
        return duetime.current_run()

    async def async_info() -> duetime.RunInfo:
        await anyio.lowlevel.checkpoint()
        return duetime.current_run()

    async with Scheduler() as s:
        h1 = s.call_later(1, sync_info)
        info = await h1
        assert info.handle is h1
        assert info.scheduled == h1.when
        assert info.started >= info.scheduled
        assert info.attempt == 1
        h2 = s.call_soon(async_info)
        assert (await h2).handle is h2
        h3 = s.call_soon(sync_info, in_thread=True)
        assert (await h3).handle is h3
    with pytest.raises(RuntimeError):
        duetime.current_run()


async def test_retry_puts_attempts_back_on_the_heap() -> None:
    attempts: list[tuple[int, float]] = []

    def flaky() -> str:
        info = duetime.current_run()
        attempts.append((info.attempt, anyio.current_time()))
        if info.attempt < 3:
            raise ConnectionError("flaky")
        return "ok"

    retry = duetime.Retry(attempts=3, backoff=1.0, factor=2.0, jitter=0.0)
    async with Scheduler() as s:
        start = anyio.current_time()
        h = s.call_soon(flaky, retry=retry)
        assert await h == "ok"
    assert [a for a, _ in attempts] == [1, 2, 3]
    assert [t - start for _, t in attempts] == pytest.approx([0, 1, 3], abs=1e-6)
    assert s.statistics().completed == 1
    assert s.statistics().failed == 0


async def test_retry_gives_up_and_respects_on() -> None:
    calls = 0

    def always() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionError("down")

    async with Scheduler(on_error=lambda h, e: None) as s:
        h = s.call_soon(always, retry=duetime.Retry(attempts=2, backoff=0.5, jitter=0))
        with pytest.raises(ConnectionError):
            await h
        assert calls == 2
        h2 = s.call_soon(boom, retry=duetime.Retry(attempts=5, on=(ConnectionError,)))
        with pytest.raises(ZeroDivisionError):
            await h2
    assert s.statistics().failed == 2


async def test_inherit_deadline_expires_before_start() -> None:
    ran: list[int] = []
    async with Scheduler() as s:
        with anyio.move_on_after(5):
            h = s.call_later(10, ran.append, 1, inherit_deadline=True)
        assert h.status is Status.EXPIRED
        assert isinstance(h.exception, duetime.DeadlineExpired)
        with pytest.raises(duetime.DeadlineExpired):
            await h
        await anyio.sleep(11)
    assert ran == []
    assert s.statistics().expired == 1


async def test_inherit_deadline_cuts_off_mid_run() -> None:
    async with Scheduler() as s:
        with anyio.move_on_after(5):
            h = s.call_later(1, anyio.sleep, 10, inherit_deadline=True)
            ok = s.call_later(1, anyio.sleep, 1, inherit_deadline=True)
        start = anyio.current_time()
        await ok
        with pytest.raises(duetime.DeadlineExpired):
            await h
        assert h.status is Status.FAILED
        assert anyio.current_time() - start == pytest.approx(5, abs=1e-6)


async def test_statistics_add_up_and_len() -> None:
    async with Scheduler(on_error=lambda h, e: None) as s:
        s.call_later(1, add, 1, 1)
        s.call_later(1, boom)
        s.call_later(5, add, 1, 1).cancel()
        s.call_later(100, add, 1, 1)
        s.call_soon(anyio.sleep, 50)
        assert s.statistics().pending == 4
        await anyio.sleep(2)
        st = s.statistics()
        assert (st.pending, st.running, st.completed, st.failed, st.cancelled) == (1, 1, 1, 1, 1)
        assert s.statistics().pending == 1
        assert st.max_lateness >= 0
        assert st.p99_lateness <= st.max_lateness


async def test_finished_handles_are_not_retained() -> None:
    class Payload:
        pass

    async with Scheduler() as s:
        h = s.call_soon(Payload)
        await h
        ref = weakref.ref(h)
        cancelled = weakref.ref(s.call_later(10, add, 1, 1))
        cancelled_handle = cancelled()
        assert cancelled_handle is not None
        cancelled_handle.cancel()
        del h, cancelled_handle
        await anyio.lowlevel.checkpoint()
        gc.collect()
        assert ref() is None
        # A lone cancelled timer may be kept until its due time, never longer.
        await anyio.sleep(11)
        gc.collect()
        assert cancelled() is None


async def test_cancel_storm_compacts_the_heap() -> None:
    async with Scheduler() as s:
        with memory_held() as held:
            handles = [s.call_later(1000 + i, add, i, i) for i in range(10_000)]
            for h in handles[:9_000]:
                h.cancel()
            del h, handles[:9_000]
            assert s.statistics().pending == 1_000
            # What 1,000 pending timers need; 9,000 cancelled ones kept would
            # hold about 1.5 MB more.
            await anyio.sleep(0.001)  # the timer loop compacts, between its passes
            assert held() < CANCEL_STORM_BUDGET
        assert await s.call_later(1, add, 1, 1) == 2


async def test_idle_scheduler_does_not_poll() -> None:
    async with Scheduler() as s:
        h = s.call_later(3600, add, 1, 1)
        await anyio.sleep(1)
        with duetime_activity() as activity:
            await anyio.sleep(3000)
        assert activity() == 0  # no wake-ups while nothing is due
        assert await h == 2


async def test_handle_repr_and_ids() -> None:
    async with Scheduler() as s:
        a = s.call_later(1, add, 1, 1, name="first")
        b = s.call_later(1, add, 1, 1)
        assert a.id != b.id
        assert "first" in repr(a)
        assert "PENDING" in repr(a)
        done: list[Status] = []
        a.add_done_callback(lambda h: done.append(h.status))
        await a
        a.add_done_callback(lambda h: done.append(h.status))
        assert done == [Status.COMPLETED, Status.COMPLETED]
        await b


async def test_callback_may_schedule_more_work() -> None:
    results: list[int] = []
    async with Scheduler() as s:

        def step(n: int) -> None:
            results.append(n)
            if n < 5:
                s.call_later(1, step, n + 1)

        s.call_soon(step, 0)
        await anyio.sleep(10)
    assert results == [0, 1, 2, 3, 4, 5]


async def test_async_callback_that_cancels_itself_leaves_loop_alive() -> None:
    async def self_cancel() -> None:
        with anyio.CancelScope() as scope:
            scope.cancel()
            await anyio.sleep(1)
        raise RuntimeError("after self-cancel")

    async with Scheduler(on_error=lambda h, e: None) as s:
        h = s.call_soon(self_cancel)
        with pytest.raises(RuntimeError):
            await h
        assert await s.call_later(1, add, 3, 3) == 6


async def test_many_concurrent_async_callbacks_all_start_on_time() -> None:
    starts: list[float] = []

    async def job() -> None:
        starts.append(anyio.current_time())
        await anyio.sleep(10)

    async with Scheduler() as s:
        t0 = anyio.current_time()
        handles = [s.call_later(1, job) for _ in range(300)]
        for h in handles:
            await h
    assert len(starts) == 300
    assert max(starts) - t0 == pytest.approx(1, abs=1e-6)


async def test_call_soon_and_heap_entries_merge_in_order() -> None:
    order: list[str] = []
    async with Scheduler() as s:
        now = anyio.current_time()
        s.call_at(now - 1, order.append, "past-at")  # due before anything else
        s.call_soon(order.append, "soon-1")
        s.call_at(now, order.append, "at-now")  # same when as soon-1 or earlier
        s.call_soon(order.append, "soon-2")
        await s.call_soon(order.append, "soon-3")
    assert order[0] == "past-at"
    assert order.index("soon-1") < order.index("soon-2") < order.index("soon-3")
    assert order.index("at-now") < order.index("soon-2")


async def test_statistics_inside_a_running_sync_callback() -> None:
    async with Scheduler() as s:

        def look() -> tuple[int, int]:
            st = s.statistics()
            return st.running, st.pending

        async def alook() -> tuple[int, int]:
            await anyio.lowlevel.checkpoint()
            return look()

        s.call_later(10, look)
        assert await s.call_soon(look) == (1, 1)
        assert await s.call_later(1, alook) == (1, 1)


async def test_cancelled_call_soon_never_runs() -> None:
    ran: list[int] = []
    async with Scheduler() as s:
        handles = [s.call_soon(ran.append, i) for i in range(10)]
        for h in handles[::2]:
            h.cancel()
        await anyio.sleep(1)
    assert ran == [1, 3, 5, 7, 9]
    assert s.statistics().cancelled == 5


async def test_large_due_batch_keeps_order_and_skips_cancelled() -> None:
    started: list[tuple[float, int]] = []
    handles: list[duetime.Handle[Any]] = []

    def sync_job(i: int) -> None:
        h = handles[i]
        started.append((h.when, h.id))

    async def async_job(i: int) -> None:
        h = handles[i]
        started.append((h.when, h.id))
        await anyio.sleep(1)

    async with Scheduler() as s:
        t0 = anyio.current_time() + 1
        for i in range(2000):
            job = async_job if i % 10 == 0 else sync_job
            handles.append(s.call_at(t0 + (i % 7) * 0.001, job, i))
        for h in handles[::3]:
            h.cancel()
        await anyio.sleep(5)
    assert started == sorted(started)
    assert len(started) == 2000 - len(handles[::3])
    assert all(h.status is Status.CANCELLED for h in handles[::3])
    assert s.statistics().completed == len(started)


async def test_exit_in_the_middle_of_a_due_batch_loses_nothing() -> None:
    reached = anyio.Event()
    handles: list[duetime.Handle[Any]] = []

    def sync_job(i: int) -> None:
        if i == 100:
            reached.set()

    async def async_job(i: int) -> None:
        await anyio.lowlevel.checkpoint()

    async with Scheduler() as s:
        for i in range(1000):
            handles.append(s.call_later(1, async_job if i % 2 else sync_job, i))
        await reached.wait()
    stats = s.statistics()
    assert all(h.done() for h in handles)
    assert stats.pending == stats.running == 0
    assert stats.completed + stats.cancelled == 1000
    assert 0 < stats.cancelled < 900


@pytest.mark.parametrize("grace", [None, 0.0])
async def test_exit_cancels_callbacks_waiting_for_the_limiter(grace: float | None) -> None:
    ran: list[str] = []

    async def job(name: str) -> None:
        ran.append(name)
        await anyio.sleep(0.2)

    async with Scheduler(max_concurrency=1, grace=grace) as s:
        h1 = s.call_soon(job, "h1")
        h2 = s.call_soon(job, "h2")
        await anyio.sleep(0.1)  # h1 runs; h2 waits for the limiter
    assert ran == ["h1"]
    assert h2.status is Status.CANCELLED
    assert h1.status is (Status.COMPLETED if grace is None else Status.CANCELLED)
    stats = s.statistics()
    assert stats.pending == stats.running == 0


async def test_outer_cancel_scope_ends_the_block_cleanly() -> None:
    handles: list[duetime.Handle[Any]] = []
    with anyio.move_on_after(5) as outer:
        async with Scheduler(on_exit="drain") as s:
            handles.append(s.call_later(100, add, 1, 1))
            handles.append(s.call_soon(anyio.sleep, 100))
            await anyio.sleep(50)  # cancelled at t=5
    assert outer.cancelled_caught
    assert [h.status for h in handles] == [Status.CANCELLED, Status.CANCELLED]
    stats = s.statistics()
    assert stats.pending == stats.running == 0


async def test_outer_cancel_while_draining_on_exit() -> None:
    with anyio.move_on_after(5) as outer:
        async with Scheduler(on_exit="drain", grace=None) as s:
            late = s.call_later(100, add, 1, 1)
        # leaving the block waits to drain `late`, at t=100: the outer scope wins
    assert outer.cancelled_caught
    assert late.status is Status.CANCELLED


async def test_cancelled_call_soon_storm_does_not_block_later_compaction() -> None:
    async with Scheduler() as s:
        soon = [s.call_soon(add, i, i) for i in range(10_000)]
        for h in soon:
            h.cancel()
        await anyio.lowlevel.checkpoint()  # the FIFO is popped
        await anyio.sleep(1)
        del soon
        with memory_held() as held:
            later = [s.call_later(1000 + i, add, i, i) for i in range(10_000)]
            for h in later:
                h.cancel()
            del h, later
            assert s.statistics().pending == 0
            # Compacted: the memory came back (10,000 cancelled timers kept
            # would hold about 1.5 MB).
            await anyio.sleep(0.001)  # the timer loop compacts, between its passes
            assert held() < CANCEL_STORM_BUDGET


async def test_done_callback_added_while_running_inline_is_called() -> None:
    seen: list[Status] = []
    async with Scheduler() as s:

        def job() -> int:
            duetime.current_run().handle.add_done_callback(lambda h: seen.append(h.status))
            return 42

        h = s.call_soon(job)
        await anyio.sleep(1)
        assert h.return_value == 42
    assert seen == [Status.COMPLETED]
    # A held handle does not keep the scheduler alive.
    scheduler = weakref.ref(s)
    del s
    gc.collect()
    assert scheduler() is None
    assert h.return_value == 42


async def test_no_phantom_running_callback_after_an_inline_one_returns() -> None:
    observed: list[tuple[int, bool]] = []
    async with Scheduler() as s:
        replies: duetime.PendingReplies[str] = duetime.PendingReplies(s, timeout=1)
        when = anyio.current_time() + 1

        def look(_h: object) -> None:
            try:
                duetime.current_run()
                inside = True
            except RuntimeError:
                inside = False
            observed.append((s.statistics().running, inside))

        s.call_at(when, add, 1, 1)  # a plain callback, due in the same pass
        replies.expect("k").add_done_callback(look)  # expires at the same time
        await anyio.sleep(2)
    assert observed == [(0, False)]


@pytest.mark.parametrize("on_exit", ["drain", "cancel"])
async def test_a_retry_due_while_exiting(on_exit: str) -> None:
    attempts: list[int] = []
    reported: list[BaseException] = []

    async def flaky() -> str:
        attempts.append(duetime.current_run().attempt)
        await anyio.sleep(0.5)
        if len(attempts) < 3:
            raise ConnectionError("down")
        return "ok"

    async with Scheduler(on_exit=on_exit, on_error=lambda h, e: reported.append(e)) as s:  # type: ignore[arg-type]
        h = s.call_soon(flaky, retry=duetime.Retry(attempts=3, backoff=1, jitter=0))
        await anyio.sleep(0.1)  # attempt 1 is running as the block exits
    if on_exit == "drain":
        assert h.status is Status.COMPLETED  # the block waited for every attempt
        assert attempts == [1, 2, 3]
        assert reported == []
    else:
        # Not retried once exiting: the running attempt's failure is final, and seen.
        assert h.status is Status.FAILED
        assert attempts == [1]
        assert len(reported) == 1


async def test_call_later_zero_from_a_callback_keeps_fifo_order_in_a_big_batch() -> None:
    order: list[str] = []
    async with Scheduler() as s:
        when = anyio.current_time() + 1

        def spawn() -> None:
            s.call_later(0, order.append, "A")  # scheduled first
            s.call_soon(order.append, "B")  # scheduled second, same time

        s.call_at(when, spawn)
        for _ in range(300):  # enough due at once to take the sorted-batch path
            s.call_at(when, add, 0, 0)
        await anyio.sleep(2)
    assert order == ["A", "B"]
