"""Scheduler: one task group, one timer loop over a heap, awaitable handles."""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from heapq import heappush
from types import TracebackType
from typing import Any, Literal, TypeVar, TypeVarTuple, Unpack, overload

from anyio import (
    CancelScope,
    CapacityLimiter,
    Event,
    create_task_group,
    current_effective_deadline,
    move_on_after,
)
from anyio.abc import TaskGroup
from anyio.lowlevel import current_token

from ._exceptions import DeadlineExpired, SchedulerClosed
from ._execute import LATENESS_SAMPLES, Executor, is_async
from ._handle import (
    CANCELLED,
    EXPIRED,
    PENDING,
    QUEUED,
    RUNNING,
    Extra,
    Handle,
)
from ._heap import TimerHeap
from ._recurring import Misfire, Overlap, Recurring
from ._retry import Retry
from ._wall import WallClockWatch

__all__ = ["Scheduler", "SchedulerStatistics"]

T = TypeVar("T")
PosArgsT = TypeVarTuple("PosArgsT")

logger = logging.getLogger("duetime")

_INF = math.inf
_LATENESS_SAMPLES = LATENESS_SAMPLES

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


def _to_delay(delay: object, what: str = "delay") -> float:
    if type(delay) is float or type(delay) is int:
        value = float(delay)
    elif isinstance(delay, timedelta):
        value = delay.total_seconds()
    elif isinstance(delay, int | float) and not isinstance(delay, bool):
        value = float(delay)
    else:
        raise TypeError(f"{what} must be a number of seconds or a timedelta, got {delay!r}")
    if not 0.0 <= value < _INF:
        raise ValueError(f"{what} must be finite and >= 0, got {value!r}")
    return value


def _check_aware(when: datetime) -> None:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(
            f"naive datetime {when!r}: pass an aware datetime (e.g. tzinfo=timezone.utc)"
        )


def make_extra(
    func: Callable[..., Any],
    name: str | None,
    timeout: float | None,
    retry: Retry | None,
    in_thread: bool | None,
    inherit_deadline: bool,
    sync_in_thread: bool,
    x: Extra | None = None,
) -> Extra:
    """Validate the options shared by every ``call_*`` and return them as an Extra.

    :raises TypeError: if ``func`` is not callable or an option has a bad type
    :raises ValueError: if an option has a bad value, or ``timeout`` is asked of a
        sync callback that would run inline (it could not be enforced)
    """
    if not callable(func):
        raise TypeError(f"func must be callable, got {func!r}")
    if x is None:
        x = Extra()
    if name is not None:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r}")
        x.name = name
    if in_thread is not None:
        if not isinstance(in_thread, bool):
            raise TypeError(f"in_thread must be a bool, got {in_thread!r}")
        x.in_thread = in_thread
    if timeout is not None:
        t = _to_delay(timeout, "timeout")
        if t == 0:
            raise ValueError("timeout must be > 0")
        threaded = in_thread if in_thread is not None else sync_in_thread
        if not threaded and not is_async(func):
            raise ValueError(
                "timeout= cannot be enforced on a sync callback run inline on the "
                "event loop; pass in_thread=True (or use an async callback)"
            )
        x.timeout = t
    if retry is not None:
        if not isinstance(retry, Retry):
            raise TypeError(f"retry must be a duetime.Retry, got {retry!r}")
        x.retry = retry
    if not isinstance(inherit_deadline, bool):
        raise TypeError(f"inherit_deadline must be a bool, got {inherit_deadline!r}")
    return x


class Scheduler(Executor, WallClockWatch):
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
            grace = _to_delay(grace, "grace")
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
        self._lat: deque[float] = deque(maxlen=_LATENESS_SAMPLES)
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
        try:
            for series in list(self._series):
                series.cancel()
            if exc is None:
                if self._on_exit == "cancel":
                    self._cancel_all_pending()
                else:
                    await self._wait_quiet(1)
                with move_on_after(_INF if self._grace is None else self._grace):
                    await self._wait_quiet(2)
        except BaseException as inner:
            # Cancelled (or interrupted) while draining: abort, let the task group
            # see the new exception.
            self._abort()
            await self._tg.__aexit__(type(inner), inner, inner.__traceback__)
            raise
        finally:
            self._state = _CLOSED
        self._abort()
        try:
            return await self._tg.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            # The body's own exception leaves as itself, never wrapped.
            if exc is not None and len(group.exceptions) == 1 and group.exceptions[0] is exc:
                return False
            raise

    def _abort(self) -> None:
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
        doomed = self._heap.live() + list(self._soon) + list(q)
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

    # ------------------------------------------------------------------ scheduling

    @overload
    def call_soon(
        self,
        func: Callable[[Unpack[PosArgsT]], Coroutine[Any, Any, T]],
        /,
        *args: Unpack[PosArgsT],
        name: str | None = ...,
        timeout: float | None = ...,
        retry: Retry | None = ...,
        in_thread: bool | None = ...,
        inherit_deadline: bool = ...,
    ) -> Handle[T]: ...

    @overload
    def call_soon(
        self,
        func: Callable[[Unpack[PosArgsT]], T],
        /,
        *args: Unpack[PosArgsT],
        name: str | None = ...,
        timeout: float | None = ...,
        retry: Retry | None = ...,
        in_thread: bool | None = ...,
        inherit_deadline: bool = ...,
    ) -> Handle[T]: ...

    def call_soon(  # type: ignore[misc]  # mypy: TypeVarTuple overload impl
        self,
        func: Callable[..., Any],
        /,
        *args: Any,
        name: str | None = None,
        timeout: float | None = None,
        retry: Retry | None = None,
        in_thread: bool | None = None,
        inherit_deadline: bool = False,
    ) -> Handle[Any]:
        """Run ``func(*args)`` as soon as possible, after callbacks already due.

        Keyword options are described in :meth:`call_later`.

        :return: the callback's :class:`Handle`
        :raises SchedulerClosed: outside the ``async with`` block
        :raises TypeError: if ``func`` is not callable or an option has a bad type
        :raises ValueError: if an option has a bad value
        """
        if self._closed:
            raise SchedulerClosed(self._closed_reason())
        when = self._clock()
        if (
            name is not None
            or timeout is not None
            or retry is not None
            or in_thread is not None
            or inherit_deadline
        ):
            return self._schedule_opts(
                when, func, args, name, timeout, retry, in_thread, inherit_deadline
            )
        if not callable(func):
            raise TypeError(f"func must be callable, got {func!r}")
        h: Handle[Any] = Handle(when, func, args, self)
        self._soon.append(h)
        self._pending += 1
        if self._wake_at > -_INF:
            self._rearm(-_INF)
        return h

    @overload
    def call_later(
        self,
        delay: float | timedelta,
        func: Callable[[Unpack[PosArgsT]], Coroutine[Any, Any, T]],
        /,
        *args: Unpack[PosArgsT],
        name: str | None = ...,
        timeout: float | None = ...,
        retry: Retry | None = ...,
        in_thread: bool | None = ...,
        inherit_deadline: bool = ...,
    ) -> Handle[T]: ...

    @overload
    def call_later(
        self,
        delay: float | timedelta,
        func: Callable[[Unpack[PosArgsT]], T],
        /,
        *args: Unpack[PosArgsT],
        name: str | None = ...,
        timeout: float | None = ...,
        retry: Retry | None = ...,
        in_thread: bool | None = ...,
        inherit_deadline: bool = ...,
    ) -> Handle[T]: ...

    def call_later(  # type: ignore[misc]  # mypy: TypeVarTuple overload impl
        self,
        delay: float | timedelta,
        func: Callable[..., Any],
        /,
        *args: Any,
        name: str | None = None,
        timeout: float | None = None,
        retry: Retry | None = None,
        in_thread: bool | None = None,
        inherit_deadline: bool = False,
    ) -> Handle[Any]:
        """Run ``func(*args)`` after ``delay`` seconds (a number or a timedelta).

        ``func`` is a sync or an async function; keyword arguments for it go
        through :func:`functools.partial`.

        :param name: a name for repr and logs
        :param timeout: seconds each run may take before it is cancelled and fails
            with :exc:`TimeoutError`.  Not allowed for a sync callback run inline
            (it cannot be interrupted): use ``in_thread=True``.
        :param retry: a :class:`Retry` policy for failed runs
        :param in_thread: run a sync callback in a worker thread (overrides the
            scheduler's ``sync_in_thread``)
        :param inherit_deadline: carry the caller's effective deadline into the
            callback: it ends EXPIRED without running if it would start at or
            after that deadline, and FAILED with :exc:`DeadlineExpired` if the
            deadline cuts it off
        :return: the callback's :class:`Handle`
        :raises SchedulerClosed: outside the ``async with`` block
        :raises TypeError: if ``func`` is not callable or an argument has a bad type
        :raises ValueError: if ``delay`` is negative, NaN or infinite, or an
            option has a bad value
        """
        if type(delay) is not float and type(delay) is not int:
            delay = _to_delay(delay)
        elif not 0.0 <= delay < _INF:
            raise ValueError(f"delay must be finite and >= 0, got {delay!r}")
        if self._closed:
            raise SchedulerClosed(self._closed_reason())
        when = self._clock() + delay
        if (
            name is not None
            or timeout is not None
            or retry is not None
            or in_thread is not None
            or inherit_deadline
        ):
            return self._schedule_opts(
                when, func, args, name, timeout, retry, in_thread, inherit_deadline
            )
        if not callable(func):
            raise TypeError(f"func must be callable, got {func!r}")
        h: Handle[Any] = Handle(when, func, args, self)
        heappush(self._entries, (when, h._id, h))
        self._pending += 1
        if when < self._wake_at:
            self._rearm(when)
        return h

    @overload
    def call_at(
        self,
        when: float | datetime,
        func: Callable[[Unpack[PosArgsT]], Coroutine[Any, Any, T]],
        /,
        *args: Unpack[PosArgsT],
        name: str | None = ...,
        timeout: float | None = ...,
        retry: Retry | None = ...,
        in_thread: bool | None = ...,
        inherit_deadline: bool = ...,
    ) -> Handle[T]: ...

    @overload
    def call_at(
        self,
        when: float | datetime,
        func: Callable[[Unpack[PosArgsT]], T],
        /,
        *args: Unpack[PosArgsT],
        name: str | None = ...,
        timeout: float | None = ...,
        retry: Retry | None = ...,
        in_thread: bool | None = ...,
        inherit_deadline: bool = ...,
    ) -> Handle[T]: ...

    def call_at(  # type: ignore[misc]  # mypy: TypeVarTuple overload impl
        self,
        when: float | datetime,
        func: Callable[..., Any],
        /,
        *args: Any,
        name: str | None = None,
        timeout: float | None = None,
        retry: Retry | None = None,
        in_thread: bool | None = None,
        inherit_deadline: bool = False,
    ) -> Handle[Any]:
        """Run ``func(*args)`` at ``when``.

        A float is a time on the event loop's clock (``anyio.current_time()``).
        An aware datetime is wall-clock time: it fires within about a second of
        that wall time even if the system clock is stepped or the machine sleeps
        meanwhile.  A time in the past runs as soon as possible.  Options are as
        for :meth:`call_later`.

        :return: the callback's :class:`Handle`
        :raises SchedulerClosed: outside the ``async with`` block
        :raises TypeError: if ``when`` is neither a number nor a datetime, or
            ``func`` is not callable
        :raises ValueError: if ``when`` is NaN or infinite, or a naive datetime
        """
        wall: datetime | None = None
        if isinstance(when, datetime):
            _check_aware(when)
            wall = when
        elif isinstance(when, bool) or not isinstance(when, int | float):
            raise TypeError(f"when must be a loop time (float) or an aware datetime, got {when!r}")
        elif not math.isfinite(when):
            raise ValueError(f"when must be finite, got {when!r}")
        if self._closed:
            raise SchedulerClosed(self._closed_reason())
        if wall is not None:
            now = self._clock()
            loop_when = now + max((wall - self._wall_clock()).total_seconds(), 0.0)
            x = Extra()
            x.wall = wall
            return self._schedule_opts(
                loop_when, func, args, name, timeout, retry, in_thread, inherit_deadline, x
            )
        fwhen = float(when)  # type: ignore[arg-type]
        if (
            name is not None
            or timeout is not None
            or retry is not None
            or in_thread is not None
            or inherit_deadline
        ):
            return self._schedule_opts(
                fwhen, func, args, name, timeout, retry, in_thread, inherit_deadline
            )
        if not callable(func):
            raise TypeError(f"func must be callable, got {func!r}")
        h: Handle[Any] = Handle(fwhen, func, args, self)
        heappush(self._entries, (fwhen, h._id, h))
        self._pending += 1
        if fwhen < self._wake_at:
            self._rearm(fwhen)
        return h

    @overload
    def call_every(
        self,
        interval: float | timedelta,
        func: Callable[[Unpack[PosArgsT]], Coroutine[Any, Any, T]],
        /,
        *args: Unpack[PosArgsT],
        start: float | timedelta | datetime = ...,
        max_runs: int | None = ...,
        until: float | timedelta | datetime | None = ...,
        jitter: float | timedelta = ...,
        misfire: Misfire = ...,
        overlap: Overlap = ...,
        name: str | None = ...,
        timeout: float | None = ...,
        retry: Retry | None = ...,
        in_thread: bool | None = ...,
        inherit_deadline: bool = ...,
    ) -> Recurring[T]: ...

    @overload
    def call_every(
        self,
        interval: float | timedelta,
        func: Callable[[Unpack[PosArgsT]], T],
        /,
        *args: Unpack[PosArgsT],
        start: float | timedelta | datetime = ...,
        max_runs: int | None = ...,
        until: float | timedelta | datetime | None = ...,
        jitter: float | timedelta = ...,
        misfire: Misfire = ...,
        overlap: Overlap = ...,
        name: str | None = ...,
        timeout: float | None = ...,
        retry: Retry | None = ...,
        in_thread: bool | None = ...,
        inherit_deadline: bool = ...,
    ) -> Recurring[T]: ...

    def call_every(  # type: ignore[misc]  # mypy: TypeVarTuple overload impl
        self,
        interval: float | timedelta,
        func: Callable[..., Any],
        /,
        *args: Any,
        start: float | timedelta | datetime = 0.0,
        max_runs: int | None = None,
        until: float | timedelta | datetime | None = None,
        jitter: float | timedelta = 0.0,
        misfire: Misfire = "coalesce",
        overlap: Overlap = "skip",
        name: str | None = None,
        timeout: float | None = None,
        retry: Retry | None = None,
        in_thread: bool | None = None,
        inherit_deadline: bool = False,
    ) -> Recurring[Any]:
        """Run ``func(*args)`` every ``interval`` on a fixed-rate grid.

        Run ``k`` is due at ``start + k * interval`` (plus that run's own random
        jitter in ``[0, jitter)``); slow runs never shift the grid.  See
        :class:`Recurring` and ``docs/recurring.md``.

        :param start: a delay, timedelta or aware datetime for the first run
            (default: now)
        :param max_runs: stop after this many runs have started
        :param until: start no run due after this delay, timedelta or datetime
        :param jitter: per-run random delay, ``0 <= jitter < interval``
        :param misfire: ``"coalesce"``, ``"skip"`` or ``"catch_up"``: what to do
            when more than one grid point is due at once
        :param overlap: ``"skip"``, ``"wait"`` or ``"allow"``: what to do when a
            run is due while the previous one still runs
        :return: the :class:`Recurring` series; other options as for
            :meth:`call_later`, applied to each run
        :raises SchedulerClosed: outside the ``async with`` block
        :raises TypeError: on an argument of the wrong type
        :raises ValueError: on an argument out of range or an unknown policy name
        """
        return Recurring(
            self,
            interval,
            func,
            args,
            start=start,
            max_runs=max_runs,
            until=until,
            jitter=jitter,
            misfire=misfire,
            overlap=overlap,
            name=name,
            timeout=timeout,
            retry=retry,
            in_thread=in_thread,
            inherit_deadline=inherit_deadline,
        )

    def _closed_reason(self) -> str:
        if self._state == _NEW:
            return "the scheduler has not been entered: use 'async with Scheduler() as s:'"
        return "the scheduler is closed"

    def _schedule_opts(
        self,
        when: float,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        name: str | None,
        timeout: float | None,
        retry: Retry | None,
        in_thread: bool | None,
        inherit_deadline: bool,
        x: Extra | None = None,
    ) -> Handle[Any]:
        """The slow path of every ``call_*``: validate options, build the Extra."""
        x = make_extra(
            func, name, timeout, retry, in_thread, inherit_deadline, self._sync_in_thread, x
        )
        h: Handle[Any] = Handle(when, func, args, self, x)
        if inherit_deadline:
            deadline = current_effective_deadline()
            if deadline < _INF:
                x.deadline = deadline
                if when >= deadline:
                    # Never started: it could not begin before the deadline.
                    self._expired += 1
                    h._finish(EXPIRED, DeadlineExpired(f"{h.name} was due after its deadline"))
                    return h
        self._push_new(h)
        return h

    def _push_new(self, h: Handle[Any]) -> None:
        """Put a freshly made handle with an Extra on the heap (slow path)."""
        x = h._x
        when = h._when
        heappush(self._entries, (when, h._id, h))
        if x is None or not x.internal:
            self._pending += 1
        if x is not None and x.wall is not None:
            self._track_wall(h)
        if when < self._wake_at:
            self._rearm(when)

    def _schedule_internal(self, when: float, func: Callable[[], object]) -> Handle[Any]:
        """Schedule an internal sync callback: not counted, never reported."""
        x = Extra()
        x.internal = True
        h: Handle[Any] = Handle(when, func, (), self, x)
        self._push_new(h)
        return h

    def _cancel_internal(self, h: Handle[Any]) -> None:
        """Drop an entry made by :meth:`_schedule_internal` (uncounted, O(1))."""
        if h._st == PENDING:
            h._st = CANCELLED
            h._func = None
            self._heap.note_dead()

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
