"""WorkerPool: a bounded, optionally prioritised queue served by N supervised workers.

Submitting, the workers and each item's final state are here; opening and
closing the block is the pool's base :class:`~._closing.PoolClosing`.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Coroutine
from typing import Any, Generic, TypeVar, overload

from anyio import (
    CancelScope,
    ClosedResourceError,
    Event,
    WouldBlock,
    current_effective_deadline,
    get_cancelled_exc_class,
)
from anyio.abc import TaskGroup
from anyio.lowlevel import cancel_shielded_checkpoint, checkpoint_if_cancelled

from .._exceptions import DeadlineExpired
from .._handle import (
    CANCELLED,
    COMPLETED,
    EXPIRED,
    FAILED,
    RUNNING,
    Handle,
    report_unobserved,
)
from .._logs import core_log
from .._unobserved import Unobserved
from .._util import (
    NEW,
    OPEN,
    is_async,
    strip_own_frames,
    to_delay,
    to_positive,
)
from ._closing import PoolClosing, in_handler
from ._queue import ItemQueue, expired, number
from ._stats import Estimate, PoolStatistics

__all__ = ["PoolStatistics", "WorkerPool"]

ItemT = TypeVar("ItemT")
T = TypeVar("T")

logger = core_log

_INF = math.inf


class WorkerPool(PoolClosing, Generic[ItemT, T]):
    """N workers that run ``handler(item)`` for items taken from a bounded queue.

    ::

        async with duetime.WorkerPool(handler, workers=4, maxsize=100) as pool:
            h = await pool.submit(item)       # waits while the queue is full
            h = pool.submit_nowait(item)      # raises anyio.WouldBlock when full
        # leaving the block = aclose() + wait for the drain

    Every submitted item gets a :class:`Handle` and ends in exactly one final
    state.  Producers wait for room and workers wait for items on *separate*
    wait lists, and an item is handed straight to an idle worker, so no mix of
    producers, workers, priorities and ``maxsize`` can deadlock.

    :param handler: an async or sync function of one item.  A sync handler runs
        inline on the event loop, so neither ``item_timeout`` nor the deadline can
        interrupt it; make it async (or wrap it in ``anyio.to_thread.run_sync``)
        if it blocks.
    :param workers: how many items run at once (>= 1)
    :param maxsize: how many items may wait in the queue.  ``0`` means none: a
        submit waits until a worker is free to take the item.  ``math.inf``
        means unbounded.
    :param priority: if true, ``submit(item, priority=p)`` orders the queue:
        a lower ``p`` runs first, equal priorities run in submission order
    :param deadline: an absolute loop time (``anyio.current_time()``).  The
        deadline in effect where the pool is entered applies too; the earlier
        of the two wins.  An item that cannot finish before it is never started
        and ends EXPIRED; an item still running at the deadline is cut off and
        ends FAILED with :exc:`DeadlineExpired`.
    :param min_time: an item is not started unless at least this many seconds,
        and at least the running estimate of an item's duration, remain
    :param item_timeout: seconds each item may run; past that it is cancelled
        and ends FAILED with ``TimeoutError``
    :param on_error: ``on_error(handle, exc)`` for each failed item that nobody
        observes (no awaiter, no done-callback).  Default: log it at ERROR.
    :raises TypeError: if ``handler`` or ``on_error`` is not callable, or a
        number has the wrong type
    :raises ValueError: if ``workers < 1``, ``maxsize < 0``, or ``min_time``,
        ``item_timeout`` or ``deadline`` is out of range
    """

    @overload
    def __init__(
        self: WorkerPool[ItemT, T],
        handler: Callable[[ItemT], Coroutine[Any, Any, T]],
        *,
        workers: int = ...,
        maxsize: float = ...,
        priority: bool = ...,
        deadline: float | None = ...,
        min_time: float = ...,
        item_timeout: float | None = ...,
        on_error: Callable[[Handle[Any], BaseException], object] | None = ...,
    ) -> None: ...

    @overload
    def __init__(
        self: WorkerPool[ItemT, T],
        handler: Callable[[ItemT], T],
        *,
        workers: int = ...,
        maxsize: float = ...,
        priority: bool = ...,
        deadline: float | None = ...,
        min_time: float = ...,
        item_timeout: float | None = ...,
        on_error: Callable[[Handle[Any], BaseException], object] | None = ...,
    ) -> None: ...

    def __init__(
        self,
        handler: Callable[[ItemT], Any],
        *,
        workers: int = 1,
        maxsize: float = _INF,
        priority: bool = False,
        deadline: float | None = None,
        min_time: float = 0.0,
        item_timeout: float | None = None,
        on_error: Callable[[Handle[Any], BaseException], object] | None = None,
    ) -> None:
        if not callable(handler):
            raise TypeError(f"handler must be callable, not {type(handler).__name__}")
        if type(workers) is not int:
            raise TypeError(f"workers must be an int, not {type(workers).__name__}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if maxsize != _INF and type(maxsize) is not int:
            raise TypeError(f"maxsize must be an int or math.inf, not {maxsize!r}")
        if maxsize < 0:
            raise ValueError(f"maxsize must be >= 0, got {maxsize}")
        if type(priority) is not bool:
            raise TypeError("priority must be a bool")
        if deadline is not None:
            deadline = number(deadline, "deadline")
            if math.isnan(deadline):
                raise ValueError("deadline must not be NaN")
        min_time = to_delay(min_time, "min_time")
        if item_timeout is not None:
            item_timeout = to_positive(item_timeout, "item_timeout")
            if not is_async(handler):
                # As for Scheduler's timeout=: a sync handler runs inline and
                # cannot be interrupted, so the limit could not be enforced.
                raise ValueError(
                    "item_timeout cannot be enforced on a sync handler, which runs inline "
                    "on the event loop; make it async (e.g. wrap blocking work in "
                    "anyio.to_thread.run_sync)"
                )
        if on_error is not None and not callable(on_error):
            raise TypeError("on_error must be callable")

        self._handler = handler
        self._async = is_async(handler)
        self._workers = workers
        self._maxsize = maxsize
        self._priority = priority
        self._deadline_arg = deadline
        self._deadline: float | None = None
        self._estimate = Estimate(min_time)
        self._item_timeout = item_timeout
        self._on_error = on_error

        self._state = NEW
        self._tg: TaskGroup | None = None
        # A BaseException from a handler, a done-callback or on_error: it ends
        # the block and leaves it as itself (see _crash()).
        self._fatal: BaseException | None = None
        # Failures nobody has observed yet (see duetime._unobserved).
        self._unobserved = Unobserved(self._report_held)
        self._clock: Callable[[], float] = _not_entered
        self._watch_scope: CancelScope | None = None

        self._queue = ItemQueue(maxsize, priority)
        self._drained: Event | None = None

        self._submitted = 0
        self._queued = 0  # accepted, not started (in the queue, or handed to a worker)
        self._running = 0
        self._counts = [0] * 7  # by final state code
        self._restarts = 0
        # process_batch's hook: observer(handle, seconds_run, cut_off) for each
        # item that ran, just before it finishes.
        self._observer: Callable[[Handle[Any], float, bool], None] | None = None

    # ------------------------------------------------------------------ submitting

    async def submit(self, item: ItemT, *, priority: float | None = None) -> Handle[T]:
        """Queue ``item``, waiting while the queue is full (backpressure).

        An item that could not finish before the pool's deadline is not queued:
        its handle is returned already EXPIRED.

        This is a checkpoint, as trio's and anyio's ``send`` are: a cancelled
        caller gets the backend's cancellation before the item is accepted, and
        once it is accepted the call still yields to other tasks, shielded, so
        the caller never loses a handle to an item that will run.

        :param priority: with ``WorkerPool(priority=True)``, lower runs first
            (default 0); FIFO among equal priorities
        :return: the item's :class:`Handle`
        :raises anyio.ClosedResourceError: if the pool is closed (also while waiting)
        :raises RuntimeError: if the pool has not been entered
        :raises TypeError: if ``priority`` is not a real number
        :raises ValueError: if ``priority`` is NaN, or given to a pool made
            without ``priority=True``
        """
        await checkpoint_if_cancelled()
        prio = self._check_submit(priority)
        if not self._queue.producers_waiting:
            h = self._try_submit(item, prio)
            if h is not None:
                await cancel_shielded_checkpoint()
                return h

        def attempt() -> Handle[T] | None:
            self._check_open()
            return self._try_submit(item, prio)

        return await self._queue.put_waiting(attempt)

    def submit_nowait(self, item: ItemT, *, priority: float | None = None) -> Handle[T]:
        """Queue ``item`` if there is room.

        :return: the item's :class:`Handle` (already EXPIRED if it could not
            finish before the deadline)
        :raises anyio.WouldBlock: if the queue is full
        :raises anyio.ClosedResourceError: if the pool is closed
        :raises RuntimeError: if the pool has not been entered
        :raises TypeError: if ``priority`` is not a real number
        :raises ValueError: if ``priority`` is NaN, or given to a pool made
            without ``priority=True``
        """
        prio = self._check_submit(priority)
        h = None if self._queue.producers_waiting else self._try_submit(item, prio)
        if h is None:
            raise WouldBlock
        return h

    def _check_open(self) -> None:
        if self._state == NEW:
            raise RuntimeError("the WorkerPool has not been entered")
        if self._state != OPEN:
            raise ClosedResourceError("the WorkerPool is closed")

    def _check_submit(self, priority: float | None) -> float:
        if priority is None:
            prio = 0.0
        else:
            if not self._priority:
                raise ValueError("priority= needs WorkerPool(..., priority=True)")
            prio = number(priority, "priority")
            if math.isnan(prio):
                raise ValueError("priority must not be NaN")
        self._check_open()
        return prio

    def _try_submit(self, item: ItemT, prio: float) -> Handle[T] | None:
        """Accept ``item`` if there is room (or it is already too late for it)."""
        now = self._clock()
        deadline = self._deadline
        late = deadline is not None and now + self._estimate.needed() >= deadline
        if not late and not self._queue.accepts():
            return None
        h: Handle[T] = Handle(now, self._handler, (item,), self)
        self._submitted += 1
        self._queued += 1
        if late:
            self._settle(h, EXPIRED, expired(h))
        else:
            # To an idle worker (still PENDING: it does not occupy the queue) or
            # into the queue (QUEUED).
            self._queue.put(h, prio)
        return h

    # ------------------------------------------------------------------ workers

    def _check_drained(self) -> None:
        # Here, not in PoolClosing: every settled item calls it.
        if self._drained is not None and self._queued + self._running == 0:
            self._drained.set()

    async def _worker(self) -> None:
        """Supervise one worker loop: a crash outside a handler restarts it."""
        while True:
            current: list[Handle[Any]] = []
            try:
                await self._work(current)
                return
            except Exception as exc:
                self._restarts += 1
                logger.exception("a WorkerPool worker crashed; replacing it")
                for h in current:
                    self._settle(h, FAILED, exc)
            except get_cancelled_exc_class():
                raise
            except BaseException as exc:
                # Not from a handler (_run settles those): end the block with it.
                for h in current:
                    self._settle(h, FAILED, exc)
                self._crash(exc)
                return

    async def _work(self, current: list[Handle[Any]]) -> None:
        while True:
            h = await self._queue.get(self._is_open, self._lost)
            if h is None:
                return
            current.append(h)
            await self._run(h)
            current.clear()
            h = None  # see the end of _run

    def _is_open(self) -> bool:
        return self._state == OPEN

    def _lost(self, h: Handle[Any]) -> None:
        """An item handed to a worker that was cancelled before it started it."""
        self._settle(h, CANCELLED, None)

    async def _run(self, h: Handle[Any]) -> None:
        """Run one accepted item to its final state."""
        if h._st >= COMPLETED:
            return  # cancelled (or expired) while waiting
        tg = self._tg
        if tg is not None and tg.cancel_scope.cancel_called:
            # Handed straight to this worker, then the body raised: never started.
            self._settle(h, CANCELLED, None)
            return
        clock = self._clock
        now = clock()
        deadline = self._deadline
        if deadline is not None and now + self._estimate.needed() >= deadline:
            self._settle(h, EXPIRED, expired(h))
            return
        cut = _INF if deadline is None else deadline
        timeout = self._item_timeout
        by_timeout = timeout is not None and now + timeout < cut
        if by_timeout:
            assert timeout is not None
            cut = now + timeout
        self._queued -= 1
        self._running += 1
        h._st = RUNNING
        assert h._args is not None
        item = h._args[0]
        token = in_handler.set(self)
        scope: CancelScope | None = None
        try:
            if self._async:
                with CancelScope(deadline=cut) as scope:
                    h._result = scope
                    result = await self._handler(item)
            else:
                result = self._handler(item)
                if inspect.isawaitable(result):
                    with CancelScope(deadline=cut) as scope:
                        h._result = scope
                        result = await result
        except Exception as exc:
            strip_own_frames(exc)
            self._settle(h, FAILED, exc, clock() - now)
        except get_cancelled_exc_class():
            ended = clock()
            x = h._x
            if x is not None and x.cancelling:
                self._settle(h, CANCELLED, None, ended - now)
            elif deadline is not None and ended >= deadline:
                self._settle(h, FAILED, _cut_off(h), ended - now, True)
            else:
                self._settle(h, CANCELLED, None, ended - now)
            if current_effective_deadline() == -_INF:
                raise  # the pool (or something around it) is being cancelled
            # The handler cancelled itself: this worker carries on.
        except BaseException as exc:
            # KeyboardInterrupt, SystemExit, GeneratorExit or a custom one: the
            # item fails with it, then the whole pool ends and __aexit__
            # re-raises it as itself.  Not re-raised here: on asyncio it would
            # escape the task and stop the event loop.
            self._settle(h, FAILED, exc, clock() - now)
            self._crash(exc)
        else:
            ran = clock() - now
            if scope is not None and scope.cancelled_caught:
                x = h._x
                if x is not None and x.cancelling:
                    self._settle(h, CANCELLED, None, ran)
                elif by_timeout:
                    late = TimeoutError(f"{h.name} timed out after {timeout} s")
                    self._settle(h, FAILED, late, ran, True)
                else:
                    self._settle(h, FAILED, _cut_off(h), ran, True)
            else:
                self._estimate.learn(ran)
                self._settle(h, COMPLETED, result, ran)
        finally:
            in_handler.reset(token)
            # A traceback that outlives the item reaches this frame (through the
            # handler's): it must not keep the handle alive, or an unobserved
            # failure could not be reported when the program drops the handle.
            h = None  # type: ignore[assignment]

    def _settle(
        self,
        h: Handle[Any],
        st: int,
        result: object,
        ran: float | None = None,
        cut: bool = False,
    ) -> None:
        """Move ``h`` to final state ``st``, keeping every counter in step."""
        cur = h._st
        if cur >= COMPLETED:
            return
        if cur == RUNNING:
            self._running -= 1
        else:
            self._queued -= 1
        self._counts[st] += 1
        if ran is not None and self._observer is not None:
            self._observer(h, ran, cut)
        try:
            observed = h._finish(st, result)
            # A BaseException that is not an Exception ends the block and leaves
            # it, so the block's caller observes it: not reported.
            if st == FAILED and not observed and isinstance(result, Exception):
                # Held, not reported: the program may still look at the handle
                # (submit several, then await each in turn).
                self._unobserved.hold(h, result)
        except BaseException as exc:
            # From a done-callback or on_error (each ran; the first is here).
            self._crash(exc)
        self._check_drained()

    def _report(self, h: Handle[Any], exc: BaseException) -> None:
        report_unobserved(self._on_error, h, exc)

    def _report_held(self, h: Handle[Any], exc: BaseException) -> None:
        """Report a held failure (from a loop callback or the exit)."""
        try:
            self._report(h, exc)
        except BaseException as fatal:
            self._crash(fatal)

    # ------------------------------------------------------------------ Owner protocol

    def _cancel_pending(self, h: Handle[Any]) -> bool:
        self._queue.forget(h)
        self._settle(h, CANCELLED, None)
        return True

    def _cancel_running(self, h: Handle[Any]) -> bool:
        scope = h._result
        if isinstance(scope, CancelScope):
            h._extra().cancelling = True
            scope.cancel()
            return True
        return False  # a sync handler running inline cannot be interrupted

    # ------------------------------------------------------------------ introspection

    @property
    def deadline(self) -> float | None:
        """The deadline in force (loop time), or None; known once entered."""
        return self._deadline

    def statistics(self) -> PoolStatistics:
        """Return a snapshot of the pool's counters."""
        c = self._counts
        return PoolStatistics(
            submitted=self._submitted,
            queued=self._queued,
            running=self._running,
            completed=c[COMPLETED],
            failed=c[FAILED],
            cancelled=c[CANCELLED],
            expired=c[EXPIRED],
            restarts=self._restarts,
            estimate=self._estimate.value,
        )

    def __repr__(self) -> str:
        state = ("new", "open", "closing", "closed")[self._state]
        return (
            f"<WorkerPool {state} workers={self._workers} queued={self._queued}"
            f" running={self._running}>"
        )


def _cut_off(h: Handle[Any]) -> DeadlineExpired:
    return DeadlineExpired(f"{h.name} was cut off by the pool's deadline")


def _not_entered() -> float:
    raise RuntimeError("the WorkerPool has not been entered")
