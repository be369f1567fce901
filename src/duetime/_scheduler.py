"""Scheduler: one task group, one timer loop over a heap, awaitable handles."""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Coroutine
from contextvars import Context
from datetime import UTC, datetime, timedelta
from functools import partial
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, TypeVar, TypeVarTuple, Unpack, overload

from ._cron import Cron
from ._deferring import Deferring
from ._engine import Engine, PlainHandle
from ._front import EngineFront
from ._general import NO_DEADLINE_IN_THREAD, schedule_opts, schedule_wall
from ._handle import PENDING, Handle, _ids
from ._host import Host
from ._options import check_settings, parse_options
from ._recurring import Recurring
from ._retry import Retry
from ._stats import SchedulerStatistics, snapshot
from ._util import to_delay
from ._vocab import Misfire, Overlap

if TYPE_CHECKING:
    from .durable import Store, StoreSession, TaskRegistry

__all__ = ["Scheduler", "SchedulerStatistics"]

T = TypeVar("T")
PosArgsT = TypeVarTuple("PosArgsT")

_INF = math.inf
_NEG_INF = -math.inf  # a constant: the hot path would negate _INF at each call
_get_ident = threading.get_ident
_new = object.__new__


def _default_wall_clock() -> datetime:
    return datetime.now(UTC)


class Scheduler(Deferring):
    """Run callbacks later: after a delay, at a time, or soon.

    Use it as ``async with Scheduler() as scheduler:``.  The block owns one anyio
    task group with one timer loop; callbacks are kept in a heap and the loop
    sleeps in a cancel scope whose deadline is the earliest due time.

    :param max_concurrency: how many callbacks may run at once (None: no limit).
        Due callbacks past the limit wait for an :class:`anyio.CapacityLimiter`.
    :param on_exit: ``"cancel"`` (callbacks not started end CANCELLED) or
        ``"drain"`` (one-shot callbacks still run at their due time and the block
        waits for them).  Recurring series are cancelled either way.
    :param grace: how long leaving the block waits for running callbacks and
        async durable tasks before cancelling them (None: as long as they take);
        one budget, spent on durable tasks first.  A cancelled durable task's
        lease is released, so another worker runs it again.  A durable sync task
        runs in a thread, which cannot be interrupted: leaving waits for it past
        the grace, however long it takes, renewing its lease meanwhile (a
        WARNING names it), and records its outcome when it returns
    :param sync_in_thread: run sync callbacks in worker threads
        (:func:`anyio.to_thread.run_sync`) instead of inline on the event loop
    :param on_error: ``on_error(handle, exc)`` is called for every callback
        exception nobody observes (no awaiter and no done-callback when it
        failed).  Default: log it at ERROR on the ``duetime`` logger.
    :param wall_clock: returns the current wall time as an aware datetime; used
        only for datetime-based schedules (default: the system clock, UTC)
    :param slow_callback_duration: a sync callback that holds the event loop
        longer than this many seconds is logged as a warning naming it (as
        asyncio's ``loop.slow_callback_duration``; default 0.1)
    :param store: a durable store (``duetime.SQLiteStore``, ``open_store(url)``,
        ``duetime.testing.MemoryStore``) for :meth:`defer` and its friends; it
        is entered and left with the block.  ``call_*`` never touch it.
    :param tasks: the :class:`~duetime.TaskRegistry` of tasks this process may
        defer and run (required with ``store``)
    :param worker: with a store, also claim and run stored entries (False: only
        defer them, e.g. in a web process).  At most ``max_concurrency`` durable
        tasks run at once (16 when it is None), beside the ``call_*`` callbacks;
        durable tasks that fail for good are logged at ERROR on the
        ``duetime.durable`` logger with the entry key (``on_error`` takes a
        Handle and is not called for them) and stay listable as dead letters.
        A worker whose store is lost (``StoreLost``, a RuntimeError: its SQLite
        file deleted or replaced) stops: the block is cancelled and the
        StoreLost is raised out of ``async with``.
    :raises ValueError: on an invalid argument value
    :raises TypeError: on an argument of the wrong type, or ``store`` without
        ``tasks`` (or the reverse)
    """

    # The plain path of each ``call_*`` (no options) is written out in full in
    # each method rather than shared, the handle's slots set in place: it is the
    # hot path the benchmarks hold to ``<= 0.95x loop.call_later``, and a Python
    # call (a helper, an ``__init__`` frame) costs about 7% of it.  Options
    # arrive as ``**opts``: with none given that is one empty dict and one test,
    # where six keyword-only defaults cost CPython 3.11 a dict lookup each per
    # call.  Anything with an option goes through ``_general.schedule_opts``.

    __slots__ = ("__weakref__", "_durable", "_engine", "_heap")

    def __init__(
        self,
        *,
        max_concurrency: int | None = None,
        on_exit: Literal["cancel", "drain"] = "cancel",
        grace: float | None = 30.0,
        sync_in_thread: bool = False,
        on_error: Callable[[Handle[Any], BaseException], object] | None = None,
        wall_clock: Callable[[], datetime] | None = None,
        slow_callback_duration: float = 0.1,
        store: Store | None = None,
        tasks: TaskRegistry | None = None,
        worker: bool = True,
    ) -> None:
        grace, slow = check_settings(
            max_concurrency, on_exit, grace, on_error, wall_clock, slow_callback_duration
        )
        engine = Engine(
            max_concurrency=max_concurrency,
            on_exit=on_exit,
            grace=grace,
            sync_in_thread=bool(sync_in_thread),
            on_error=on_error,
            wall_clock=wall_clock or _default_wall_clock,
            slow_callback_duration=slow,
        )
        self._engine: EngineFront = engine
        # The heap, one attribute away: the call_later/call_at hot path pushes on it.
        self._heap = engine.heap
        # -- durable (store=, tasks=, worker=): a StoreSession entered with the block
        self._durable: StoreSession | None = None
        if not isinstance(worker, bool):
            raise TypeError(f"worker must be a bool, got {worker!r}")
        if store is not None or tasks is not None:
            if store is None or tasks is None:
                raise TypeError("store= and tasks= go together: pass both (or neither)")
            from .durable import StoreSession

            self._durable = StoreSession(
                store,
                tasks,
                worker=worker,
                concurrency=16 if max_concurrency is None else max_concurrency,
                grace=grace,
            )

    # ------------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Scheduler:
        await self._engine.open()
        if self._durable is not None:
            try:
                await self._durable.__aenter__()
            except BaseException as exc:
                await self._engine.close(type(exc), exc, exc.__traceback__)
                raise
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        durable = self._durable
        if durable is not None and durable.open:
            # First: stop claiming, give running durable tasks ``grace`` (as read
            # now: ThreadedScheduler may have ended it), release the rest.
            e = self._engine
            durable.grace = e.grace
            t0 = e.clock()
            try:
                await durable.__aexit__(exc_type, exc, tb)
            except BaseException as dexc:
                await e.close(type(dexc), dexc, dexc.__traceback__)
                raise
            # One grace budget for durable tasks and callbacks.
            e.spend_grace(e.clock() - t0)
        return await self._engine.close(exc_type, exc, tb)

    def __duetime_host__(self) -> Host:
        """The engine, as the narrow :class:`~duetime._host.Host` seam satellites use."""
        return self._engine

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
        context: Context | None = ...,
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
        context: Context | None = ...,
    ) -> Handle[T]: ...

    def call_soon(  # type: ignore[misc]  # mypy: TypeVarTuple overload impl
        self,
        func: Callable[..., Any],
        /,
        *args: Any,
        **opts: Any,
    ) -> Handle[Any]:
        """Run ``func(*args)`` as soon as possible, after callbacks already due.

        :param func: the callback
        :param args: positional arguments for ``func``
        :param opts: keyword options, as for :meth:`call_later`
        :return: the callback's :class:`Handle`
        :raises SchedulerClosed: outside the ``async with`` block
        :raises TypeError: if ``func`` is not callable, or an option is unknown
            or has a bad type
        :raises ValueError: if an option has a bad value
        """
        e = self._engine
        if opts or _get_ident() != e.accepting:
            e.check_open()
            return schedule_opts(e, e.clock(), func, args, *parse_options("call_soon", opts))
        if not callable(func):
            raise TypeError(f"func must be callable, got {func!r}")
        # PlainHandle(clock(), func, args, e), written out: no __init__ frame.
        h: Handle[Any] = _new(PlainHandle)
        h._when = e.clock()
        h._id = next(_ids)
        h._func = func
        h._args = args
        h._st = PENDING
        h._result = None
        h._owner = e
        h._x = None
        e.soon.append(h)
        e.scheduled += 1
        if e.wake_at > _NEG_INF:
            e.rearm(_NEG_INF)
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
        context: Context | None = ...,
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
        context: Context | None = ...,
    ) -> Handle[T]: ...

    def call_later(  # type: ignore[misc]  # mypy: TypeVarTuple overload impl
        self,
        delay: float | timedelta,
        func: Callable[..., Any],
        /,
        *args: Any,
        **opts: Any,
    ) -> Handle[Any]:
        """Run ``func(*args)`` after ``delay`` seconds (a number or a timedelta).

        ``func`` is a sync or an async function; keyword arguments for it go
        through :func:`functools.partial`.  Every ``call_*`` may be called from
        any thread while the block is open: from another thread the call is
        handed to the event loop (calls from one thread keep their order) and
        the handle is returned at once.

        Keyword options, the same for every ``call_*``:

        - ``name``: a name for repr and logs
        - ``timeout``: seconds each run may take before it is cancelled and
          fails with :exc:`TimeoutError`.  Not allowed for a sync callback run
          inline (it cannot be interrupted): use ``in_thread=True``.
        - ``retry``: a :class:`Retry` policy for failed runs
        - ``in_thread``: run a sync callback in a worker thread (overrides the
          scheduler's ``sync_in_thread``)
        - ``inherit_deadline``: carry the caller's effective deadline into the
          callback: it ends EXPIRED without running if it would start at or
          after that deadline, and FAILED with :exc:`DeadlineExpired` if the
          deadline cuts it off (only from the event loop's thread)
        - ``context``: the :class:`contextvars.Context` to run the callback in
          (as asyncio's ``call_later(..., context=)``).  By default each
          callback runs in its own copy of the context that entered the
          ``async with`` block, so a ``ContextVar`` one callback sets is never
          seen by another.

        :param delay: seconds (int, float or timedelta), finite and >= 0
        :param func: the callback
        :param args: positional arguments for ``func``
        :param opts: the keyword options above
        :return: the callback's :class:`Handle`
        :raises SchedulerClosed: outside the ``async with`` block
        :raises TypeError: if ``func`` is not callable, an argument has a bad
            type, or an option is unknown
        :raises ValueError: if ``delay`` is negative, NaN or infinite, or an
            option has a bad value
        """
        if type(delay) is not float and type(delay) is not int:
            delay = to_delay(delay)
        elif not 0.0 <= delay < _INF:
            raise ValueError(f"delay must be finite and >= 0, got {delay!r}")
        e = self._engine
        if opts or _get_ident() != e.accepting:
            e.check_open()
            return schedule_opts(
                e, e.clock() + delay, func, args, *parse_options("call_later", opts)
            )
        when = e.clock() + delay
        if not callable(func):
            raise TypeError(f"func must be callable, got {func!r}")
        # PlainHandle(when, func, args, e), written out: no __init__ frame.
        h: Handle[Any] = _new(PlainHandle)
        h._when = when
        h._id = i = next(_ids)
        h._func = func
        h._args = args
        h._st = PENDING
        h._result = None
        h._owner = e
        h._x = None
        self._heap.push((when, i, h))
        e.scheduled += 1
        if when < e.wake_at:
            e.rearm(when)
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
        context: Context | None = ...,
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
        context: Context | None = ...,
    ) -> Handle[T]: ...

    def call_at(  # type: ignore[misc]  # mypy: TypeVarTuple overload impl
        self,
        when: float | datetime,
        func: Callable[..., Any],
        /,
        *args: Any,
        **opts: Any,
    ) -> Handle[Any]:
        """Run ``func(*args)`` at ``when``.

        A float is a time on the event loop's clock (``anyio.current_time()``).
        An aware datetime is wall-clock time: it fires within about a second of
        that wall time even if the system clock is stepped or the machine sleeps
        meanwhile.  A time in the past runs as soon as possible.  Options are as
        for :meth:`call_later`.

        :param when: a loop time (float) or an aware datetime
        :param func: the callback
        :param args: positional arguments for ``func``
        :param opts: keyword options, as for :meth:`call_later`
        :return: the callback's :class:`Handle`
        :raises SchedulerClosed: outside the ``async with`` block
        :raises TypeError: if ``when`` is neither a number nor a datetime,
            ``func`` is not callable, or an option is unknown or has a bad type
        :raises ValueError: if ``when`` is NaN or infinite, or a naive datetime
        """
        if type(when) is not float:
            if isinstance(when, datetime):
                return schedule_wall(self._engine, when, func, args, opts)
            if isinstance(when, bool) or not isinstance(when, int | float):
                raise TypeError(
                    f"when must be a loop time (float) or an aware datetime, got {when!r}"
                )
            when = float(when)
        if not _NEG_INF < when < _INF:
            raise ValueError(f"when must be finite, got {when!r}")
        e = self._engine
        if opts or _get_ident() != e.accepting:
            e.check_open()
            return schedule_opts(e, when, func, args, *parse_options("call_at", opts))
        if not callable(func):
            raise TypeError(f"func must be callable, got {func!r}")
        # PlainHandle(when, func, args, e), written out: no __init__ frame.
        h: Handle[Any] = _new(PlainHandle)
        h._when = when
        h._id = i = next(_ids)
        h._func = func
        h._args = args
        h._st = PENDING
        h._result = None
        h._owner = e
        h._x = None
        self._heap.push((when, i, h))
        e.scheduled += 1
        if when < e.wake_at:
            e.rearm(when)
        return h

    @overload
    def call_every(
        self,
        interval: float | timedelta | Cron,
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
        context: Context | None = ...,
    ) -> Recurring[T]: ...

    @overload
    def call_every(
        self,
        interval: float | timedelta | Cron,
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
        context: Context | None = ...,
    ) -> Recurring[T]: ...

    def call_every(  # type: ignore[misc]  # mypy: TypeVarTuple overload impl
        self,
        interval: float | timedelta | Cron,
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
        context: Context | None = None,
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
        e = self._engine
        make = partial(
            Recurring,
            e,
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
            context=context,
        )
        if _get_ident() != e.loop_thread:
            if inherit_deadline:
                raise RuntimeError(NO_DEADLINE_IN_THREAD)
            e.check_open()
            recurring: Recurring[Any] = e.bridge.call(make)
            return recurring
        return make()

    # ------------------------------------------------------------------ introspection

    def statistics(self) -> SchedulerStatistics:
        """Return a snapshot of the scheduler's counters."""
        return snapshot(self._engine)

    @property
    def closed(self) -> bool:
        """Whether scheduling is refused (not entered yet, or exiting/exited)."""
        return self._engine.closed

    def __repr__(self) -> str:
        e = self._engine
        state = ("new", "open", "closing", "closed")[e.state]
        return f"<Scheduler {state} pending={e.pending} running={e.running}>"
