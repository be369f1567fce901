"""The narrow seam between a Scheduler's engine and what is built on top of it.

Recurring, Timeouts, PendingReplies and ThreadedScheduler need a few things from
the scheduler they run on: its clocks, whether it is open, a way to put entries
on its heap and take internal ones off, a place to hold failures nobody has
observed, and a hook that runs when its block exits.  They get exactly that,
as a :class:`Host`, and nothing else: none of them reads a private attribute of
the Scheduler.

A Scheduler hands out its host through the ``__duetime_host__()`` protocol (as
``os.fspath`` uses ``__fspath__``); :func:`host_of` is the one place that asks.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from ._handle import Owner

if TYPE_CHECKING:
    from anyio import CapacityLimiter

    from ._handle import Handle

__all__ = ["Cancellable", "HasHost", "Host", "host_of"]


class Cancellable(Protocol):
    """Anything the host cancels when its block exits (a series, a reply table)."""

    def cancel(self) -> object: ...


class Host(Owner, Protocol):
    """What a scheduler's engine offers to the objects built on it.

    It is also the :class:`~._handle.Owner` of the handles made on it, which is
    how ``handle.cancel()`` reaches the engine.
    """

    #: The event loop's clock (the backend's own function; cheap to call).
    clock: Callable[[], float]
    #: The wall clock, returning an aware datetime.
    wall_clock: Callable[[], datetime]
    #: Whether sync callbacks run in worker threads by default.
    sync_in_thread: bool

    @property
    def closed(self) -> bool:
        """Whether scheduling is refused (not entered yet, or exiting/exited)."""

    def check_open(self) -> None:
        """Raise :exc:`~duetime.SchedulerClosed` (saying why) unless open."""

    def to_loop_time(self, when: datetime) -> float:
        """The loop time at which the aware datetime ``when`` will be (past: now)."""

    def push(self, handle: Handle[Any]) -> None:
        """Schedule a new counted handle (with its Extra) at ``handle.when``."""

    def schedule_internal(
        self, when: float, func: Callable[[], object], wall: datetime | None = None
    ) -> Handle[Any]:
        """Run ``func()`` inline at ``when``: uncounted, unreported, O(log n).

        With ``wall`` (the aware datetime ``when`` stands for) it is a wall-clock
        entry: re-keyed on clock steps and never run early on the wall clock.
        """

    def cancel_internal(self, handle: Handle[Any]) -> None:
        """Drop an entry made by :meth:`schedule_internal` (O(1); safe twice)."""

    def hold_unobserved(self, handle: Handle[Any], exc: BaseException) -> None:
        """Hold a failure nobody has observed yet: it is reported to ``on_error``
        if nobody observes it before the handle is collected or the block exits."""

    def add_exit_hook(self, hook: Cancellable) -> None:
        """Call ``hook.cancel()`` when the block starts exiting."""

    def discard_exit_hook(self, hook: Cancellable) -> None:
        """Forget a hook added with :meth:`add_exit_hook` (no error if absent)."""

    # -- for ThreadedScheduler, which runs a Scheduler on its own loop thread ----

    def set_thread_limiter(self, limiter: CapacityLimiter) -> None:
        """Bound the worker threads that run sync callbacks."""

    def set_before_sleep(self, hook: Callable[[], float]) -> None:
        """Call ``hook()`` each time before the timer loop sleeps; it returns the
        deadline to sleep until (it may schedule first)."""

    def next_deadline(self) -> float:
        """When the timer loop would wake next if nothing changed (-inf: at once)."""

    def wake(self) -> None:
        """Make the timer loop run a pass (and call the before-sleep hook) soon."""

    def end_grace(self) -> None:
        """Make exit cancel running callbacks at once instead of waiting ``grace``."""


class HasHost(Protocol):
    """An object that runs on a host: a :class:`~duetime.Scheduler`."""

    def __duetime_host__(self) -> Host: ...


def host_of(scheduler: object) -> Host:
    """The host of ``scheduler``.

    :raises TypeError: if ``scheduler`` is not a duetime Scheduler
    """
    get = getattr(scheduler, "__duetime_host__", None)
    if get is None:
        raise TypeError(f"expected a duetime.Scheduler, got {scheduler!r}")
    host: Host = get()
    return host
