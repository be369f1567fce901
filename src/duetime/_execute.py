"""Running due entries: the inline fast path, runner tasks, and outcomes."""

from __future__ import annotations

import inspect
import logging
import math
from collections import deque
from collections.abc import Callable
from datetime import datetime
from heapq import heappop, heappush
from types import CoroutineType
from typing import TYPE_CHECKING, Any

from anyio import (
    CancelScope,
    CapacityLimiter,
    Event,
    get_cancelled_exc_class,
    to_thread,
)
from anyio.abc import TaskGroup

from ._exceptions import DeadlineExpired
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
    _tls,
    report_unobserved,
)
from ._heap import TimerHeap

__all__ = ["Executor"]

logger = logging.getLogger("duetime")

_INF = math.inf
# A sync callback that holds the event loop longer than this is reported.
BLOCKING_WARN_SECONDS = 0.1
# Runner tasks parked for reuse; beyond this an idle runner exits.
_MAX_PARKED = 256
_MAX_BURST = 512
LATENESS_SAMPLES = 1024
# A datetime entry more than this early on the wall clock when due is re-keyed.
_WALL_EARLY_TOLERANCE = 0.001
OPEN, CLOSING = 1, 2  # Scheduler states (see _scheduler)


def is_async(func: Callable[..., Any]) -> bool:
    """Whether calling ``func`` returns a coroutine (as far as can be told)."""
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(func, "__call__", None)  # noqa: B004 - an async __call__ counts
    return call is not None and inspect.iscoroutinefunction(call)


class Executor:
    """The part of :class:`Scheduler` that runs entries once they are due.

    It owns the timer loop, the inline fast path for plain sync callbacks, the
    runner tasks that run everything else, and the final outcome of each handle.
    The heap and the scheduling API live elsewhere; this class only reads the heap.
    """

    _entries: list[tuple[float, int, Any]]
    _heap: TimerHeap
    _clock: Callable[[], float]
    _sync_in_thread: bool
    _limiter: CapacityLimiter | None
    _acquiring: set[Handle[Any]]
    _thread_limiter: CapacityLimiter | None
    _before_sleep: Callable[[], float] | None
    _on_exit: str
    _wall_clock: Callable[[], datetime]
    _tg: TaskGroup | None
    _state: int
    _on_error: Callable[[Handle[Any], BaseException], object] | None
    _wake_at: float
    _sleep_scope: CancelScope | None
    _q: deque[Handle[Any]]
    _parked: deque[Event]
    _avail: int
    _burst: int
    _recheck: bool
    _pending: int
    _running: int
    _completed: int
    _failed: int
    _cancelled: int
    _expired: int
    _max_late: float
    _lat: deque[float]
    _soon: deque[Handle[Any]]
    _batch: list[tuple[float, int, Any]] | None
    _batch_j: int
    _inline: Handle[Any] | None
    _inline_started: float
    _quiet: Event | None
    _never: Event
    _quiet_mode: int

    if TYPE_CHECKING:

        def _untrack_wall(self, h: Handle[Any]) -> None: ...

    def _rearm(self, when: float) -> None:
        self._wake_at = when
        scope = self._sleep_scope
        if scope is not None:
            scope.deadline = when

    def _check_quiet(self) -> None:
        mode = self._quiet_mode
        if mode and (self._pending if mode == 1 else self._running) == 0:
            assert self._quiet is not None
            self._quiet_mode = 0
            self._quiet.set()

    async def _timer_loop(self) -> None:
        entries = self._entries
        soon = self._soon
        clock = self._clock
        heap = self._heap
        while True:
            now = clock()
            if soon or self._batch is not None or (entries and entries[0][0] <= now):
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
            top = None  # don't keep the last handle alive while asleep
            hook = self._before_sleep
            deadline = self._next_deadline() if hook is None else hook()
            with CancelScope(deadline=deadline) as scope:
                self._sleep_scope = scope
                self._wake_at = deadline
                try:
                    # A never-set Event, not sleep_forever(): on asyncio that is
                    # sleep(inf), a timer at +inf per iteration.
                    await self._never.wait()
                finally:
                    self._wake_at = -_INF
                    self._sleep_scope = None

    def _next_deadline(self) -> float:
        """When the timer loop must wake next (-inf: only yield, then go on)."""
        if self._recheck or self._soon or self._batch is not None:
            return -_INF  # queued or FIFO work left: runners go first, then on
        entries = self._entries
        return entries[0][0] if entries else _INF

    def _run_due(self, now: float) -> None:
        """Run or dispatch every entry due at ``now``, in (when, seq) order.

        Two sorted sources are merged: the heap and the ``call_soon`` FIFO (its
        entries are due at once, in clock order, so they skip the heap).  Plain
        sync callbacks run right here, inline, one after another: the cheapest
        path there is.  Everything else goes to a runner task.  A sync callback
        never overtakes queued work of the same pass: the pass stops there and
        resumes once the runners have started what was queued, so bodies start
        in (when, seq) order across sync and async callbacks.
        """
        entries = self._entries
        soon = self._soon
        heap = self._heap
        clock = self._clock
        slow = self._sync_in_thread or self._limiter is not None
        record_late = self._lat.append
        max_late = self._max_late
        q = self._q
        # Many due at once: take them as one sorted batch instead of popping each.
        # A batch left over by an interrupted pass is resumed first.
        batch = self._batch
        if batch is None:
            batch = self._batch = heap.take_due(now)
            j = 0
        else:
            j = self._batch_j
        k = len(batch) if batch is not None else 0
        _tls.scheduler = self  # lets current_run() see the inline callback
        t = now
        try:
            while True:
                # The heap side's next entry: the batch's, or the heap top when
                # something due was pushed during the pass and sorts first.
                # src: 0 the call_soon FIFO, 1 the batch, 2 the heap.
                src = 0
                e = None
                if batch is not None and j < k:
                    e = batch[j]
                    src = 1
                    if entries and entries[0][0] <= now and entries[0][:2] < e[:2]:
                        e = entries[0]
                        src = 2
                elif entries and entries[0][0] <= now:
                    e = entries[0]
                    src = 2
                # Merge with the call_soon FIFO in (when, seq) order.
                if soon and soon[0]._when <= now:
                    h = soon[0]
                    if e is not None and e[:2] < (h._when, h._id):
                        when, seq, h = e
                    else:
                        soon.popleft()
                        when = h._when
                        src = 0
                elif e is not None:
                    when, seq, h = e
                else:
                    break
                if src == 2:
                    heappop(entries)
                elif src == 1:
                    j += 1
                if h._st or h._when is not when:
                    # Cancelled (or re-keyed) while pending.  Only tuples taken
                    # from the heap itself leave its dead count; see TimerHeap.
                    if src == 2:
                        heap.dead -= 1
                    continue
                if slow or h._x is not None:
                    self._dispatch(h, t)
                    continue
                if q and not is_async(h._func):  # type: ignore[arg-type]
                    # Work queued in this pass has not started yet: running this
                    # sync callback now would overtake it.  Put it back.
                    if src == 0:
                        soon.appendleft(h)
                    elif src == 1:
                        j -= 1
                    else:
                        heappush(entries, (when, seq, h))
                    break
                # -- fast path: a plain callback, inline on the event loop.  While
                # it runs, _inline says so (cheaper than a contextvar per call).
                h._st = RUNNING
                self._pending -= 1
                self._inline = h
                self._inline_started = t
                late = t - when
                if late > max_late:
                    max_late = late
                record_late(late)
                try:
                    result = h._func(*h._args)  # type: ignore[misc]  # set while pending
                except Exception as exc:
                    self._inline = None
                    self._fail(h, exc)
                else:
                    self._inline = None
                    if type(result) is CoroutineType:
                        # An async callback: it has started; a runner awaits it.
                        self._running += 1
                        h._result = result
                        q.append(h)
                    elif h._x is None:
                        self._completed += 1
                        h._result = result
                        h._st = COMPLETED
                        h._args = None
                        h._owner = None
                    else:
                        # It got an awaiter or a done-callback while running.
                        self._completed += 1
                        h._finish(COMPLETED, result)
                t2 = clock()
                if t2 - t > BLOCKING_WARN_SECONDS:
                    _warn_blocking(h, t2 - t)
                t = t2
        finally:
            self._inline = None
            _tls.scheduler = None
            self._max_late = max_late
            if batch is not None and j < k:
                self._batch_j = j  # resumed by the next pass
            else:
                self._batch = None

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
                # The watchdog looks once a second; if the wall clock was stepped
                # back since, this would be early on the wall clock: not yet.
                remaining = (x.wall - self._wall_clock()).total_seconds()
                if remaining > _WALL_EARLY_TOLERANCE:
                    when = now + remaining
                    h._when = when
                    heappush(self._entries, (when, h._id, h))
                    return
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
            # Off every queue while it waits for a token: keep it findable, so
            # that leaving the block cancels it like any other pending handle.
            self._acquiring.add(h)
            try:
                await limiter.acquire()
            except BaseException:
                if h._st == QUEUED:
                    self._pending -= 1
                    self._cancelled += 1
                    h._finish(CANCELLED, None)
                    self._check_quiet()
                raise
            finally:
                self._acquiring.discard(h)
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
            self._lat.append(late)
            deadline = _INF
            if x is not None:
                if x.timeout is not None:
                    deadline = now + x.timeout
                if x.deadline is not None and x.deadline < deadline:
                    deadline = x.deadline
            func = h._func
            assert func is not None
            in_thread = self._sync_in_thread
            if x is not None and x.in_thread is not None:
                in_thread = x.in_thread
            thread = in_thread and not is_async(func)
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
        args = h._args or ()
        token = _current.set((h, started))
        try:
            with CancelScope(deadline=deadline) as scope:
                h._result = scope  # lets cancel() reach a running callback
                if thread is None:
                    result = await target
                elif thread:
                    result = await to_thread.run_sync(
                        target, *args, abandon_on_cancel=True, limiter=self._thread_limiter
                    )
                else:
                    t0 = self._clock()
                    result = target(*args)
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
                x = h._x  # cancel() may have made it since
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
                and (self._state == OPEN or (self._state == CLOSING and self._on_exit == "drain"))
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
        report_unobserved(self._on_error, h, exc)


def _warn_blocking(h: Handle[Any], elapsed: float) -> None:
    logger.warning(
        "sync callback %s blocked the event loop for %.3f s; pass in_thread=True or make it async",
        h.name,
        elapsed,
    )
