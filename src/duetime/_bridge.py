"""Calls from other threads: handed to the event loop, in order, never half-done.

``call_*`` and ``Handle.cancel()`` may be called from any thread.  A handle made
in another thread is handed to the loop through the backend's thread-safe
queue (asyncio's ``call_soon_threadsafe``, trio's ``TrioToken.run_sync_soon``),
which keeps the calls of one thread in order; the loop then schedules it.  A
cancel from another thread waits for the loop to carry it out, so its answer
is exact.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from ._exceptions import SchedulerClosed
from ._handle import CANCELLED, PENDING, Handle, Owner
from ._util import CLOSED, loop_soon_threadsafe

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

__all__ = ["BridgeEngine", "ThreadBridge"]

_get_ident = threading.get_ident


class BridgeEngine(Owner, Protocol):
    """What the bridge uses of its engine (``_engine.Engine`` is one); it owns the
    handles it schedules."""

    loop_thread: int | None
    closed: bool
    state: int
    tg: TaskGroup | None
    scheduled: int
    cancelled: int
    bridge: ThreadBridge

    def closed_reason(self) -> str: ...

    def push(self, h: Handle[Any]) -> None: ...


class ThreadBridge:
    """Hands calls from other threads to one engine's event loop."""

    __slots__ = ("_engine", "_transit", "soon")

    def __init__(self, engine: BridgeEngine) -> None:
        self._engine = engine
        #: The loop's thread-safe "call soon" (None until the block is entered).
        self.soon: Callable[..., object] | None = None
        self._transit = _Transit(engine)

    def open(self) -> None:
        """Find the running loop's thread-safe entry point (from ``Engine.open``)."""
        self.soon = loop_soon_threadsafe()

    def submit(self, h: Handle[Any]) -> None:
        """Hand a handle made in another thread to the loop, which schedules it.

        Calls from one thread keep their order (the loop's thread-safe queue is
        FIFO).  Until the loop takes it, the handle's owner is a stand-in that
        routes ``cancel()`` through the loop too.

        :raises SchedulerClosed: if the event loop is gone (nothing changed)
        """
        soon = self.soon
        assert soon is not None
        h._owner = self._transit
        try:
            soon(self._accept, h)
        except RuntimeError as exc:  # asyncio: loop closed; trio: RunFinishedError
            h._owner = None
            raise SchedulerClosed("the scheduler's event loop is not running") from exc

    def _accept(self, h: Handle[Any]) -> None:
        """On the loop: schedule a handle submitted from another thread."""
        if h._st != PENDING:
            return  # cancelled on its way here (and counted then)
        e = self._engine
        h._owner = e
        if e.closed:
            e.scheduled += 1
            e.cancelled += 1
            h._finish(CANCELLED, None)
            return
        e.push(h)

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the loop from another thread; return its result.

        :raises SchedulerClosed: if the event loop is gone
        """
        soon = self.soon
        if soon is None:
            raise SchedulerClosed(self._engine.closed_reason())
        done: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                done.set_result(fn(*args))
            except BaseException as exc:
                done.set_exception(exc)

        try:
            soon(run)
        except RuntimeError as exc:
            raise SchedulerClosed("the scheduler's event loop is not running") from exc
        while True:
            try:
                return done.result(timeout=1.0)
            except concurrent.futures.TimeoutError:
                if self._engine.state == CLOSED and self._engine.tg is None:
                    raise SchedulerClosed("the scheduler's event loop stopped") from None


class _Transit:
    """The owner of a handle submitted from another thread, until the loop takes it."""

    __slots__ = ("_engine",)

    def __init__(self, engine: BridgeEngine) -> None:
        self._engine = engine

    def _cancel_pending(self, h: Handle[Any]) -> bool:
        e = self._engine
        if _get_ident() != e.loop_thread:
            return bool(e.bridge.call(h.cancel))
        if h._st != PENDING or h._owner is not self:
            return h.cancel() if h._owner is e else False
        e.scheduled += 1  # _accept will skip it
        e.cancelled += 1
        h._finish(CANCELLED, None)
        return True

    def _cancel_running(self, h: Handle[Any]) -> bool:
        return False  # never running before the loop takes it
