"""ThreadedScheduler: the same API for synchronous programs, from any thread.

These tests are synchronous.  Where time must pass, the background loop runs on
virtual time (VirtualTimeLoop or trio's MockClock), so a job due in an hour
completes at once.  Where a job must stay pending while this thread works, the
loop runs in real time and the job is an hour away: a virtual loop would jump
ahead whenever it idles, since it cannot see this thread's work.  Nothing sleeps.
"""

from __future__ import annotations

import itertools
import sys
import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from trio.testing import MockClock

import duetime
from duetime import CallbackCancelled, SchedulerClosed, Status, ThreadedScheduler
from duetime.testing import VirtualTimeLoop, VirtualWallClock


def make(backend: str = "asyncio", **kwargs: Any) -> ThreadedScheduler:
    if backend == "trio":
        options: dict[str, Any] = {"clock": MockClock(autojump_threshold=0)}
    else:
        options = {"loop_factory": VirtualTimeLoop}
    return ThreadedScheduler(backend, backend_options=options, **kwargs)


BACKENDS = pytest.mark.parametrize("backend", ["asyncio", "trio"])


def say_hello(name: str) -> str:
    return f"Greeting for {name} sent."


def divide_by_zero(x: int) -> float:
    return x / 0


@BACKENDS
def test_seed_004_one_time_task_at_a_wall_clock_time(backend: str) -> None:
    wall = VirtualWallClock(datetime(2026, 11, 23, 12, 0, tzinfo=UTC))
    target = datetime(2026, 11, 23, 12, 0, 2, tzinfo=UTC)

    async def wall_now() -> datetime:
        return wall()  # on the loop thread, where the virtual clock lives

    with make(backend, wall_clock=wall) as s:
        job = s.call_at(target, say_hello, "Alice")
        stamp = s.call_at(target, wall_now)
        assert isinstance(job.id, str)
        assert len(job.id) == 36
        assert job.result(timeout=5) == "Greeting for Alice sent."
        assert job.status is Status.COMPLETED
        assert timedelta(0) <= stamp.result(timeout=5) - target < timedelta(seconds=1)


@BACKENDS
def test_seed_004_task_with_exception(backend: str) -> None:
    with make(backend) as s:
        job = s.call_later(1, divide_by_zero, 10)
        err = job.exception(timeout=5)
        assert job.status is Status.FAILED
        assert repr(err) == "ZeroDivisionError('division by zero')"
        with pytest.raises(ZeroDivisionError):
            job.result()


@BACKENDS
def test_async_callbacks_run_on_the_loop(backend: str) -> None:
    import anyio

    async def fetch(x: int) -> int:
        await anyio.sleep(10)
        return x * 2

    with make(backend) as s:
        assert s.call_soon(fetch, 21).result(timeout=5) == 42


def test_eight_threads_scheduling_concurrently() -> None:
    with make() as s:
        jobs: list[duetime.Job[int]] = []
        lock = threading.Lock()

        def producer(base: int) -> None:
            mine = [s.call_later((i % 10) * 0.1, int, base + i) for i in range(200)]
            with lock:
                jobs.extend(mine)

        threads = [threading.Thread(target=producer, args=(k * 1000,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        results = sorted(job.result(timeout=10) for job in jobs)
    assert results == sorted(k * 1000 + i for k in range(8) for i in range(200))
    assert len({job.id for job in jobs}) == 1600
    assert all(job.status is Status.COMPLETED for job in jobs)


def test_a_hundred_thousand_pending_jobs_far_in_the_future() -> None:
    # A real-time loop: a virtual one would jump to the first due time while this
    # thread is still submitting (the loop cannot see work in other threads).
    with ThreadedScheduler() as s:
        jobs = [s.call_later(24 * 3600 + i, int, i) for i in range(100_000)]
        assert len(s) == 100_000
        assert s.get(jobs[-1].id) is jobs[-1]
        assert jobs[12_345].cancel() is True
    assert all(job.status is Status.CANCELLED for job in jobs)
    assert len(s) == 0


def test_slow_callback_does_not_delay_a_fast_one() -> None:
    release = threading.Event()
    with make(max_threads=4) as s:
        slow = s.call_soon(release.wait, 30)
        fast = s.call_later(0.01, str, "fast")
        assert fast.result(timeout=10) == "fast"
        assert slow.status is Status.RUNNING
        release.set()
        assert slow.result(timeout=10) is True


def test_shutdown_with_work_in_flight() -> None:
    release = threading.Event()
    s = ThreadedScheduler().start()
    running = s.call_soon(release.wait, 30)
    pending = s.call_later(3600, str, "never")
    started = threading.Event()
    running.add_done_callback(lambda j: None)  # exercised before it finishes
    s.call_soon(started.set).result(timeout=10)  # FIFO: after `running` started
    assert started.is_set()
    threading.Timer(0.05, release.set).start()
    s.shutdown(wait=True)  # waits for the running job, cancels the pending one
    assert running.status is Status.COMPLETED
    assert pending.status is Status.CANCELLED
    with pytest.raises(CallbackCancelled):
        pending.result()
    assert pending.cancel() is False
    s.shutdown()  # twice is safe
    errors: list[BaseException] = []

    def late() -> None:
        try:
            s.call_soon(print)
        except BaseException as exc:
            errors.append(exc)

    t = threading.Thread(target=late)
    t.start()
    t.join()
    assert len(errors) == 1
    assert isinstance(errors[0], SchedulerClosed)


def test_shutdown_without_wait_cancels_running_async_jobs() -> None:
    import anyio

    s = ThreadedScheduler().start()
    job = s.call_soon(anyio.sleep, 3600)
    s.shutdown(wait=False)
    assert job.status is Status.CANCELLED


def test_cancel_timeout_and_done_callbacks() -> None:
    with ThreadedScheduler() as s:
        job = s.call_later(10_000, str, "x")
        with pytest.raises(TimeoutError):
            job.result(timeout=0)
        seen: list[Status] = []
        job.add_done_callback(lambda j: seen.append(j.status))
        assert job.cancel() is True
        assert job.cancel() is False
        assert job.done()
        with pytest.raises(CallbackCancelled):
            job.result()
        assert seen == [Status.CANCELLED]
        done = s.call_soon(str, "y")
        done.result(timeout=5)
        done.add_done_callback(lambda j: seen.append(j.status))
        assert seen == [Status.CANCELLED, Status.COMPLETED]
        assert s.get("no-such-id") is None


def test_bad_input_raises_in_the_calling_thread() -> None:
    s = make()
    with pytest.raises(SchedulerClosed):
        s.call_soon(print)
    with s:
        with pytest.raises(ValueError, match="delay"):
            s.call_later(-1, print)
        with pytest.raises(TypeError):
            s.call_later(1, 42)  # type: ignore[call-overload]
        with pytest.raises(ValueError, match="naive"):
            s.call_at(datetime(2030, 1, 1), print)
        with pytest.raises(TypeError):
            s.call_at(12.5, print)  # type: ignore[call-overload]
        with pytest.raises(ValueError, match="cannot be enforced"):
            s.call_later(1, print, timeout=1, in_thread=False)
    with pytest.raises(ValueError, match="max_threads"):
        ThreadedScheduler(max_threads=0)
    with pytest.raises(ValueError, match="on_exit"):
        ThreadedScheduler(on_exit="later")  # type: ignore[arg-type]


def test_timedelta_delay_and_retry() -> None:
    calls = 0

    def flaky() -> str:
        nonlocal calls
        calls += 1
        if calls < 3:
            raise ConnectionError
        return "ok"

    with make() as s:
        job = s.call_later(
            timedelta(seconds=1), flaky, retry=duetime.Retry(attempts=3, backoff=1, jitter=0)
        )
        assert job.result(timeout=5) == "ok"
    assert calls == 3


@BACKENDS
def test_seed_004_periodic_task(backend: str, capsys: pytest.CaptureFixture[str]) -> None:
    # trio's MockClock jumps while a worker thread runs (the sync callback does),
    # so on trio this runs in real time at 10 ms instead.
    interval = timedelta(seconds=1) if backend == "asyncio" else timedelta(milliseconds=10)
    counter = itertools.count()

    def count_up(start: int, step: int) -> int:
        value = start + step * next(counter)
        print(f"Counting: {value}")
        return value

    scheduler = make() if backend == "asyncio" else ThreadedScheduler("trio")
    with scheduler as s:
        p = s.call_every(interval, count_up, 0, 1, max_runs=4)
        assert isinstance(p.id, str)
        assert s.get(p.id) is p
        assert p.wait(timeout=60) == 4
        assert p.status is Status.COMPLETED
        assert p.last_result() == 3
    assert capsys.readouterr().out.splitlines() == [f"Counting: {i}" for i in range(4)]


def test_recurring_job_cancel_pause_and_bad_input() -> None:
    with ThreadedScheduler() as s:
        p = s.call_every(3600, str, "tick", start=3600)
        with pytest.raises(LookupError):
            p.last_result()
        p.pause()
        p.resume()
        with pytest.raises(TimeoutError):
            p.wait(timeout=0)
        assert p.cancel() is True
        assert p.cancel() is False
        assert p.wait(timeout=10) == 0
        assert p.status is Status.CANCELLED
        with pytest.raises(ValueError, match="interval"):
            s.call_every(0, str)
        with pytest.raises(ValueError, match="misfire"):
            s.call_every(1, print, misfire="later")  # type: ignore[call-overload, call-arg]
        forever = s.call_every(3600, print, "x", start=3600)
    assert forever.status is Status.CANCELLED  # shutdown cancels series
    with pytest.raises(SchedulerClosed):
        s.call_every(1, str)


def test_scheduling_from_a_callback_on_the_loop_thread() -> None:
    import anyio

    done = threading.Event()
    with ThreadedScheduler() as s:

        async def chain() -> str:
            await anyio.lowlevel.checkpoint()
            s.call_later(0, done.set)  # from the loop thread itself
            return "chained"

        assert s.call_soon(chain).result(timeout=10) == "chained"
        assert done.wait(10)
        # later submissions from this thread still wake the loop
        assert s.call_later(0.01, str, "after").result(timeout=10) == "after"


def test_result_while_shutdown_is_finishing_a_running_job() -> None:
    release = threading.Event()
    s = ThreadedScheduler().start()
    job = s.call_soon(release.wait, 30)
    s.call_soon(str).result(timeout=10)  # `job` has started by now
    stopper = threading.Thread(target=s.shutdown)
    stopper.start()
    threading.Timer(0.05, release.set).start()
    assert job.result(timeout=10) is True  # waits for the job, not a TaskNotFinished
    stopper.join()


def test_a_job_that_fails_to_schedule_still_ends() -> None:
    from datetime import datetime as dt

    naive_clock = dt.now  # a broken wall clock: naive datetimes
    with ThreadedScheduler(wall_clock=naive_clock) as s:
        job = s.call_at(dt.now(UTC) + timedelta(seconds=1), str)
        assert isinstance(job.exception(timeout=10), TypeError)
        assert job.status is Status.FAILED


def test_shutdown_from_inside_a_job_is_refused() -> None:
    import anyio

    def stop_from_worker() -> None:
        s.shutdown()

    async def stop_from_loop() -> None:
        await anyio.lowlevel.checkpoint()
        s.shutdown()

    with ThreadedScheduler() as s:
        for func in (stop_from_worker, stop_from_loop):
            err = s.call_soon(func).exception(timeout=10)
            assert isinstance(err, RuntimeError)
            assert "own callbacks" in str(err)
        assert s.call_soon(str, "still running").result(timeout=10) == "still running"


# -- issue 12: BaseException, RUNNING only in a thread, loop-thread calls, shutdown ------


class Fatal(BaseException):
    """A custom BaseException that is not an Exception."""


def _exit() -> None:
    sys.exit(3)


def _interrupt() -> None:
    raise KeyboardInterrupt


def _fatal() -> None:
    raise Fatal("boom")


async def _async_exit() -> None:
    sys.exit(3)


RAISERS = pytest.mark.parametrize(
    ("func", "exc_type", "in_thread"),
    [
        (_exit, SystemExit, None),
        (_interrupt, KeyboardInterrupt, None),
        (_fatal, Fatal, None),
        (_exit, SystemExit, False),  # a sync job run inline on the loop
        (_async_exit, SystemExit, None),
    ],
)


@BACKENDS
@RAISERS
def test_a_base_exception_fails_its_job_alone(
    backend: str, func: Any, exc_type: type[BaseException], in_thread: bool | None
) -> None:
    reported: list[BaseException] = []
    with make(backend, on_error=lambda h, e: reported.append(e)) as s:
        other = s.call_later(5, str, "other")
        s.call_soon(func, in_thread=in_thread)  # nobody observes this one: reported
        bad = s.call_soon(func, in_thread=in_thread)
        assert isinstance(bad.exception(timeout=10), exc_type)
        assert bad.status is Status.FAILED
        with pytest.raises(exc_type):
            bad.result()  # no timeout: it must not block
        # The scheduler keeps running: nothing says "portal is not running".
        assert other.result(timeout=10) == "other"
        assert s.call_soon(str, "after").result(timeout=10) == "after"
        assert s.call_every(1, str, "tick", max_runs=2).wait(timeout=10) == 2
    # The job's own exception, not a wrapper (the observed one may be reported too,
    # if it failed before exception() got to it).
    assert reported
    assert all(type(e) is exc_type for e in reported)


@BACKENDS
def test_a_base_exception_in_a_recurring_job_fails_each_run(backend: str) -> None:
    with make(backend) as s:
        series = s.call_every(1, _fatal, max_runs=3)
        assert series.wait(timeout=10) == 3
        with pytest.raises(Fatal):
            series.last_result(timeout=10)
        assert s.call_soon(str, "alive").result(timeout=10) == "alive"


def test_retry_judges_a_base_exception_by_its_own_type() -> None:
    calls: list[int] = []

    def exits() -> None:
        calls.append(1)
        sys.exit(3)

    with make() as s:
        once = s.call_soon(exits, retry=duetime.Retry(attempts=3, backoff=1, jitter=0))
        assert isinstance(once.exception(timeout=10), SystemExit)
        assert len(calls) == 1  # Retry() retries Exceptions only
        calls.clear()
        again = s.call_soon(
            exits, retry=duetime.Retry(attempts=3, backoff=1, jitter=0, on=(SystemExit,))
        )
        assert isinstance(again.exception(timeout=10), SystemExit)
        assert len(calls) == 3


@BACKENDS
def test_a_base_exception_from_a_done_callback_or_on_error_is_contained(
    backend: str, caplog: pytest.LogCaptureFixture
) -> None:
    def on_error(handle: Any, exc: BaseException) -> None:
        raise Fatal("from on_error")

    gate = threading.Event()

    def gated() -> str:
        # Held until the done-callback is registered: the virtual clock could
        # otherwise finish the job first, and the callback would then run (and
        # raise) here, in the registering thread.
        gate.wait(30)
        return "x"

    with make(backend, on_error=on_error) as s:
        job = s.call_soon(gated)
        job.add_done_callback(lambda j: sys.exit(4))
        gate.set()
        assert job.result(timeout=10) == "x"
        s.call_soon(divide_by_zero, 1)  # unobserved: goes to on_error, which raises
        assert s.call_later(2, str, "alive").result(timeout=10) == "alive"
    assert "done-callback" in caplog.text
    assert "on_error raised" in caplog.text


@BACKENDS
def test_jobs_waiting_for_a_thread_are_pending_and_shutdown_cancels_them(backend: str) -> None:
    started = threading.Event()
    release = threading.Event()
    ran: list[int] = []

    def block() -> str:
        started.set()
        release.wait(30)
        return "blocker"

    s = make(backend, max_threads=1).start()
    blocker = s.call_soon(block)
    waiting = [s.call_soon(ran.append, i) for i in range(5)]
    assert started.wait(10)
    assert blocker.status is Status.RUNNING
    assert [j.status for j in waiting] == [Status.PENDING] * 5
    # Released only once shutdown has cancelled the waiting jobs.
    waiting[0].add_done_callback(lambda j: release.set())
    s.shutdown(wait=True)
    assert blocker.status is Status.COMPLETED
    assert [j.status for j in waiting] == [Status.CANCELLED] * 5
    assert ran == []


@BACKENDS
def test_a_cancelled_job_waiting_for_a_thread_never_runs(backend: str) -> None:
    release = threading.Event()
    ran: list[str] = []
    with make(backend, max_threads=1) as s:
        blocker = s.call_soon(release.wait, 30)
        job = s.call_soon(ran.append, "x")
        assert job.status is Status.PENDING
        assert job.cancel() is True
        assert job.status is Status.CANCELLED
        release.set()
        assert blocker.result(timeout=10) is True
        assert s.call_soon(ran.append, "y").result(timeout=10) is None
    assert ran == ["y"]


@BACKENDS
def test_timeout_counts_from_when_a_thread_picks_the_job_up(backend: str) -> None:
    release = threading.Event()
    with make(backend, max_threads=1) as s:
        s.call_soon(release.wait, 30)
        job = s.call_soon(str, "late but fine", timeout=0.25)
        # The only thread is busy for 0.5 s (loop time), twice the job's timeout.
        s.call_later(0.5, release.set, in_thread=False)
        assert job.result(timeout=30) == "late but fine"
        # Once it runs, the timeout still applies.
        stuck = s.call_soon(threading.Event().wait, 30, timeout=0.1)
        assert isinstance(stuck.exception(timeout=30), TimeoutError)


@BACKENDS
def test_job_calls_from_the_loop_thread(backend: str) -> None:
    fired: list[Status] = []
    out: dict[str, Any] = {}
    # Real time: on a virtual clock the loop could jump past both while idle.
    with ThreadedScheduler(backend) as s:
        target = s.call_later(3600, str, "target")
        victim = s.call_later(3600, str, "victim")

        async def from_loop() -> None:
            target.add_done_callback(lambda j: fired.append(j.status))
            out["cancel"] = victim.cancel()
            try:
                target.result()
            except RuntimeError as exc:
                out["result"] = exc

        s.call_soon(from_loop).result(timeout=10)
        assert target.cancel() is True
    assert fired == [Status.CANCELLED]
    assert out["cancel"] is True
    assert victim.status is Status.CANCELLED
    assert "loop thread" in str(out["result"])  # instead of blocking the loop for ever


@BACKENDS
def test_a_second_concurrent_shutdown_waits_for_the_first(backend: str) -> None:
    started = threading.Event()
    release = threading.Event()
    closing = threading.Event()
    seen: list[Status] = []

    def block() -> None:
        started.set()
        release.wait(30)

    s = make(backend, max_threads=1).start()
    running = s.call_soon(block)
    s.call_soon(str).add_done_callback(lambda j: closing.set())  # cancelled by shutdown
    assert started.wait(10)
    first = threading.Thread(target=s.shutdown)
    first.start()
    assert closing.wait(10)  # the first shutdown is under way

    def second() -> None:
        s.shutdown(wait=True)
        seen.append(running.status)

    other = threading.Thread(target=second)
    other.start()
    other.join(0.2)
    assert other.is_alive()  # still waiting for the first shutdown
    release.set()
    first.join(10)
    other.join(10)
    assert seen == [Status.COMPLETED]
