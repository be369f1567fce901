"""Scheduler: one task group, one timer loop over a heap, awaitable handles."""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from heapq import heappop, heappush
from types import CoroutineType, TracebackType
from typing import Any, Literal, TypeVar, TypeVarTuple, Unpack, overload

from anyio import (
    CancelScope,
    CapacityLimiter,
    Event,
    create_task_group,
    current_effective_deadline,
    get_cancelled_exc_class,
    move_on_after,
    sleep_forever,
    to_thread,
)
from anyio.abc import TaskGroup
from anyio.lowlevel import current_token

from ._exceptions import DeadlineExpired, SchedulerClosed
from ._handle import (
    CANCELLED,
    COMPLETED,
    EXPIRED,
    FAILED,
    PENDING,
    QUEUED,
    RUNNING,
    Extra,
    Handle,
    _current,
)
from ._heap import TimerHeap
from ._retry import Retry

__all__ = ["Scheduler", "SchedulerStatistics"]

T = TypeVar("T")
PosArgsT = TypeVarTuple("PosArgsT")

logger = logging.getLogger("duetime")

_INF = math.inf
# A sync callback that holds the event loop longer than this is reported.
BLOCKING_WARN_SECONDS = 0.1
# The wall-clock watchdog re-checks this often while datetime entries are pending.
_WALL_CHECK_INTERVAL = 1.0
# A change of (wall time - loop time) beyond this is a clock step or a suspend.
_WALL_STEP_TOLERANCE = 0.1
# Runner tasks parked for reuse; beyond this an idle runner exits.
_MAX_PARKED = 256
_MAX_BURST = 512
_LATENESS_SAMPLES = 1024

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
    return datetime.now(timezone.utc)


def _backend_clock() -> Callable[[], float]:
    """Return the running backend's raw clock function (cheaper than current_time)."""
    native = current_token().native_token
    if isinstance(native, asyncio.AbstractEventLoop):
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


def _is_async(func: Callable[..., Any]) -> bool:
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(func, "__call__", None)  # noqa: B004 - an async __call__ counts
    return call is not None and inspect.iscoroutinefunction(call)


def _check_aware(when: datetime) -> None:
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(
            f"naive datetime {when!r}: pass an aware datetime (e.g. tzinfo=timezone.utc)"
        )


class Scheduler:
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
        self._lat: list[float] = [0.0] * _LATENESS_SAMPLES
        self._lat_n = 0

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

    def _check_quiet(self) -> None:
        mode = self._quiet_mode
        if mode and (self._pending if mode == 1 else self._running) == 0:
            assert self._quiet is not None
            self._quiet_mode = 0
            self._quiet.set()

    def _cancel_all_pending(self) -> None:
        q = self._q
        doomed = self._heap.live() + list(q)
        self._heap.clear()
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

    def call_soon(
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
        heappush(self._entries, (when, h._id, h))
        self._pending += 1
        if when < self._wake_at:
            self._rearm(when)
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

    def call_later(
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

    def call_at(
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
        fwhen = float(when)
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
            threaded = in_thread if in_thread is not None else self._sync_in_thread
            if not threaded and not _is_async(func):
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

    def _rearm(self, when: float) -> None:
        self._wake_at = when
        scope = self._sleep_scope
        if scope is not None:
            scope.deadline = when

    # ------------------------------------------------------------------ wall clock

    def _track_wall(self, h: Handle[Any]) -> None:
        if not self._wall_handles:
            self._wall_offset = self._wall_clock().timestamp() - self._clock()
        self._wall_handles[h] = None
        if self._watchdog is None:
            self._watchdog = self._schedule_internal(
                self._clock() + _WALL_CHECK_INTERVAL, self._check_wall
            )

    def _untrack_wall(self, h: Handle[Any]) -> None:
        x = h._x
        if x is not None and x.wall is not None:
            x.wall = None
            self._wall_handles.pop(h, None)

    def _check_wall(self) -> None:
        """The watchdog: re-key datetime entries after a clock step or a suspend.

        One internal entry for the whole scheduler, re-armed once a second only
        while datetime entries are pending; a normal tick costs O(1).
        """
        self._watchdog = None
        if not self._wall_handles:
            return
        now = self._clock()
        wall_now = self._wall_clock()
        offset = wall_now.timestamp() - now
        if abs(offset - self._wall_offset) > _WALL_STEP_TOLERANCE:
            self._wall_offset = offset
            for h in list(self._wall_handles):
                x = h._x
                assert x is not None
                new_when = now + max((x.wall - wall_now).total_seconds(), 0.0)
                if abs(new_when - h._when) > _WALL_STEP_TOLERANCE:
                    # The old tuple goes stale (its float is no longer h._when).
                    h._when = new_when
                    heappush(self._entries, (new_when, h._id, h))
                    self._heap.note_dead()
                    if new_when < self._wake_at:
                        self._rearm(new_when)
        self._watchdog = self._schedule_internal(now + _WALL_CHECK_INTERVAL, self._check_wall)

    # ------------------------------------------------------------------ cancellation

    def _cancel_pending(self, h: Handle[Any]) -> None:
        if h._st == PENDING:
            self._heap.note_dead()
        # A QUEUED handle stays in _q; its runner skips it.
        self._untrack_wall(h)
        self._pending -= 1
        self._cancelled += 1
        h._finish(CANCELLED, None)
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

    # ------------------------------------------------------------------ the timer loop

    async def _timer_loop(self) -> None:
        entries = self._entries
        clock = self._clock
        heap = self._heap
        while True:
            now = clock()
            if entries and entries[0][0] <= now:
                self._run_due(now)
            if self._q:
                self._pump()
            elif self._recheck:
                self._recheck = False
                self._burst = 1
            if self._quiet_mode:
                self._check_quiet()
            # Drop dead tuples from the top so we don't wake up for nothing.
            while entries:
                when, _, top = entries[0]
                if top._st == PENDING and top._when is when:
                    break
                heappop(entries)
                heap.dead -= 1
            if self._recheck:
                deadline = -_INF  # only yield, so runners can take the queued work
            else:
                deadline = entries[0][0] if entries else _INF
            with CancelScope(deadline=deadline) as scope:
                self._sleep_scope = scope
                self._wake_at = deadline
                try:
                    await sleep_forever()
                finally:
                    self._wake_at = -_INF
                    self._sleep_scope = None

    def _run_due(self, now: float) -> None:
        """Run or dispatch every entry due at ``now``, in (when, seq) order.

        Plain sync callbacks run right here, inline, one after another: the
        cheapest path there is.  Everything else goes to a runner task.
        """
        entries = self._entries
        heap = self._heap
        clock = self._clock
        slow = self._sync_in_thread or self._limiter is not None
        lat = self._lat
        set_current = _current.set
        reset_current = _current.reset
        t = now
        while entries and entries[0][0] <= now:
            when, _, h = heappop(entries)
            if h._st or h._when is not when:
                heap.dead -= 1
                continue
            if slow or h._x is not None:
                self._dispatch(h, t)
                continue
            # -- fast path: a plain callback, inline on the event loop
            h._st = RUNNING
            self._pending -= 1
            self._running += 1
            late = t - when
            if late > self._max_late:
                self._max_late = late
            lat[self._lat_n & (_LATENESS_SAMPLES - 1)] = late
            self._lat_n += 1
            token = set_current((h, t))
            try:
                result = h._func(*h._args)  # type: ignore[misc]
            except Exception as exc:
                self._running -= 1
                self._fail(h, exc)
            else:
                if type(result) is CoroutineType:
                    # An async callback: it has started; a runner awaits it.
                    h._result = result
                    self._q.append(h)
                else:
                    self._running -= 1
                    self._completed += 1
                    h._st = COMPLETED
                    h._result = result
                    h._args = None
                    h._owner = None
            finally:
                reset_current(token)
            t2 = clock()
            if t2 - t > BLOCKING_WARN_SECONDS:
                _warn_blocking(h, t2 - t)
            t = t2

    def _dispatch(self, h: Handle[Any], now: float) -> None:
        """A due handle that needs more than the fast path."""
        x = h._x
        if x is not None:
            if x.internal:
                h._st = COMPLETED
                h._owner = None
                assert h._func is not None
                try:
                    h._func()
                except Exception:
                    logger.exception("duetime internal callback %r failed", h._func)
                return
            if x.wall is not None:
                self._untrack_wall(h)
        h._st = QUEUED
        self._q.append(h)

    def _pump(self) -> None:
        """Get runner tasks onto the queued work, reusing parked ones first.

        A runner drains the queue until one of its jobs really suspends, so quick
        async callbacks share a few runners.  More runners are spawned, in
        doubling bursts, only while the queue is still full after those runners
        had their turn: they are all blocked.
        """
        q = self._q
        need = len(q) - self._avail
        parked = self._parked
        while need > 0 and parked:
            parked.popleft().set()
            self._avail += 1
            need -= 1
        if need > 0:
            if self._avail == 0:
                n = min(need, self._burst)
                self._burst = min(self._burst * 2, _MAX_BURST)
                assert self._tg is not None
                for _ in range(n):
                    self._avail += 1
                    self._tg.start_soon(self._runner)
            self._recheck = True
        else:
            self._recheck = False
            self._burst = 1

    async def _runner(self) -> None:
        q = self._q
        parked = self._parked
        self._avail -= 1
        while True:
            while q:
                await self._run_job(q.popleft())
            if len(parked) >= _MAX_PARKED:
                return
            event = Event()
            parked.append(event)
            await event.wait()
            self._avail -= 1

    async def _run_job(self, h: Handle[Any]) -> None:
        """Run one queued handle in this runner task, to its final state."""
        x = h._x
        started: float
        if h._st == RUNNING:
            # An async callback started inline: await its coroutine.
            coro = h._result
            started = self._clock()  # approximately; it was created just before
            if x is not None and x.cancelling:
                coro.close()
                self._running -= 1
                self._cancelled += 1
                h._finish(CANCELLED, None)
                self._check_quiet()
                return
            await self._drive(h, x, coro, None, started, _INF)
            return
        if h._st != QUEUED:
            return  # cancelled while queued
        limiter = self._limiter
        if limiter is not None:
            await limiter.acquire()
            if h._st != QUEUED:
                limiter.release()
                return
        try:
            now = self._clock()
            if x is not None and x.deadline is not None and now >= x.deadline:
                self._pending -= 1
                self._expired += 1
                h._finish(EXPIRED, DeadlineExpired(f"{h.name} could not start before its deadline"))
                self._check_quiet()
                return
            h._st = RUNNING
            self._pending -= 1
            self._running += 1
            late = now - h._when
            if late > self._max_late:
                self._max_late = late
            self._lat[self._lat_n & (_LATENESS_SAMPLES - 1)] = late
            self._lat_n += 1
            deadline = _INF
            if x is not None:
                if x.timeout is not None:
                    deadline = now + x.timeout
                if x.deadline is not None and x.deadline < deadline:
                    deadline = x.deadline
            func = h._func
            assert func is not None and h._args is not None
            in_thread = self._sync_in_thread
            if x is not None and x.in_thread is not None:
                in_thread = x.in_thread
            thread = in_thread and not _is_async(func)
            await self._drive(h, x, func, thread, now, deadline)
        finally:
            if limiter is not None:
                limiter.release()

    async def _drive(
        self,
        h: Handle[Any],
        x: Extra | None,
        target: Any,
        thread: bool | None,
        started: float,
        deadline: float,
    ) -> None:
        """Run ``target`` (a coroutine, or a function when ``thread`` is not None).

        Ends the handle in its final state, or re-queues it for a retry.
        """
        token = _current.set((h, started))
        try:
            with CancelScope(deadline=deadline) as scope:
                h._result = scope  # lets cancel() reach a running callback
                if thread is None:
                    result = await target
                elif thread:
                    result = await to_thread.run_sync(target, *h._args, abandon_on_cancel=True)
                else:
                    t0 = self._clock()
                    result = target(*h._args)
                    elapsed = self._clock() - t0
                    if elapsed > BLOCKING_WARN_SECONDS:
                        _warn_blocking(h, elapsed)
                    if inspect.iscoroutine(result):
                        result = await result
        except Exception as exc:
            self._running -= 1
            self._fail(h, exc)
        except get_cancelled_exc_class():
            self._running -= 1
            self._cancelled += 1
            h._finish(CANCELLED, None)
            self._check_quiet()
            assert self._tg is not None
            if self._tg.cancel_scope.cancel_called:
                raise
            # The callback cancelled itself; this runner lives on.
        else:
            self._running -= 1
            if scope.cancelled_caught:
                if x is not None and x.cancelling:
                    self._cancelled += 1
                    h._finish(CANCELLED, None)
                elif x is not None and x.deadline is not None and deadline == x.deadline:
                    self._fail(h, DeadlineExpired(f"{h.name} was cut off by its deadline"))
                else:
                    timeout = x.timeout if x is not None else None
                    self._fail(h, TimeoutError(f"{h.name} timed out after {timeout} s"))
            else:
                self._completed += 1
                h._finish(COMPLETED, result)
        finally:
            _current.reset(token)
        self._check_quiet()

    def _fail(self, h: Handle[Any], exc: BaseException) -> None:
        """A run raised ``exc``: retry it, or fail the handle and report it."""
        x = h._x
        if x is not None:
            retry = x.retry
            if (
                retry is not None
                and self._state != _CLOSED
                and not x.cancelling
                and retry.should_retry(x.attempt, exc)
            ):
                when = self._clock() + retry.pause(x.attempt)
                if x.deadline is None or when < x.deadline:
                    x.attempt += 1
                    h._when = when
                    h._st = PENDING
                    h._result = None
                    self._pending += 1
                    heappush(self._entries, (when, h._id, h))
                    if when < self._wake_at:
                        self._rearm(when)
                    return
        self._failed += 1
        if not h._finish(FAILED, exc):
            self._report(h, exc)

    def _report(self, h: Handle[Any], exc: BaseException) -> None:
        on_error = self._on_error
        if on_error is None:
            logger.error(
                "unobserved exception in callback %s", h.name, exc_info=(type(exc), exc, exc.__traceback__)
            )
            return
        try:
            on_error(h, exc)
        except Exception:
            logger.exception("on_error raised while reporting %r", h)

    # ------------------------------------------------------------------ introspection

    def __len__(self) -> int:
        """The number of callbacks scheduled and not yet started."""
        return self._pending

    def statistics(self) -> SchedulerStatistics:
        """Return a snapshot of the scheduler's counters."""
        n = min(self._lat_n, _LATENESS_SAMPLES)
        p99 = 0.0
        if n:
            samples = sorted(self._lat[:n])
            p99 = samples[min(n - 1, math.ceil(0.99 * n) - 1)]
        return SchedulerStatistics(
            pending=self._pending,
            running=self._running,
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


def _warn_blocking(h: Handle[Any], elapsed: float) -> None:
    logger.warning(
        "sync callback %s blocked the event loop for %.3f s; pass in_thread=True "
        "or make it async",
        h.name,
        elapsed,
    )


def _clock_unavailable() -> float:
    raise SchedulerClosed("the scheduler has not been entered")

