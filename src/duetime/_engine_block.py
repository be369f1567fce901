"""An engine's block: opening it, and leaving it (``on_exit``, ``grace``, abort, crash).

:class:`EngineBlock` is the part of :class:`~._engine.Engine` that starts the
task group and the timer loop, and that runs once the block starts to end (or a
BaseException ends it from inside): it drains or cancels what is pending, waits
within ``grace`` for what runs, and decides whether a failed attempt may still
be retried while the block exits.  None of it is on the schedule, fire or
cancel paths, which stay in ``_engine``.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from contextvars import Context, copy_context
from types import TracebackType
from typing import TYPE_CHECKING, Any

from anyio import (
    CapacityLimiter,
    Event,
    create_task_group,
    get_cancelled_exc_class,
    move_on_at,
)
from anyio.abc import TaskGroup

from ._bridge import ThreadBridge
from ._context import InContext
from ._handle import CANCELLED, PENDING, QUEUED, RUNNING, Handle
from ._heap import TimerHeap
from ._host import Cancellable
from ._lifecycle import exit_block
from ._tasks import CallbackTasks
from ._unobserved import Unobserved
from ._util import CLOSED, CLOSING, NEW, OPEN, backend_clock
from ._wall import WallWatch

__all__ = ["EngineBlock"]

_INF = math.inf
_get_ident = threading.get_ident


class EngineBlock:
    """How an :class:`~._engine.Engine`'s block opens and ends; a base of the engine.

    The attributes below are the engine's (set in ``Engine.__init__``), listed
    for the type checker: they are what opening and leaving the block read and
    change.
    """

    state: int
    closed: bool
    accepting: int | None
    loop_thread: int | None
    tg: TaskGroup | None
    clock: Callable[[], float]
    bridge: ThreadBridge
    base_context: Context
    max_concurrency: int | None
    limiter: CapacityLimiter | None
    grace: float | None
    on_exit: str
    heap: TimerHeap
    soon: deque[Handle[Any]]
    tasks: CallbackTasks
    wall: WallWatch
    unobserved: Unobserved
    wake_at: float
    running: int
    cancelled: int
    _exit_hooks: dict[Cancellable, None]
    _fatal: BaseException | None
    _drain_until: float
    _batch: list[tuple[float, int, Any]] | None
    _batch_j: int
    _quiet: Event | None
    _quiet_mode: int
    _cancelled_exc: type[BaseException]
    _never: Event | None

    if TYPE_CHECKING:

        @property
        def pending(self) -> int: ...

        def rearm(self, when: float) -> None: ...

        def _cancel_pending(self, h: Handle[Any]) -> bool: ...

        async def _timer_loop(self) -> None: ...

    async def open(self) -> None:
        """Start the task group and the timer loop (from ``Scheduler.__aenter__``)."""
        if self.state != NEW:
            raise RuntimeError("a Scheduler can be entered only once")
        self.clock = backend_clock()
        self.bridge.open()
        self._cancelled_exc = get_cancelled_exc_class()
        self.base_context = copy_context()
        if self.max_concurrency is not None:
            self.limiter = CapacityLimiter(self.max_concurrency)
        self._never = Event()  # the timer loop sleeps on it until its deadline
        tg = create_task_group()
        await tg.__aenter__()
        self.tg = tg
        self.tasks.open(tg, self.clock, self.limiter, self.base_context)
        self.loop_thread = _get_ident()
        self.unobserved.defer = self.bridge.soon
        self.state = OPEN
        self.closed = False
        self.accepting = self.loop_thread
        tg.start_soon(self._timer_loop, name=f"duetime timer loop {id(self):#x}")

    async def close(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Leave the block: exit hooks, then ``on_exit`` and ``grace`` (or abort).

        A BaseException that ended the block from inside (a callback's
        KeyboardInterrupt, say) leaves it as itself.
        """
        tg = self.tg
        assert tg is not None
        self.closed = True
        self.accepting = None
        self.state = CLOSING
        for hook in list(self._exit_hooks):
            try:
                hook.cancel()
            except BaseException as fatal:
                self.crash(fatal)
        try:
            result = await exit_block(tg, self._drain, self._abort, exc_type, exc, tb)
        except BaseException:
            self._after_exit()
            if self._fatal is not None:
                raise self._fatal from None
            raise
        self._after_exit()
        if self._fatal is not None:
            raise self._fatal from None
        return result

    def _after_exit(self) -> None:
        """Report what nobody observed (on every way out), then forget the loop."""
        self.tg = None  # from here on crash() only records
        self.unobserved.flush()  # a BaseException from on_error is recorded by crash()
        self.unobserved.defer = None

    def crash(self, exc: BaseException) -> None:
        """A BaseException escaped a callback, a done-callback or ``on_error``.

        Every other handle ends in a final state (CANCELLED), the block ends,
        and ``exc`` leaves it as itself (never wrapped in a group).  It never
        escapes one of our tasks: on asyncio that would stop the event loop.
        """
        if self._fatal is None:
            self._fatal = exc
        if self.tg is not None:
            self._abort()

    async def _drain(self) -> None:
        """The block ended normally: apply ``on_exit`` within ``grace``.

        ``"drain"`` starts what is due within ``grace`` of the exit and cancels
        the rest at once; running callbacks then get ``grace`` from the last
        start (at most twice ``grace`` in all).  ``grace=None`` waits as long
        as it takes.
        """
        grace = self.grace
        start_by = _INF if grace is None else self.clock() + grace
        if self.on_exit == "cancel":
            self._cancel_all_pending()
        else:
            self._drain_until = start_by
            self._cancel_pending_after(start_by)
            with move_on_at(start_by):
                # Until nothing is pending or running: a failed attempt may put
                # a retry back on the heap meanwhile.
                await self._wait_quiet(3)
            self._drain_until = -_INF  # no retry starts after the window
            self._cancel_all_pending()
        run_until = _INF if grace is None else self.clock() + grace
        with move_on_at(run_until):
            await self._wait_quiet(2)

    def requeue(self, h: Handle[Any], when: float) -> bool:
        """Put a failed attempt back on the heap for ``when``, if leaving the block allows.

        While open it always may; while exiting with ``on_exit="drain"``, only
        for a retry due inside the drain window.
        """
        state = self.state
        if state != OPEN and not (
            state == CLOSING and self.on_exit == "drain" and when <= self._drain_until
        ):
            return False
        h._when = when
        h._st = PENDING
        h._result = None
        self.heap.push((when, h._id, h))
        if when < self.wake_at:
            self.rearm(when)
        return True

    def _abort(self) -> None:
        self.state = CLOSED  # no retries from here on
        self.closed = True
        self.accepting = None
        self._cancel_all_pending()
        tg = self.tg
        assert tg is not None
        tg.cancel_scope.cancel()

    def _busy(self, mode: int) -> int:
        # 1: pending, 2: running, 3: both
        return (self.pending if mode & 1 else 0) + (self.running if mode & 2 else 0)

    async def _wait_quiet(self, mode: int) -> None:
        while self._busy(mode) > 0:
            self._quiet = Event()
            self._quiet_mode = mode
            await self._quiet.wait()

    def check_quiet(self) -> None:
        """Wake the exit if it waits for what just reached zero."""
        mode = self._quiet_mode
        if mode and self._busy(mode) == 0:
            assert self._quiet is not None
            self._quiet_mode = 0
            self._quiet.set()

    def _cancel_pending_after(self, when: float) -> None:
        fatal = None
        for h in self.heap.live():
            x = h._x
            if h._when > when and (x is None or not x.internal):
                try:
                    self._cancel_pending(h)
                except BaseException as exc:
                    fatal = fatal or exc
        if fatal is not None:
            self.crash(fatal)

    def _cancel_all_pending(self) -> None:
        tasks = self.tasks
        q = tasks.q
        doomed = self.heap.live() + list(self.soon) + list(q) + list(tasks.acquiring)
        if self._batch is not None:
            doomed += [e[2] for e in self._batch[self._batch_j :] if e[2]._when is e[0]]
            self._batch = None
        self.heap.clear()
        self.soon.clear()
        q.clear()
        self.wall.clear()
        # Every one ends CANCELLED even if a done-callback raises a BaseException
        # on the way: the first such exception ends the block afterwards.
        fatal = None
        for h in doomed:
            x = h._x
            if x is not None and x.internal:
                continue
            try:
                if h._st <= QUEUED:
                    self.cancelled += 1
                    h._finish(CANCELLED, None)
                elif h._st == RUNNING and isinstance(h._result, InContext):
                    # An async callback created inline, not yet picked up by a callback task.
                    h._result.close()
                    self.running -= 1
                    self.cancelled += 1
                    h._finish(CANCELLED, None)
            except BaseException as exc:
                fatal = fatal or exc
        if fatal is not None:
            self.crash(fatal)
