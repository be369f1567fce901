"""Scheduler: one task group, one timer loop over a heap, awaitable handles."""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Literal

from anyio import (
    CancelScope,
    CapacityLimiter,
    Event,
    create_task_group,
    move_on_at,
)
from anyio.abc import TaskGroup
from anyio.lowlevel import current_token

from ._calls import Calls
from ._exceptions import SchedulerClosed
from ._execute import LATENESS_SAMPLES, Executor
from ._handle import (
    CANCELLED,
    PENDING,
    QUEUED,
    RUNNING,
    Handle,
)
from ._heap import TimerHeap
from ._lifecycle import exit_block
from ._options import to_delay
from ._wall import WallClockWatch

__all__ = ["Scheduler", "SchedulerStatistics"]


logger = logging.getLogger("duetime")

_INF = math.inf

_NEW, _OPEN, _CLOSING, _CLOSED = range(4)


@dataclass(frozen=True, slots=True)
class SchedulerStatistics:
    """A snapshot of a scheduler's counters.

    ``pending + running + completed + failed + cancelled + expired`` equals the
    number of callbacks ever scheduled (retries do not count as new callbacks).

    :ivar pending: scheduled, not started
    :ivar running: started, not finished
    :ivar completed: returned a value
    :ivar failed: raised (after their last retry)
    :ivar cancelled: cancelled before or while running
    :ivar expired: never started because an inherited deadline had passed
    :ivar max_lateness: the largest start delay past the due time seen, in seconds
    :ivar p99_lateness: the 99th percentile of the last 1024 start delays
    """

    pending: int
    running: int
    completed: int
    failed: int
    cancelled: int
    expired: int
    max_lateness: float
    p99_lateness: float


def _default_wall_clock() -> datetime:
    return datetime.now(UTC)


def _backend_clock() -> Callable[[], float]:
    """Return the running backend's raw clock function (cheaper than current_time)."""
    native = current_token().native_token
    if isinstance(native, asyncio.AbstractEventLoop):
        if type(native).time is asyncio.BaseEventLoop.time:
            # Same values as loop.time(), minus a Python-level method call.
            return time.monotonic
        return native.time
    import trio

    return trio.current_time


class Scheduler(Calls, Executor, WallClockWatch):
    """Run callbacks later: after a delay, at a time, or soon.

    Use it as ``async with Scheduler() as scheduler:``.  The block owns one anyio
    task group with one timer loop; callbacks are kept in a heap and the loop
    sleeps in a cancel scope whose deadline is the earliest due time.

    :param max_concurrency: how many callbacks may run at once (None: no limit).
        Due callbacks past the limit wait for an :class:`anyio.CapacityLimiter`.
    :param on_exit: ``"cancel"`` (callbacks not started end CANCELLED) or
        ``"drain"`` (one-shot callbacks still run at their due time and the block
        waits for them).  Recurring series are cancelled either way.
    :param grace: how long leaving the block waits for running callbacks before
        cancelling them (None: as long as they take)
    :param sync_in_thread: run sync callbacks in worker threads
        (:func:`anyio.to_thread.run_sync`) instead of inline on the event loop
    :param on_error: ``on_error(handle, exc)`` is called for every callback
        exception nobody observes (no awaiter and no done-callback when it
        failed).  Default: log it at ERROR on the ``duetime`` logger.
    :param wall_clock: returns the current wall time as an aware datetime; used
        only for datetime-based schedules (default: the system clock, UTC)
    :raises ValueError: on an invalid argument value
    :raises TypeError: on an argument of the wrong type
    """

    def __init__(
        self,
        *,
        max_concurrency: int | None = None,
        on_exit: Literal["cancel", "drain"] = "cancel",
        grace: float | None = None,
        sync_in_thread: bool = False,
        on_error: Callable[[Handle[Any], BaseException], object] | None = None,
        wall_clock: Callable[[], datetime] | None = None,
    ) -> None:
        if max_concurrency is not None:
            if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
                raise TypeError(f"max_concurrency must be an int, got {max_concurrency!r}")
            if max_concurrency < 1:
                raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
        if on_exit not in ("cancel", "drain"):
            raise ValueError(f"on_exit must be 'cancel' or 'drain', got {on_exit!r}")
        if grace is not None:
            grace = to_delay(grace, "grace")
        if on_error is not None and not callable(on_error):
            raise TypeError("on_error must be callable")
        if wall_clock is not None and not callable(wall_clock):
            raise TypeError("wall_clock must be callable")

        self._max_concurrency = max_concurrency
        self._on_exit = on_exit
        self._grace = grace
        self._sync_in_thread = bool(sync_in_thread)
        self._on_error = on_error
        self._wall_clock = wall_clock or _default_wall_clock

        self._state = _NEW
        self._closed = True  # no scheduling before __aenter__ or after exit
        self._tg: TaskGroup | None = None
        self._clock: Callable[[], float] = _clock_unavailable
        self._limiter: CapacityLimiter | None = None
        self._acquiring: set[Handle[Any]] = set()  # due, waiting for a limiter token
        # Bounds worker threads for sync callbacks (None: anyio's default limiter).
        self._thread_limiter: CapacityLimiter | None = None
        # Called by the timer loop right before it sleeps; returns the deadline.
        # ThreadedScheduler uses it to take in submissions without a wake-up.
        self._before_sleep: Callable[[], float] | None = None

        self._heap = TimerHeap()
        self._entries = self._heap.entries
        # The timer loop sleeps in _sleep_scope until _wake_at; -inf while awake so
        # that scheduling from inside a pass never re-arms.
        self._wake_at = -_INF
        self._sleep_scope: CancelScope | None = None

        # Due handles waiting for a runner task, and the runners' bookkeeping.
        self._q: deque[Handle[Any]] = deque()
        self._parked: deque[Event] = deque()
        self._avail = 0  # runners woken or spawned that have not looked at _q yet
        self._burst = 1
        self._recheck = False

        self._pending = 0
        self._running = 0
        self._completed = 0
        self._failed = 0
        self._cancelled = 0
        self._expired = 0
        self._max_late = 0.0
        self._lat: deque[float] = deque(maxlen=LATENESS_SAMPLES)
        # call_soon entries: due at once and already in (when, seq) order, so a
        # FIFO serves them without the heap's log n.
        self._soon: deque[Handle[Any]] = deque()
        # Due entries taken off the heap as one sorted batch, and how far along.
        self._batch: list[tuple[float, int, Any]] | None = None
        self._batch_j = 0
        # The plain sync callback running inline right now, if any.
        self._inline: Handle[Any] | None = None
        self._inline_started = 0.0

        # Exit waits on this while ``_quiet_mode`` holds (1: pending==0, 2: running==0).
        self._quiet: Event | None = None
        self._quiet_mode = 0

        # Pending datetime-based handles, and the one watchdog that re-checks them.
        self._wall_handles: dict[Handle[Any], None] = {}
        self._wall_offset = 0.0
        self._watchdog: Handle[Any] | None = None

        # Recurring series (or anything with .cancel()) cancelled when the block exits.
        self._series: set[Any] = set()

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Scheduler:
        if self._state != _NEW:
            raise RuntimeError("a Scheduler can be entered only once")
        self._clock = _backend_clock()
        if self._max_concurrency is not None:
            self._limiter = CapacityLimiter(self._max_concurrency)
        self._never = Event()  # the timer loop sleeps on it until its deadline
        tg = create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._state = _OPEN
        self._closed = False
        tg.start_soon(self._timer_loop, name=f"duetime timer loop {id(self):#x}")
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        self._closed = True
        self._state = _CLOSING
        for series in list(self._series):
            series.cancel()
        return await exit_block(self._tg, self._drain_on_exit, self._abort, exc_type, exc, tb)

    async def _drain_on_exit(self) -> None:
        """The block ended normally: apply ``on_exit``, then ``grace``."""
        if self._on_exit == "cancel":
            self._cancel_all_pending()
        grace_end = _INF if self._grace is None else self._clock() + self._grace
        while True:
            if self._on_exit == "drain":
                await self._wait_quiet(1)  # each pending one has started
            with move_on_at(grace_end) as grace:
                await self._wait_quiet(2)
            # A failed attempt may have put a retry back on the heap while
            # draining: wait for that one too.
            if grace.cancelled_caught or not self._pending:
                break

    def _abort(self) -> None:
        self._state = _CLOSED  # no retries from here on
        self._cancel_all_pending()
        assert self._tg is not None
        self._tg.cancel_scope.cancel()

    async def _wait_quiet(self, mode: int) -> None:
        while (self._pending if mode == 1 else self._running) > 0:
            self._quiet = Event()
            self._quiet_mode = mode
            await self._quiet.wait()

    def _cancel_all_pending(self) -> None:
        q = self._q
        doomed = self._heap.live() + list(self._soon) + list(q) + list(self._acquiring)
        if self._batch is not None:
            doomed += [e[2] for e in self._batch[self._batch_j :] if e[2]._when is e[0]]
            self._batch = None
        self._heap.clear()
        self._soon.clear()
        q.clear()
        self._wall_handles.clear()
        self._watchdog = None
        for h in doomed:
            x = h._x
            if x is not None and x.internal:
                continue
            if h._st <= QUEUED:
                self._pending -= 1
                self._cancelled += 1
                h._finish(CANCELLED, None)
            elif h._st == RUNNING and inspect.iscoroutine(h._result):
                # An async callback created inline but not yet picked up by a runner.
                h._result.close()
                self._running -= 1
                self._cancelled += 1
                h._finish(CANCELLED, None)

    def _closed_reason(self) -> str:
        if self._state == _NEW:
            return "the scheduler has not been entered: use 'async with Scheduler() as s:'"
        return "the scheduler is closed"

    # ------------------------------------------------------------------ cancellation

    def _cancel_pending(self, h: Handle[Any]) -> None:
        # Hot under cancel storms: the common case is inlined.  The handle's
        # tuple stays where it is (heap, FIFO or runner queue) and is skipped.
        if h._st == PENDING:
            self._heap.note_dead()
        self._pending -= 1
        self._cancelled += 1
        x = h._x
        if x is None:
            h._st = CANCELLED
            h._args = None
            h._owner = None
        else:
            if x.wall is not None:
                self._untrack_wall(h)
            h._finish(CANCELLED, None)
        if self._quiet_mode:
            self._check_quiet()

    def _cancel_running(self, h: Handle[Any]) -> bool:
        payload = h._result
        if isinstance(payload, CancelScope):
            h._extra().cancelling = True
            payload.cancel()
            return True
        if inspect.iscoroutine(payload):
            h._extra().cancelling = True  # its runner closes it instead of running it
            return True
        return False  # a sync callback running inline cannot be interrupted

    # ------------------------------------------------------------------ introspection

    def __len__(self) -> int:
        """The number of callbacks scheduled and not yet started."""
        return self._pending

    def statistics(self) -> SchedulerStatistics:
        """Return a snapshot of the scheduler's counters."""
        n = len(self._lat)
        p99 = 0.0
        if n:
            samples = sorted(self._lat)
            p99 = samples[min(n - 1, math.ceil(0.99 * n) - 1)]
        return SchedulerStatistics(
            pending=self._pending,
            running=self._running + (self._inline is not None),
            completed=self._completed,
            failed=self._failed,
            cancelled=self._cancelled,
            expired=self._expired,
            max_lateness=max(self._max_late, 0.0),
            p99_lateness=max(p99, 0.0),
        )

    @property
    def closed(self) -> bool:
        """Whether scheduling is refused (not entered yet, or exiting/exited)."""
        return self._closed

    def __repr__(self) -> str:
        state = ("new", "open", "closing", "closed")[self._state]
        return f"<Scheduler {state} pending={self._pending} running={self._running}>"


def _clock_unavailable() -> float:
    raise SchedulerClosed("the scheduler has not been entered")
