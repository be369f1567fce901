"""The plain call_*, cancel and fire paths: their shape, and what they still accept.

No test here measures time.  The benchmarks hold the hot paths to raw asyncio
(``benchmarks/bench_core.py``, ``bench_simple.py``); these tests pin the shape
that makes them cheap, counted with a profile hook: a plain ``call_*`` and a
plain ``cancel`` run no other Python function of duetime's, and firing due sync
callbacks calls none per callback.  They also pin what the plain path must
still do: refuse unknown options, refuse calls outside the block, count
cancels exactly.
"""

from __future__ import annotations

import contextvars
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import anyio
import anyio.lowlevel
import pytest

import duetime
from duetime import Handle, Scheduler, SchedulerClosed, Status

pytestmark = pytest.mark.anyio

_PACKAGE = str(Path(duetime.__file__).parent)
# The virtual clock's own time() is the backend clock under test: not duetime's hot path.
_CLOCK = str(Path(duetime.__file__).parent / "_virtual.py")


def noop() -> None:
    pass


@contextmanager
def duetime_calls() -> Iterator[list[str]]:
    """Record the name of every Python function of duetime's called meanwhile."""
    names: list[str] = []

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if event == "call":
            path = frame.f_code.co_filename
            if path.startswith(_PACKAGE) and path != _CLOCK:
                names.append(frame.f_code.co_qualname)

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield names
    finally:
        sys.setprofile(previous)


async def settle() -> None:
    """Let the timer loop go back to sleep on its next deadline."""
    for _ in range(5):
        await anyio.lowlevel.checkpoint()


@pytest.mark.parametrize("method", ["call_later", "call_at", "call_soon"])
async def test_a_plain_call_runs_no_other_duetime_function(method: str) -> None:
    async with Scheduler() as s:
        now = anyio.current_time()
        # An earlier entry the loop sleeps on, so the call measured does not re-arm it;
        # a first call_soon wakes the loop, so a second does not either.
        s.call_later(1, noop)
        await settle()
        call: Callable[[], Handle[None]] = {
            "call_later": lambda: s.call_later(10, noop),
            "call_at": lambda: s.call_at(now + 10, noop),
            "call_soon": lambda: s.call_soon(noop),
        }[method]
        if method == "call_soon":
            s.call_soon(noop)
        with duetime_calls() as names:
            h = call()
        assert names == [f"Scheduler.{method}"]
        assert isinstance(h, Handle)
        assert h.status is Status.PENDING


async def test_a_plain_cancel_runs_no_other_duetime_function() -> None:
    async with Scheduler() as s:
        h = s.call_later(10, noop)
        await settle()
        with duetime_calls() as names:
            assert h.cancel() is True
        assert names == ["PlainHandle.cancel"]
        assert h.status is Status.CANCELLED
        assert h.cancel() is False
        assert s.statistics().cancelled == 1


@pytest.mark.parametrize("burst", ["call_soon", "due_batch"])
async def test_due_sync_callbacks_fire_without_a_duetime_call_each(burst: str) -> None:
    n = 1000
    ran: list[int] = []
    async with Scheduler() as s:
        when = anyio.current_time() + 1
        for i in range(n):
            if burst == "call_soon":
                s.call_soon(ran.append, i)
            else:
                s.call_at(when, ran.append, i)
        with duetime_calls() as names:
            await anyio.sleep(2)
        assert ran == list(range(n))
        # A pass or two of the timer loop; none per callback.
        assert len(names) < n // 10, names[:20]
        assert s.statistics().completed == n


@pytest.mark.parametrize("method", ["call_later", "call_at", "call_soon"])
async def test_an_unknown_option_is_a_type_error_naming_it(method: str) -> None:
    async with Scheduler() as s:
        args: tuple[Any, ...] = () if method == "call_soon" else (1.0,)
        with pytest.raises(
            TypeError, match=rf"{method}\(\) got an unexpected keyword argument 'nmae'"
        ):
            getattr(s, method)(*args, noop, nmae="x")
        assert s.statistics().pending == 0


async def test_options_given_as_their_defaults_behave_as_none_given() -> None:
    var: contextvars.ContextVar[str] = contextvars.ContextVar("var", default="unset")
    async with Scheduler() as s:
        defaults: dict[str, Any] = {
            "name": None,
            "timeout": None,
            "retry": None,
            "in_thread": None,
            "inherit_deadline": False,
            "context": None,
        }
        handles = [
            s.call_soon(lambda: 1, **defaults),
            s.call_later(0.5, lambda: 2, **defaults),
            s.call_at(anyio.current_time() + 1, lambda: 3, **defaults),
        ]
        assert [await h for h in handles] == [1, 2, 3]
        # context= still applies on every call_*.
        ctx = contextvars.copy_context()
        ctx.run(var.set, "given")
        got = [
            await s.call_soon(var.get, context=ctx),
            await s.call_later(0.1, var.get, context=ctx),
            await s.call_at(anyio.current_time() + 0.1, var.get, context=ctx),
        ]
        assert got == ["given"] * 3
        assert await s.call_soon(var.get) == "unset"


async def test_plain_calls_outside_the_block_raise_scheduler_closed() -> None:
    s = Scheduler()
    calls: list[Callable[[], object]] = [
        lambda: s.call_soon(noop),
        lambda: s.call_later(1, noop),
        lambda: s.call_at(1.0, noop),
    ]
    for call in calls:
        with pytest.raises(SchedulerClosed, match="async with"):
            call()
    async with s:
        pass
    for call in calls:
        with pytest.raises(SchedulerClosed):
            call()


async def test_call_at_checks_its_time_before_anything_else() -> None:
    async with Scheduler() as s:
        call_at: Any = s.call_at  # bad input on purpose
        for bad in (True, "1", None):
            with pytest.raises(TypeError, match="when must be"):
                call_at(bad, noop)
        for bad_f in (float("nan"), float("inf"), -float("inf")):
            with pytest.raises(ValueError, match="finite"):
                s.call_at(bad_f, noop)
        with pytest.raises(TypeError, match="callable"):
            call_at(anyio.current_time(), "noop")
        h = s.call_at(int(anyio.current_time()) + 1, noop)  # an int is a loop time too
        assert isinstance(h.when, float)
        await h
        assert s.statistics().pending == 0


async def test_cancelling_queued_plain_callbacks_keeps_the_counts_exact() -> None:
    # With a concurrency limit, due plain callbacks wait in the runner queue
    # (PENDING to users) while an async callback holds the only slot.
    gate = anyio.Event()
    ran: list[int] = []

    async def hold() -> None:
        await gate.wait()

    async with Scheduler(max_concurrency=1) as s:
        s.call_soon(hold)
        queued = [s.call_later(0.1, ran.append, i) for i in range(300)]
        await anyio.sleep(0.2)
        assert all(h.status is Status.PENDING for h in queued)
        assert sum(h.cancel() for h in queued[::2]) == 150
        gate.set()
        await anyio.sleep(1)
        st = s.statistics()
    assert ran == list(range(1, 300, 2))
    assert (st.pending, st.running, st.completed, st.cancelled) == (0, 0, 151, 150)


async def test_a_cancel_storm_then_more_work_on_a_plain_heap() -> None:
    # Cancels are handed to the heap's dead count by the timer loop; its
    # compaction must never drop a live entry or lose a count.
    async with Scheduler() as s:
        keep = [s.call_later(5 + i * 1e-3, noop) for i in range(500)]
        doomed = [s.call_later(5 + i * 1e-3, noop) for i in range(5000)]
        for h in doomed:
            h.cancel()
        await settle()
        more = [s.call_later(1, noop) for _ in range(100)]
        for h in doomed[:10]:
            assert h.cancel() is False
        await anyio.sleep(10)
        st = s.statistics()
    assert all(h.status is Status.COMPLETED for h in keep + more)
    assert (st.pending, st.completed, st.cancelled) == (0, 600, 5000)
