"""The engine as its Scheduler sees it: the one documented view besides the Host.

A :class:`~duetime.Scheduler` turns ``call_*`` into entries and hands them to
its engine.  Satellites see the engine as a :class:`~._host.Host`; the
Scheduler sees it as an :class:`EngineFront`: the Host, the outcome counters
its statistics read, the lifecycle, and the few fields the ``call_*`` hot path
touches without a method call (a Python call there costs about 7% of a
schedule).  The Scheduler types its engine as this view, so mypy holds it to
exactly these members.
"""

from __future__ import annotations

from collections import deque
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

from ._host import Host
from ._stats import Counters

if TYPE_CHECKING:
    from ._bridge import ThreadBridge
    from ._exceptions import DeadlineExpired
    from ._handle import Handle
    from ._heap import TimerHeap

__all__ = ["EngineFront"]


class EngineFront(Host, Counters, Protocol):
    """What a Scheduler uses of its engine (``_engine.Engine`` is one).

    The hot path reads :attr:`accepting` and :attr:`wake_at`, appends a plain
    handle to :attr:`soon` or pushes it on :attr:`heap`, bumps
    :attr:`scheduled` and calls :meth:`rearm` when the new entry is the
    earliest.  Everything else the Scheduler changes goes through a method.
    """

    #: The loop thread's id while the block is open, else None: one compare
    #: tells "open, and called from the loop thread".
    accepting: int | None
    #: The loop thread's id once entered (None before).
    loop_thread: int | None
    #: ``call_soon`` entries, due at once, in order (the hot path appends).
    soon: deque[Handle[Any]]
    #: The timer heap (the hot path pushes ``(when, id, handle)``).
    heap: TimerHeap
    #: Callbacks ever scheduled (the hot path bumps it with each new entry).
    scheduled: int
    #: When the timer loop will wake (-inf while it is awake).
    wake_at: float
    #: Hands calls from other threads to the loop thread.
    bridge: ThreadBridge

    @property
    def grace(self) -> float | None:
        """What is left of the exit's grace (None: no limit)."""

    @property
    def state(self) -> int:
        """NEW, OPEN, CLOSING or CLOSED (``duetime._util``)."""

    def rearm(self, when: float) -> None:
        """Wake the timer loop at ``when`` (earlier than it planned)."""

    async def open(self) -> None:
        """Start the task group and the timer loop."""

    async def close(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Leave the block: exit hooks, then ``on_exit`` and ``grace`` (or abort)."""

    def expire_unstarted(self, h: Handle[Any], exc: DeadlineExpired) -> None:
        """Count a new handle as scheduled, and end it EXPIRED."""

    def spend_grace(self, seconds: float) -> None:
        """Take ``seconds`` off the exit's grace."""
