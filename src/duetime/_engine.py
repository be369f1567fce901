"""The engine under a Scheduler: the timer loop, running due entries, outcomes.

:class:`Engine` owns everything that happens once an entry is on the heap: the
one timer loop that sleeps in a cancel scope until the earliest due time, the
inline fast path for plain sync callbacks, the reusable runner tasks for
everything else, each handle's final state and counters, cancellation, the
wall-clock watch, and leaving the block.  :class:`~duetime.Scheduler` is the
public face that turns ``call_*`` into entries; satellites (Recurring, Timeouts,
PendingReplies, ThreadedScheduler) see the engine only as a :class:`~._host.Host`.
"""

from __future__ import annotations

import inspect
import logging
import math
from collections import deque
from collections.abc import Callable
from datetime import datetime
from types import CoroutineType, TracebackType
from typing import Any

from anyio import (
    CancelScope,
    CapacityLimiter,
    Event,
    create_task_group,
    get_cancelled_exc_class,
    move_on_at,
    to_thread,
)
from anyio.abc import TaskGroup

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
    _tls,
    report_unobserved,
)
from ._heap import TimerHeap
from ._host import Cancellable
from ._lifecycle import exit_block
from ._util import CLOSED, CLOSING, NEW, OPEN, backend_clock, is_async
from ._wall import WallWatch

__all__ = ["LATENESS_SAMPLES", "Engine"]

logger = logging.getLogger("duetime")

_INF = math.inf
# Runner tasks parked for reuse; beyond this an idle runner exits.
_MAX_PARKED = 256
_MAX_BURST = 512
LATENESS_SAMPLES = 1024


def _clock_unavailable() -> float:
    raise SchedulerClosed("the scheduler has not been entered")


class Engine:
    """Runs a scheduler's entries once they are due, and ends each in one final state.

    Attributes without a leading underscore are the engine's interface to its
    :class:`~duetime.Scheduler` (which reads and bumps them on the ``call_*``
    hot path); the :class:`~._host.Host` methods are its interface to satellites.
    """

    def __init__(
        self,
        *,
        max_concurrency: int | None,
        on_exit: str,
        grace: float | None,
        sync_in_thread: bool,
        on_error: Callable[[Handle[Any], BaseException], object] | None,
        wall_clock: Callable[[], datetime],
        slow_callback_duration: float,
    ) -> None:
        self.max_concurrency = max_concurrency
        self.on_exit = on_exit
        self.grace = grace
        self.sync_in_thread = sync_in_thread
        self.on_error = on_error
        self.wall_clock = wall_clock
        self.slow_callback_duration = slow_callback_duration

        self.state = NEW
        self.closed = True  # no scheduling before open() or after exit
        self.clock: Callable[[], float] = _clock_unavailable
        self.tg: TaskGroup | None = None
        self.limiter: CapacityLimiter | None = None
        # Bounds worker threads for sync callbacks (None: anyio's default limiter).
        self.thread_limiter: CapacityLimiter | None = None
        # Called right before the timer loop sleeps; returns the deadline.
        self.before_sleep: Callable[[], float] | None = None

        self.heap = TimerHeap()
        # call_soon entries: due at once and already in (when, seq) order, so a
        # FIFO serves them without the heap's log n.
        self.soon: deque[Handle[Any]] = deque()
        # The timer loop sleeps until wake_at; -inf while awake, so that
        # scheduling from inside a pass never re-arms.
        self.wake_at = -_INF
        self._sleep_scope: CancelScope | None = None

        self.pending = 0
        self.running = 0
        self.completed = 0
        self.failed = 0
        self.cancelled = 0
        self.expired = 0
        self.max_late = 0.0
        self.lat: deque[float] = deque(maxlen=LATENESS_SAMPLES)
        # The plain sync callback running inline right now, if any (read by
        # current_run() through a thread-local: cheaper than a contextvar per call).
        self.inline: Handle[Any] | None = None
        self.inline_started = 0.0

        # Due handles waiting for a runner task, and the runners' bookkeeping.
        self._q: deque[Handle[Any]] = deque()
        self._parked: deque[Event] = deque()
        self._avail = 0  # runners woken or spawned that have not looked at _q yet
        self._burst = 1
        self._recheck = False
        self._acquiring: set[Handle[Any]] = set()  # due, waiting for a limiter token
        # Due entries taken off the heap as one sorted batch, and how far along.
        self._batch: list[tuple[float, int, Any]] | None = None
        self._batch_j = 0
        # Exit waits on this while _quiet_mode holds (1: pending==0, 2: running==0).
        self._quiet: Event | None = None
        self._quiet_mode = 0
        self._never: Event | None = None
        self._exit_hooks: dict[Cancellable, None] = {}
        self.wall = WallWatch(self)

    # ------------------------------------------------------------------ host: state

    def check_open(self) -> None:
        """Raise :exc:`SchedulerClosed` unless the block is open."""
        if self.closed:
            raise SchedulerClosed(self.closed_reason())

    def closed_reason(self) -> str:
        if self.state == NEW:
            return "the scheduler has not been entered: use 'async with Scheduler() as s:'"
        return "the scheduler is closed"

    def to_loop_time(self, when: datetime) -> float:
        return self.clock() + max((when - self.wall_clock()).total_seconds(), 0.0)

    def add_exit_hook(self, hook: Cancellable) -> None:
        self._exit_hooks[hook] = None

    def discard_exit_hook(self, hook: Cancellable) -> None:
        self._exit_hooks.pop(hook, None)

    def set_thread_limiter(self, limiter: CapacityLimiter) -> None:
        self.thread_limiter = limiter

    def set_before_sleep(self, hook: Callable[[], float]) -> None:
        self.before_sleep = hook

    def wake(self) -> None:
        self.rearm(-_INF)

    def end_grace(self) -> None:
        self.grace = 0.0

    def report(self, handle: Handle[Any], exc: BaseException) -> None:
        report_unobserved(self.on_error, handle, exc)

    # ------------------------------------------------------------------ host: entries

    def push(self, h: Handle[Any]) -> None:
        """Put a freshly made handle with an Extra on the heap (the slow path)."""
        x = h._x
        when = h._when
        self.heap.push(when, h)
        if x is None or not x.internal:
            self.pending += 1
        if x is not None and x.wall is not None:
            self.wall.track(h)
        if when < self.wake_at:
            self.rearm(when)

    def schedule_internal(
        self, when: float, func: Callable[[], object], wall: datetime | None = None
    ) -> Handle[Any]:
        x = Extra()
        x.internal = True
        x.wall = wall
        h: Handle[Any] = Handle(when, func, (), self, x)
        self.push(h)
        return h

    def cancel_internal(self, h: Handle[Any]) -> None:
        if h._st == PENDING:
            h._st = CANCELLED
            h._func = None
            self.heap.note_dead()
            x = h._x
            if x is not None and x.wall is not None:
                self.wall.untrack(h)

    def rearm(self, when: float) -> None:
        """Wake the timer loop at ``when`` (earlier than it planned)."""
        self.wake_at = when
        scope = self._sleep_scope
        if scope is not None:
            scope.deadline = when

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        """Start the task group and the timer loop (from ``Scheduler.__aenter__``)."""
        if self.state != NEW:
            raise RuntimeError("a Scheduler can be entered only once")
        self.clock = backend_clock()
        if self.max_concurrency is not None:
            self.limiter = CapacityLimiter(self.max_concurrency)
        self._never = Event()  # the timer loop sleeps on it until its deadline
        tg = create_task_group()
        await tg.__aenter__()
        self.tg = tg
        self.state = OPEN
        self.closed = False
        tg.start_soon(self._timer_loop, name=f"duetime timer loop {id(self):#x}")

    async def close(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Leave the block: exit hooks, then ``on_exit`` and ``grace`` (or abort)."""
        assert self.tg is not None
        self.closed = True
        self.state = CLOSING
        for hook in list(self._exit_hooks):
            hook.cancel()
        return await exit_block(self.tg, self._drain, self._abort, exc_type, exc, tb)

    async def _drain(self) -> None:
        """The block ended normally: apply ``on_exit``, then ``grace``."""
        if self.on_exit == "cancel":
            self._cancel_all_pending()
        grace_end = _INF if self.grace is None else self.clock() + self.grace
        while True:
            if self.on_exit == "drain":
                await self._wait_quiet(1)  # each pending one has started
            with move_on_at(grace_end) as grace:
                await self._wait_quiet(2)
            # A failed attempt may have put a retry back on the heap while
            # draining: wait for that one too.
            if grace.cancelled_caught or not self.pending:
                break

    def _abort(self) -> None:
        self.state = CLOSED  # no retries from here on
        self._cancel_all_pending()
        assert self.tg is not None
        self.tg.cancel_scope.cancel()

    async def _wait_quiet(self, mode: int) -> None:
        while (self.pending if mode == 1 else self.running) > 0:
            self._quiet = Event()
            self._quiet_mode = mode
            await self._quiet.wait()

    def _check_quiet(self) -> None:
        mode = self._quiet_mode
        if mode and (self.pending if mode == 1 else self.running) == 0:
            assert self._quiet is not None
            self._quiet_mode = 0
            self._quiet.set()

    def _cancel_all_pending(self) -> None:
        q = self._q
        doomed = self.heap.live() + list(self.soon) + list(q) + list(self._acquiring)
        if self._batch is not None:
            doomed += [e[2] for e in self._batch[self._batch_j :] if e[2]._when is e[0]]
            self._batch = None
        self.heap.clear()
        self.soon.clear()
        q.clear()
        self.wall.clear()
        for h in doomed:
            x = h._x
            if x is not None and x.internal:
                continue
            if h._st <= QUEUED:
                self.pending -= 1
                self.cancelled += 1
                h._finish(CANCELLED, None)
            elif h._st == RUNNING and inspect.iscoroutine(h._result):
                # An async callback created inline but not yet picked up by a runner.
                h._result.close()
                self.running -= 1
                self.cancelled += 1
                h._finish(CANCELLED, None)

    # ------------------------------------------------------------------ cancellation

    def _cancel_pending(self, h: Handle[Any]) -> None:
        # Hot under cancel storms: the common case is inlined.  The handle's
        # tuple stays where it is (heap, FIFO or runner queue) and is skipped.
        if h._st == PENDING:
            self.heap.note_dead()
        self.pending -= 1
        self.cancelled += 1
        x = h._x
        if x is None:
            h._st = CANCELLED
            h._args = None
            h._owner = None
        else:
            if x.wall is not None:
                self.wall.untrack(h)
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

    # ------------------------------------------------------------------ the timer loop

    async def _timer_loop(self) -> None:
        heap = self.heap
        entries = heap.entries
        soon = self.soon
        clock = self.clock
        never = self._never
        assert never is not None
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
            heap.drop_dead_top()  # so we don't wake up for nothing
            hook = self.before_sleep
            deadline = self.next_deadline() if hook is None else hook()
            with CancelScope(deadline=deadline) as scope:
                self._sleep_scope = scope
                self.wake_at = deadline
                try:
                    # A never-set Event, not sleep_forever(): on asyncio that is
                    # sleep(inf), a timer at +inf per iteration.
                    await never.wait()
                finally:
                    self.wake_at = -_INF
                    self._sleep_scope = None

    def next_deadline(self) -> float:
        """When the timer loop must wake next (-inf: only yield, then go on)."""
        if self._recheck or self.soon or self._batch is not None:
            return -_INF  # queued or FIFO work left: runners go first, then on
        entries = self.heap.entries
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
        heap = self.heap
        entries = heap.entries
        soon = self.soon
        clock = self.clock
        slow = self.sync_in_thread or self.limiter is not None
        slow_callback = self.slow_callback_duration
        record_late = self.lat.append
        max_late = self.max_late
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
        _tls.engine = self  # lets current_run() see the inline callback
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
                        when, _, h = e
                    else:
                        soon.popleft()
                        when = h._when
                        src = 0
                elif e is not None:
                    when, _, h = e
                else:
                    break
                if src == 2:
                    heap.pop()
                elif src == 1:
                    j += 1
                if h._st or h._when is not when:
                    continue  # cancelled (or re-keyed) while pending
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
                        heap.push(when, h)
                    break
                # -- fast path: a plain callback, inline on the event loop.
                h._st = RUNNING
                self.pending -= 1
                self.inline = h
                self.inline_started = t
                late = t - when
                if late > max_late:
                    max_late = late
                record_late(late)
                try:
                    result = h._func(*h._args)  # type: ignore[misc]  # set while pending
                except Exception as exc:
                    self.inline = None
                    self._fail(h, exc)
                else:
                    self.inline = None
                    if type(result) is CoroutineType:
                        # An async callback: it has started; a runner awaits it.
                        self.running += 1
                        h._result = result
                        q.append(h)
                    elif h._x is None:
                        self.completed += 1
                        h._result = result
                        h._st = COMPLETED
                        h._args = None
                        h._owner = None
                    else:
                        # It got an awaiter or a done-callback while running.
                        self.completed += 1
                        h._finish(COMPLETED, result)
                t2 = clock()
                if t2 - t >= slow_callback:
                    _warn_blocking(h, t2 - t)
                t = t2
        finally:
            self.inline = None
            _tls.engine = None
            self.max_late = max_late
            if batch is not None and j < k:
                self._batch_j = j  # resumed by the next pass
            else:
                self._batch = None

    def _dispatch(self, h: Handle[Any], now: float) -> None:
        """A due handle that needs more than the fast path."""
        x = h._x
        if x is not None:
            if x.wall is not None and self.wall.early(h, now):
                return  # re-keyed: not yet on the wall clock
            if x.internal:
                h._st = COMPLETED
                h._owner = None
                assert h._func is not None
                try:
                    h._func()
                except Exception:
                    logger.exception("duetime internal callback %r failed", h._func)
                return
        h._st = QUEUED
        self._q.append(h)

    # ------------------------------------------------------------------ runner tasks

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
                assert self.tg is not None
                for _ in range(n):
                    self._avail += 1
                    self.tg.start_soon(self._runner)
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
        if h._st == RUNNING:
            # An async callback started inline: await its coroutine.
            coro = h._result
            started = self.clock()  # approximately; it was created just before
            if x is not None and x.cancelling:
                coro.close()
                self.running -= 1
                self.cancelled += 1
                h._finish(CANCELLED, None)
                self._check_quiet()
                return
            await self._drive(h, x, coro, None, started, _INF)
            return
        if h._st != QUEUED:
            return  # cancelled while queued
        limiter = self.limiter
        if limiter is not None:
            # Off every queue while it waits for a token: keep it findable, so
            # that leaving the block cancels it like any other pending handle.
            self._acquiring.add(h)
            try:
                await limiter.acquire()
            except BaseException:
                if h._st == QUEUED:
                    self.pending -= 1
                    self.cancelled += 1
                    h._finish(CANCELLED, None)
                    self._check_quiet()
                raise
            finally:
                self._acquiring.discard(h)
            if h._st != QUEUED:
                limiter.release()
                return
        try:
            now = self.clock()
            if x is not None and x.deadline is not None and now >= x.deadline:
                self.pending -= 1
                self.expired += 1
                h._finish(EXPIRED, DeadlineExpired(f"{h.name} could not start before its deadline"))
                self._check_quiet()
                return
            h._st = RUNNING
            self.pending -= 1
            self.running += 1
            late = now - h._when
            if late > self.max_late:
                self.max_late = late
            self.lat.append(late)
            deadline = _INF
            if x is not None:
                if x.timeout is not None:
                    deadline = now + x.timeout
                if x.deadline is not None and x.deadline < deadline:
                    deadline = x.deadline
            func = h._func
            assert func is not None
            in_thread = self.sync_in_thread
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
                        target, *args, abandon_on_cancel=True, limiter=self.thread_limiter
                    )
                else:
                    t0 = self.clock()
                    result = target(*args)
                    elapsed = self.clock() - t0
                    if elapsed >= self.slow_callback_duration:
                        _warn_blocking(h, elapsed)
                    if inspect.iscoroutine(result):
                        result = await result
        except Exception as exc:
            self.running -= 1
            self._fail(h, exc)
        except get_cancelled_exc_class():
            self.running -= 1
            self.cancelled += 1
            h._finish(CANCELLED, None)
            self._check_quiet()
            assert self.tg is not None
            if self.tg.cancel_scope.cancel_called:
                raise
            # The callback cancelled itself; this runner lives on.
        else:
            self.running -= 1
            if scope.cancelled_caught:
                x = h._x  # cancel() may have made it since
                if x is not None and x.cancelling:
                    self.cancelled += 1
                    h._finish(CANCELLED, None)
                elif x is not None and x.deadline is not None and deadline == x.deadline:
                    self._fail(h, DeadlineExpired(f"{h.name} was cut off by its deadline"))
                else:
                    timeout = x.timeout if x is not None else None
                    self._fail(h, TimeoutError(f"{h.name} timed out after {timeout} s"))
            else:
                self.completed += 1
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
                and (self.state == OPEN or (self.state == CLOSING and self.on_exit == "drain"))
                and not x.cancelling
                and retry.should_retry(x.attempt, exc)
            ):
                when = self.clock() + retry.pause(x.attempt)
                if x.deadline is None or when < x.deadline:
                    x.attempt += 1
                    h._when = when
                    h._st = PENDING
                    h._result = None
                    self.pending += 1
                    self.heap.push(when, h)
                    if when < self.wake_at:
                        self.rearm(when)
                    return
        self.failed += 1
        if not h._finish(FAILED, exc):
            self.report(h, exc)


def _warn_blocking(h: Handle[Any], elapsed: float) -> None:
    logger.warning(
        "sync callback %s blocked the event loop for %.3f s; pass in_thread=True or make it async",
        h.name,
        elapsed,
    )
