"""Opening and closing a WorkerPool's block: enter, ``aclose``, exit, abort and crash.

:class:`PoolClosing` is a base of :class:`~duetime.WorkerPool`: it starts the
workers (and the deadline watch) on entry, stops accepting and waits for the
drain on ``aclose`` or exit, and ends every queued item when the block is
aborted or a BaseException ends it from inside.  Submitting and running items
stay in ``_pool``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any, Self

from anyio import CancelScope, Event, create_task_group, current_effective_deadline, sleep_until
from anyio.abc import TaskGroup

from .._handle import CANCELLED, EXPIRED, QUEUED, Handle
from .._lifecycle import exit_block
from .._unobserved import Unobserved
from .._util import CLOSED, CLOSING, NEW, OPEN, backend_clock, loop_soon_threadsafe
from ._queue import ItemQueue, expired

__all__ = ["PoolClosing", "in_handler"]

_INF = math.inf
# The pool whose handler is running in this context: aclose() from inside a
# handler must not wait for the drain (it would wait on itself).
in_handler: ContextVar[PoolClosing | None] = ContextVar("duetime_pool_handler", default=None)


class PoolClosing:
    """How a :class:`~duetime.WorkerPool`'s block opens and ends; a base of the pool.

    The attributes below are the pool's (set in ``WorkerPool.__init__``), listed
    for the type checker: they are what opening and closing read and change.
    """

    _state: int
    _clock: Callable[[], float]
    _deadline_arg: float | None
    _deadline: float | None
    _tg: TaskGroup | None
    _workers: int
    _watch_scope: CancelScope | None
    _fatal: BaseException | None
    _unobserved: Unobserved
    _drained: Event | None
    _queue: ItemQueue

    if TYPE_CHECKING:

        async def _worker(self) -> None: ...

        def _check_drained(self) -> None: ...

        def _settle(
            self,
            h: Handle[Any],
            st: int,
            result: object,
            ran: float | None = None,
            cut: bool = False,
        ) -> None: ...

    async def __aenter__(self) -> Self:
        if self._state != NEW:
            raise RuntimeError("a WorkerPool can be entered only once")
        self._clock = backend_clock()
        deadline = self._deadline_arg
        ambient = current_effective_deadline()
        if ambient != _INF:
            deadline = ambient if deadline is None else min(deadline, ambient)
        self._deadline = deadline
        tg = create_task_group()
        await tg.__aenter__()
        self._tg = tg
        self._unobserved.defer = loop_soon_threadsafe()
        self._state = OPEN
        for i in range(self._workers):
            tg.start_soon(self._worker, name=f"duetime pool worker {i} {id(self):#x}")
        if deadline is not None and deadline != _INF:
            self._watch_scope = CancelScope()
            tg.start_soon(self._watch_deadline, deadline, self._watch_scope)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        self._begin_close()
        try:
            result = await exit_block(self._tg, self._wait_drained, self._abort, exc_type, exc, tb)
        except BaseException:
            self._flush_unobserved()
            if self._fatal is not None:
                raise self._fatal from None
            raise
        self._flush_unobserved()
        if self._fatal is not None:
            # The group's cancellation (ours, from _crash) was absorbed: the
            # handler's BaseException leaves the block as itself.
            raise self._fatal from None
        return result

    def _flush_unobserved(self) -> None:
        """Report what nobody observed, on every way out of the block."""
        self._unobserved.flush()
        self._unobserved.defer = None

    async def aclose(self) -> None:
        """The sentinel: accept nothing more, let queued items run, then stop.

        anyio's name for closing a resource.  Afterwards ``submit`` and
        ``submit_nowait`` raise :exc:`anyio.ClosedResourceError`, and so do
        producers that were waiting for room.  Waits until every accepted item
        has finished, except when called from one of this pool's own handlers
        (which would be waiting on itself): then it returns at once.  Calling it
        twice is safe.
        """
        self._begin_close()
        if in_handler.get() is self or self._state == NEW:
            return
        await self._wait_drained()

    def _begin_close(self) -> None:
        if self._state in (NEW, OPEN):
            self._state = CLOSING
        if self._drained is None:
            self._drained = Event()
        # Idle workers re-check (and exit once the queue is empty); blocked
        # producers see the pool closed.
        self._queue.release_all()
        self._check_drained()

    async def _wait_drained(self) -> None:
        assert self._drained is not None
        await self._drained.wait()

    def _crash(self, exc: BaseException) -> None:
        """A BaseException escaped a handler, a done-callback or ``on_error``.

        Every other item ends in a final state (CANCELLED), the block ends, and
        ``exc`` leaves it as itself (never wrapped in a group).  It never escapes
        one of our tasks: on asyncio a KeyboardInterrupt there stops the loop.
        """
        if self._fatal is None:
            self._fatal = exc
        if self._tg is not None:
            self._abort()

    def _abort(self) -> None:
        """Body raised (or we were cancelled): end queued items, cancel the workers."""
        self._state = CLOSED
        now = self._clock()
        late = self._deadline is not None and now >= self._deadline
        for h in self._queue.take_all():
            if h._st == QUEUED:
                if late:
                    self._settle(h, EXPIRED, expired(h))
                else:
                    self._settle(h, CANCELLED, None)
        assert self._tg is not None
        self._tg.cancel_scope.cancel()

    async def _watch_deadline(self, deadline: float, scope: CancelScope) -> None:
        with scope:
            await sleep_until(deadline)
            # No queued item can start any more: expire them now rather than as
            # workers come free, and release producers waiting for room.
            for h in self._queue.take_all():
                if h._st == QUEUED:
                    self._settle(h, EXPIRED, expired(h))
            self._queue.release_putters()
