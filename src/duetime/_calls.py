"""The scheduling API: ``call_soon``, ``call_later``, ``call_at``, ``call_every``.

This mixin turns calls into heap or FIFO entries; :class:`~duetime.Scheduler`
owns the lifecycle, :class:`~duetime._execute.Executor` runs what is due.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from heapq import heappush
from typing import TYPE_CHECKING, Any, TypeVar, TypeVarTuple, Unpack, cast, overload

from anyio import current_effective_deadline

from ._exceptions import DeadlineExpired, SchedulerClosed
from ._handle import CANCELLED, EXPIRED, PENDING, Extra, Handle
from ._heap import TimerHeap
from ._options import check_aware, make_extra, to_delay
from ._recurring import Misfire, Overlap, Recurring
from ._retry import Retry

if TYPE_CHECKING:
    from ._scheduler import Scheduler

__all__ = ["Calls"]

T = TypeVar("T")
PosArgsT = TypeVarTuple("PosArgsT")

_INF = math.inf


class Calls:
    """Scheduling methods of :class:`~duetime.Scheduler` (a mixin).

    The plain path of each ``call_*`` (no options) is written out in full in
    each method rather than shared: it is the hot path the benchmarks hold to
    ``<= 1.0x loop.call_later``, and a helper call costs about 10% of it.
    Anything with an option goes through the shared :meth:`_schedule_opts`.
    """

    _closed: bool
    _clock: Callable[[], float]
    _entries: list[tuple[float, int, Any]]
    _heap: TimerHeap
    _soon: deque[Handle[Any]]
    _pending: int
    _expired: int
    _wake_at: float
    _sync_in_thread: bool
    _wall_clock: Callable[[], datetime]

    if TYPE_CHECKING:

        def _closed_reason(self) -> str: ...

        def _rearm(self, when: float) -> None: ...

        def _track_wall(self, h: Handle[Any]) -> None: ...

        def _cancel_pending(self, h: Handle[Any]) -> None: ...

        def _cancel_running(self, h: Handle[Any]) -> bool: ...

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
            delay = to_delay(delay)
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
            check_aware(when)
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
        :class:`Recurring` and ``docs/guide-periodic.md``.

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
            cast("Scheduler", self),
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
