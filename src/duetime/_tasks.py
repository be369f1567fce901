"""Callback tasks: what runs a due handle that the inline fast path cannot.

Async callbacks, sync callbacks in worker threads or under a concurrency
limit, and anything with options run here, in a few reusable callback tasks of
the scheduler's task group, and end in their final state (or go back on the
heap for a retry).  Every callback runs in a context of its own (see
:mod:`._context`).
"""

from __future__ import annotations

import contextlib
import inspect
import math
from collections import deque
from collections.abc import Callable
from contextvars import Context
from typing import TYPE_CHECKING, Any, Protocol

from anyio import CancelScope, Event, get_cancelled_exc_class, to_thread

from ._context import InContext
from ._exceptions import DeadlineExpired
from ._handle import (
    CANCELLED,
    COMPLETED,
    EXPIRED,
    FAILED,
    QUEUED,
    RUNNING,
    Extra,
    Handle,
    _current,
)
from ._logs import core_log
from ._util import is_async, strip_own_frames

if TYPE_CHECKING:
    from anyio import CapacityLimiter
    from anyio.abc import TaskGroup


class TaskSite(Protocol):
    """What callback tasks use of their engine (``_engine.Engine`` is one).

    The outcome counters they keep in step as handles start and end, and four
    calls: wake the exit when what it waits for reaches zero, end the block with
    a BaseException, put a failed attempt back for a retry, and hold a failure
    nobody has observed yet.  Everything else (the task group, the clock, the
    limiters, the context callbacks copy) is handed to :meth:`CallbackTasks.open`.
    """

    running: int
    completed: int
    failed: int
    cancelled: int
    expired: int
    max_late: float
    lat: deque[float]

    def check_quiet(self) -> None:
        """Wake the exit if it waits for what just reached zero."""

    def crash(self, exc: BaseException) -> None:
        """End the block with ``exc``, which leaves it as itself."""

    def requeue(self, h: Handle[Any], when: float) -> bool:
        """Put ``h`` back on the heap for ``when`` if leaving the block allows it."""

    def hold_unobserved(self, handle: Handle[Any], exc: BaseException) -> None:
        """Hold a failure nobody has observed yet, for reporting."""


__all__ = ["CallbackTasks", "TaskSite", "warn_blocking"]

logger = core_log

_INF = math.inf
# Callback tasks parked for reuse; beyond this an idle task exits.
_MAX_PARKED = 256
_MAX_BURST = 512


class CallbackTasks:
    """The callback tasks of one engine and the queue of due handles they take from."""

    __slots__ = (
        "_avail",
        "_base_context",
        "_burst",
        "_clock",
        "_engine",
        "_limiter",
        "_parked",
        "_slow",
        "_sync_in_thread",
        "_tg",
        "acquiring",
        "q",
        "recheck",
        "thread_limiter",
    )

    def __init__(
        self, engine: TaskSite, *, sync_in_thread: bool, slow_callback_duration: float
    ) -> None:
        self._engine = engine
        self._sync_in_thread = sync_in_thread
        self._slow = slow_callback_duration
        # Set by open(), when the engine's block is entered.
        self._tg: TaskGroup | None = None
        self._clock: Callable[[], float] = _not_open
        self._limiter: CapacityLimiter | None = None
        self._base_context = Context()
        #: Bounds the worker threads of sync callbacks (None: anyio's default). Assignable.
        self.thread_limiter: CapacityLimiter | None = None
        #: Due handles waiting for a callback task.
        self.q: deque[Handle[Any]] = deque()
        self._parked: deque[Event] = deque()
        self._avail = 0  # tasks woken or spawned that have not looked at q yet
        self._burst = 1
        #: Set while queued work may still be waiting for tasks to start it.
        self.recheck = False
        #: Due handles waiting for a limiter token (off every queue meanwhile).
        self.acquiring: set[Handle[Any]] = set()

    def open(
        self,
        tg: TaskGroup,
        clock: Callable[[], float],
        limiter: CapacityLimiter | None,
        base_context: Context,
    ) -> None:
        """Start serving: spawn tasks in ``tg``, time runs on ``clock``, take a
        ``limiter`` token per run (None: no limit), copy ``base_context`` per run."""
        self._tg = tg
        self._clock = clock
        self._limiter = limiter
        self._base_context = base_context

    def pump(self) -> None:
        """Get callback tasks onto the queued work, reusing parked ones first.

        A task drains the queue until one of its jobs really suspends, so quick
        async callbacks share a few tasks.  More tasks are spawned, in
        doubling bursts, only while the queue is still full after those tasks
        had their turn: they are all blocked.
        """
        q = self.q
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
                tg = self._tg
                assert tg is not None
                for _ in range(n):
                    self._avail += 1
                    tg.start_soon(self._serve)
            self.recheck = True
        else:
            self.recheck = False
            self._burst = 1

    def settle(self) -> None:
        """Nothing is queued any more: reset the spawning burst."""
        self.recheck = False
        self._burst = 1

    async def _serve(self) -> None:
        q = self.q
        parked = self._parked
        self._avail -= 1
        try:
            while True:
                while q:
                    await self._run_job(q.popleft())
                if len(parked) >= _MAX_PARKED:
                    return
                event = Event()
                parked.append(event)
                await event.wait()
                self._avail -= 1
        except get_cancelled_exc_class():
            raise
        except BaseException as exc:
            # ...ends the block with that exception, as itself (see Engine.crash).
            self._engine.crash(exc)

    async def _run_job(self, h: Handle[Any]) -> None:
        """Run one queued handle in this callback task, to its final state."""
        try:
            e = self._engine
            x = h._x
            if h._st == RUNNING:
                # An async callback whose coroutine was made inline: await it.
                job: InContext = h._result
                started = self._clock()  # approximately; it was created just before
                if x is not None and x.cancelling:
                    job.close()
                    e.running -= 1
                    e.cancelled += 1
                    h._finish(CANCELLED, None)
                    e.check_quiet()
                    return
                await self._drive(h, x, job, None, started, _INF, job.context)
                return
            if h._st != QUEUED:
                return  # cancelled while queued
            limiter = self._limiter
            if limiter is not None:
                # Off every queue while it waits for a token: keep it findable, so
                # that leaving the block cancels it like any other pending handle.
                self.acquiring.add(h)
                try:
                    await limiter.acquire()
                except BaseException:
                    if h._st == QUEUED:
                        e.cancelled += 1
                        h._finish(CANCELLED, None)
                        e.check_quiet()
                    raise
                finally:
                    self.acquiring.discard(h)
                if h._st != QUEUED:
                    limiter.release()
                    return
            try:
                now = self._clock()
                if x is not None and x.deadline is not None and now >= x.deadline:
                    e.expired += 1
                    h._finish(
                        EXPIRED, DeadlineExpired(f"{h.name} could not start before its deadline")
                    )
                    e.check_quiet()
                    return
                h._st = RUNNING
                e.running += 1
                late = now - h._when
                if late > e.max_late:
                    e.max_late = late
                e.lat.append(late)
                deadline = _INF
                context = self._base_context.copy()
                if x is not None:
                    x.ran = True
                    if x.timeout is not None:
                        deadline = now + x.timeout
                    if x.deadline is not None and x.deadline < deadline:
                        deadline = x.deadline
                    if x.context is not None:
                        context = x.context
                func = h._func
                assert func is not None
                in_thread = self._sync_in_thread
                if x is not None and x.in_thread is not None:
                    in_thread = x.in_thread
                thread = in_thread and not is_async(func)
                await self._drive(h, x, func, thread, now, deadline, context)
            finally:
                if limiter is not None:
                    limiter.release()
        finally:
            h = None  # type: ignore[assignment]  # see the end of _drive

    async def _drive(
        self,
        h: Handle[Any],
        x: Extra | None,
        target: Any,
        thread: bool | None,
        started: float,
        deadline: float,
        context: Context,
    ) -> None:
        """Run ``target`` in ``context``: an :class:`InContext` when ``thread`` is
        None, else a function (in a worker thread when ``thread`` is true).

        Ends the handle in its final state, or re-queues it for a retry.
        """
        e = self._engine
        args = h._args or ()
        try:
            if not thread:
                # A context given with context= may be entered elsewhere right
                # now (a thread still runs in it): that fails this handle alone.
                context.run(_current.set, (h, started))
            with CancelScope(deadline=deadline) as scope:
                if thread is None:
                    h._result = scope  # lets cancel() reach a running callback
                    result = await target
                elif thread:
                    h._result = scope
                    # The thread enters the context and sets current_run() there;
                    # an abandoned thread (timeout, cancel) may still be in it
                    # when this task moves on, so the loop never touches it again.
                    result = await to_thread.run_sync(
                        context.run,
                        _in_thread,
                        h,
                        started,
                        target,
                        args,
                        abandon_on_cancel=True,
                        limiter=self.thread_limiter,
                    )
                else:
                    # A sync callback on the loop cannot be interrupted: while it
                    # runs, cancel() says so (False), as for the inline path.
                    h._result = None
                    clock = self._clock
                    t0 = clock()
                    result = context.run(target, *args)
                    elapsed = clock() - t0
                    if elapsed >= self._slow:
                        warn_blocking(h, elapsed)
                    if inspect.iscoroutine(result):
                        h._result = scope
                        result = await InContext(result, context)
        except Exception as exc:
            e.running -= 1
            self.fail(h, exc)
        except get_cancelled_exc_class():
            e.running -= 1
            e.cancelled += 1
            h._finish(CANCELLED, None)
            e.check_quiet()
            tg = self._tg
            assert tg is not None
            if tg.cancel_scope.cancel_called:
                raise
            # The callback cancelled itself; this task lives on.
        except BaseException as exc:
            e.running -= 1
            e.failed += 1
            try:
                h._finish(FAILED, exc)
            finally:
                e.crash(exc)
            return
        else:
            e.running -= 1
            x = h._x  # cancel() may have made it since
            if x is not None and x.cancelling:
                # cancel() returned True: the handle ends CANCELLED even if the
                # callback returned before it reached another checkpoint.
                e.cancelled += 1
                h._finish(CANCELLED, None)
            elif scope.cancelled_caught:
                if x is not None and x.deadline is not None and deadline == x.deadline:
                    self.fail(h, DeadlineExpired(f"{h.name} was cut off by its deadline"))
                else:
                    timeout = x.timeout if x is not None else None
                    self.fail(h, TimeoutError(f"{h.name} timed out after {timeout} s"))
            else:
                e.completed += 1
                h._finish(COMPLETED, result)
        finally:
            # Our bookkeeping leaves the callback's context, and this frame lets
            # go of the handle: a traceback that outlives the run (it reaches
            # this frame through the callback's frame) must not keep the handle
            # alive, or an unobserved failure could not be reported at collection.
            if not thread:
                with contextlib.suppress(RuntimeError):  # entered elsewhere: not ours
                    context.run(_current.set, None)
            h = None  # type: ignore[assignment]
            target = None
        e.check_quiet()

    def fail(self, h: Handle[Any], exc: Exception) -> None:
        """A run raised ``exc``: retry it, or fail the handle (held for reporting)."""
        strip_own_frames(exc)
        e = self._engine
        x = h._x
        if x is not None:
            retry = x.retry
            if retry is not None and not x.cancelling and retry.should_retry(x.attempt, exc):
                when = self._clock() + retry.pause(x.attempt)
                if (x.deadline is None or when < x.deadline) and e.requeue(h, when):
                    x.attempt += 1
                    return
        e.failed += 1
        if not h._finish(FAILED, exc):
            e.hold_unobserved(h, exc)


def _in_thread(h: Handle[Any], started: float, target: Any, args: tuple[Any, ...]) -> Any:
    """Run a sync callback in its worker thread, inside its context, with current_run()."""
    token = _current.set((h, started))
    try:
        return target(*args)
    finally:
        _current.reset(token)
        h = None  # type: ignore[assignment]  # see the end of CallbackTasks._drive


def warn_blocking(h: Handle[Any], elapsed: float) -> None:
    """Log a sync callback that held the event loop for ``elapsed`` seconds."""
    logger.warning(
        "sync callback %s blocked the event loop for %.3f s; pass in_thread=True or make it async",
        h.name,
        elapsed,
    )


def _not_open() -> float:
    raise RuntimeError("the callback tasks have not been opened")
