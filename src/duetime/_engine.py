"""The engine under a Scheduler: the timer loop, running due entries, outcomes.

:class:`Engine` owns everything that happens once an entry is on the heap: the
one timer loop that sleeps in a cancel scope until the earliest due time, the
inline fast path for plain sync callbacks, the reusable callback tasks for
everything else, each handle's final state and counters, cancellation, and the
wall-clock watch.  Opening and leaving the block is its base
:class:`~._engine_block.EngineBlock`.
:class:`~duetime.Scheduler` is the public face that turns ``call_*`` into
entries; satellites (Recurring, Timeouts, PendingReplies, ThreadedScheduler) see
the engine only as a :class:`~._host.Host`.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from contextvars import Context, copy_context
from datetime import datetime
from types import CoroutineType
from typing import Any, TypeVar

from anyio import (
    CancelScope,
    CapacityLimiter,
    Event,
    get_cancelled_exc_class,
)
from anyio.abc import TaskGroup

from ._bridge import ThreadBridge
from ._context import InContext
from ._engine_block import EngineBlock
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
    _tls,
    report_unobserved,
)
from ._heap import TimerHeap
from ._host import Cancellable
from ._logs import core_log
from ._tasks import CallbackTasks, warn_blocking
from ._unobserved import Unobserved
from ._util import NEW, is_async
from ._wall import WallWatch

__all__ = ["LATENESS_SAMPLES", "Engine", "PlainHandle"]

T_co = TypeVar("T_co", covariant=True)

logger = core_log

_INF = math.inf
LATENESS_SAMPLES = 1024
_get_ident = threading.get_ident


def _clock_unavailable() -> float:
    raise SchedulerClosed("the scheduler has not been entered")


class PlainHandle(Handle[T_co]):
    """The handle of a plain ``call_*`` (no options) on a :class:`Engine`.

    It is a :class:`~duetime.Handle` in every way; only its :meth:`cancel`
    carries out the engine's cancel of a pending entry itself, one Python
    call where the general path takes two: cancel storms are held to
    asyncio's ``TimerHandle.cancel``.
    """

    __slots__ = ()

    def cancel(self) -> bool:
        """Cancel the callback; see :meth:`Handle.cancel`."""
        if self._st <= QUEUED and self._x is None:
            e: Engine | None = self._owner  # type: ignore[assignment]
            if e is not None and _get_ident() == e.loop_thread:
                # Engine._cancel_pending, written out for this case.
                self._st = CANCELLED
                self._args = None
                n = e.cancelled = e.cancelled + 1
                if n >= e.compact_at and e.wake_at > -_INF:
                    e.rearm(-_INF)
                if e._quiet_mode:
                    e.check_quiet()
                return True
        return Handle.cancel(self)


class Engine(EngineBlock):
    """Runs a scheduler's entries once they are due, and ends each in one final state.

    Its :class:`~duetime.Scheduler` sees it as an :class:`~._front.EngineFront`,
    satellites as a :class:`~._host.Host`, its callback tasks as a
    :class:`~._tasks.TaskSite` and its wall-clock watch as a
    :class:`~._wall.WallSite`: each view lists what that part may use.  Opening
    and leaving the block (``open``, ``close``, ``crash``, the drain) come from
    :class:`~._engine_block.EngineBlock`.
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

        self._cancelled_exc: type[BaseException] = BaseException
        self.state = NEW
        self.closed = True  # no scheduling before open() or after exit
        self.clock: Callable[[], float] = _clock_unavailable
        self.tg: TaskGroup | None = None
        self.limiter: CapacityLimiter | None = None
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

        # Callbacks ever scheduled (retries are not new ones); what is pending
        # is derived from it, so a cancel or a start updates one counter only.
        self.scheduled = 0
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

        self.tasks = CallbackTasks(
            self, sync_in_thread=sync_in_thread, slow_callback_duration=slow_callback_duration
        )
        # Due entries taken off the heap as one sorted batch, and how far along.
        self._batch: list[tuple[float, int, Any]] | None = None
        self._batch_j = 0
        # Exit waits on this while _quiet_mode holds (1: pending, 2: running,
        # 3: either, is not yet zero).
        self._quiet: Event | None = None
        self._quiet_mode = 0
        self._never: Event | None = None
        self._exit_hooks: dict[Cancellable, None] = {}
        self.wall = WallWatch(self)
        #: Failures nobody observed yet, reported at GC, at exit or past a bound.
        self.unobserved = Unobserved(self._report_held)
        #: The context callbacks copy by default: the one that entered the block.
        self.base_context: Context = copy_context()
        # The thread the event loop runs in (None until open), and how to hand
        # it a call from another thread.
        self.loop_thread: int | None = None
        # The loop thread's id while the block is open, else None: the call_*
        # hot path tells "open, and called from the loop thread" with one compare.
        self.accepting: int | None = None
        self.bridge = ThreadBridge(self)
        # A BaseException from a callback, a done-callback or on_error: it ends
        # the block and leaves it as itself.
        self._fatal: BaseException | None = None
        # on_exit="drain": retries are taken while due before this loop time.
        self._drain_until = _INF
        # Cancels are handed to the heap's dead count by the timer loop, as the
        # growth of ``cancelled`` since the last pass (cancels of entries off the
        # heap over-count it, which the heap allows); at ``compact_at`` a cancel
        # wakes the loop to compact.  One counter per cancel, not two.
        self._dead_seen = 0
        self.compact_at = 65

    # ------------------------------------------------------------------ host: state

    @property
    def pending(self) -> int:
        """Callbacks scheduled and not started (or waiting for a retry)."""
        return (
            self.scheduled
            - self.running
            - self.completed
            - self.failed
            - self.cancelled
            - self.expired
            - (self.inline is not None)
        )

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
        self.tasks.thread_limiter = limiter

    def set_before_sleep(self, hook: Callable[[], float]) -> None:
        self.before_sleep = hook

    def wake(self) -> None:
        self.rearm(-_INF)

    def end_grace(self) -> None:
        self.grace = 0.0

    def spend_grace(self, seconds: float) -> None:
        """Take ``seconds`` off the exit's ``grace`` (spent on durable tasks first)."""
        if self.grace is not None:
            self.grace = max(0.0, self.grace - seconds)

    def expire_unstarted(self, h: Handle[Any], exc: DeadlineExpired) -> None:
        """Count a new handle as scheduled, and end it EXPIRED: it could not start in time."""
        self.scheduled += 1
        self.expired += 1
        h._finish(EXPIRED, exc)

    def hold_unobserved(self, handle: Handle[Any], exc: BaseException) -> None:
        if isinstance(exc, Exception):  # any other BaseException ends the block
            self.unobserved.hold(handle, exc)

    def _report_held(self, handle: Handle[Any], exc: BaseException) -> None:
        """Report a held failure: from a loop callback or the exit, not our tasks,
        so a BaseException from ``on_error`` must not escape (see crash())."""
        try:
            report_unobserved(self.on_error, handle, exc)
        except BaseException as fatal:
            self.crash(fatal)

    # ------------------------------------------------------------------ host: entries

    def push(self, h: Handle[Any]) -> None:
        """Put a freshly made handle with an Extra on the heap (the slow path)."""
        x = h._x
        when = h._when
        self.heap.push((when, h._id, h))
        if x is None or not x.internal:
            self.scheduled += 1
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

    # ------------------------------------------------------------------ cancellation

    def _cancel_pending(self, h: Handle[Any]) -> bool:
        # Hot under cancel storms, held to asyncio's TimerHandle.cancel: the
        # common case is written out.  The handle's tuple stays where it is
        # (heap, FIFO or callback tasks' queue) and is skipped when it comes up.
        if _get_ident() != self.loop_thread:
            return bool(self.bridge.call(h.cancel))
        n = self.cancelled = self.cancelled + 1
        x = h._x
        if x is None:
            h._st = CANCELLED
            h._args = None  # the arguments go now; the owner with the tuple
        else:
            if x.wall is not None:
                self.wall.untrack(h)
            h._finish(CANCELLED, None)
        # Handed to the heap by the timer loop (a method call per cancel would
        # double its cost); past the heap's threshold the loop is woken to
        # compact, off this path.
        if n >= self.compact_at and self.wake_at > -_INF:
            self.rearm(-_INF)
        if self._quiet_mode:
            self.check_quiet()
        return True

    def _cancel_running(self, h: Handle[Any]) -> bool:
        if _get_ident() != self.loop_thread:
            return bool(self.bridge.call(h.cancel))
        payload = h._result
        if isinstance(payload, CancelScope):
            h._extra().cancelling = True
            payload.cancel()
            return True
        if isinstance(payload, InContext):
            h._extra().cancelling = True  # its callback task closes it instead of running it
            return True
        return False  # a sync callback running on the loop cannot be interrupted

    # ------------------------------------------------------------------ the timer loop

    async def _timer_loop(self) -> None:
        try:
            await self._loop()
        except get_cancelled_exc_class():
            raise
        except BaseException as exc:
            self.crash(exc)

    async def _loop(self) -> None:
        heap = self.heap
        entries = heap.entries
        soon = self.soon
        clock = self.clock
        tasks = self.tasks
        never = self._never
        assert never is not None
        while True:
            now = clock()
            if soon or self._batch is not None or (entries and entries[0][0] <= now):
                self._run_due(now)
            if tasks.q:
                tasks.pump()
            elif tasks.recheck:
                tasks.settle()
            if self._quiet_mode:
                self.check_quiet()
            # A slice at a time each: never a long stall.
            cancelled = self.cancelled
            if cancelled != self._dead_seen:
                heap.note_dead(cancelled - self._dead_seen)
                self._dead_seen = cancelled
            more = heap.drop_dead_top()  # so we don't wake up for nothing
            if heap.wants_compaction():
                heap.compact_step()
            self.compact_at = cancelled + heap.dead_until_compaction()
            hook = self.before_sleep
            deadline = self.next_deadline() if hook is None else hook()
            if more:
                deadline = -_INF
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
        if self.tasks.recheck or self.soon or self._batch is not None or self.heap.compacting:
            return -_INF  # queued, FIFO or compaction work left: others go first, then on
        entries = self.heap.entries
        return entries[0][0] if entries else _INF

    def _run_due(self, now: float) -> None:
        """Run or dispatch every entry due at ``now``, in (when, seq) order.

        Two sorted sources are merged: the heap and the ``call_soon`` FIFO (its
        entries are due at once, in clock order, so they skip the heap).  Plain
        sync callbacks run right here, inline, one after another: the cheapest
        path there is.  Everything else goes to a callback task.  A sync callback
        never overtakes queued work of the same pass: the pass stops there and
        resumes once the callback tasks have started what was queued, so bodies start
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
        q = self.tasks.q
        fresh_context = self.base_context.copy
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
                # src: 0 the call_soon FIFO, 1 the batch, 2 the heap.  Each
                # source alone (a due batch, a call_soon burst) is the common
                # case and takes the fewest steps.
                if j < k:
                    e = batch[j]  # type: ignore[index]
                    if entries and entries[0][0] <= now and entries[0][:2] < e[:2]:
                        e = entries[0]
                        src = 2
                    else:
                        src = 1
                elif entries and entries[0][0] <= now:
                    e = entries[0]
                    src = 2
                else:
                    e = None
                    src = 0
                # Merge with the call_soon FIFO in (when, seq) order.
                if soon:
                    h = soon[0]
                    when = h._when
                    if when <= now and (e is None or (when, h._id) < e[:2]):
                        soon.popleft()
                        src = 0
                    elif e is None:
                        break
                elif e is None:
                    break
                if src:
                    when, _, h = e  # type: ignore[misc]  # src != 0: e is set
                    if src == 1:
                        j += 1
                    else:
                        heap.pop()
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
                        heap.push((when, h._id, h))
                    break
                # -- fast path: a plain callback, inline on the event loop, in a
                # context of its own (a copy of the one that entered the block).
                h._st = RUNNING
                self.inline = h
                self.inline_started = t
                late = t - when
                if late > max_late:
                    max_late = late
                record_late(late)
                context = fresh_context()
                args = h._args
                try:
                    # Without arguments, no list and tuple are built for the call.
                    result = context.run(h._func, *args) if args else context.run(h._func)  # type: ignore[arg-type]
                except Exception as exc:
                    self.inline = None
                    self.tasks.fail(h, exc)
                except BaseException as exc:
                    self.inline = None
                    self._inline_base_exception(h, exc)
                    return
                else:
                    self.inline = None
                    if type(result) is CoroutineType:
                        # An async callback: it has started; a callback task awaits it.
                        self.running += 1
                        h._result = InContext(result, context)
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
                    warn_blocking(h, t2 - t)
                t = t2
        finally:
            self.inline = None
            _tls.engine = None
            self.max_late = max_late
            if batch is not None and j < k:
                self._batch_j = j  # resumed by the next pass
            else:
                self._batch = None
            # This frame outlives the pass when a callback's traceback does
            # (through the callback's frame): it must not keep handles alive.
            h = e = batch = None  # type: ignore[assignment]

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
        self.tasks.q.append(h)

    def _inline_base_exception(self, h: Handle[Any], exc: BaseException) -> None:
        """An inline sync callback raised a BaseException that is not an Exception."""
        if isinstance(exc, self._cancelled_exc):
            # It cancelled itself (asyncio lets a sync function raise CancelledError).
            self.cancelled += 1
            h._finish(CANCELLED, None)
            return
        self.failed += 1
        try:
            h._finish(FAILED, exc)
        finally:
            self.crash(exc)
