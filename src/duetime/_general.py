"""The general path of ``call_*``: an entry with options, at a datetime, or from a thread.

The plain path (no option, from the event loop's thread) is written out in each
``Scheduler.call_*`` itself, where every Python call counts.  Everything else
comes here: the options are validated into the handle's
:class:`~._handle.Extra`, a wall-clock entry is marked as one, a call from
another thread is handed to the event loop, and ``inherit_deadline`` captures
the caller's deadline.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from contextvars import Context
from datetime import datetime
from typing import Any

from anyio import current_effective_deadline

from ._exceptions import DeadlineExpired
from ._front import EngineFront
from ._handle import Extra, Handle
from ._options import make_extra, parse_options
from ._retry import Retry
from ._util import check_aware

__all__ = ["NO_DEADLINE_IN_THREAD", "schedule_opts", "schedule_wall"]

_INF = math.inf
_get_ident = threading.get_ident
NO_DEADLINE_IN_THREAD = (
    "inherit_deadline=True needs the event loop's thread: another thread has no"
    " anyio deadline to inherit"
)


def schedule_wall(
    e: EngineFront,
    when: datetime,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    opts: dict[str, Any],
) -> Handle[Any]:
    """``call_at`` with an aware datetime: a wall-clock entry (its Extra says so).

    :raises SchedulerClosed: outside the ``async with`` block
    :raises ValueError: if ``when`` is naive, or an option has a bad value
    :raises TypeError: if ``func`` is not callable, or an option is unknown or
        has a bad type
    """
    check_aware(when)
    e.check_open()
    x = Extra()
    x.wall = when
    return schedule_opts(e, e.to_loop_time(when), func, args, *parse_options("call_at", opts), x)


def schedule_opts(
    e: EngineFront,
    when: float,
    func: Callable[..., Any],
    args: tuple[Any, ...],
    name: str | None,
    timeout: float | None,
    retry: Retry | None,
    in_thread: bool | None,
    inherit_deadline: bool,
    context: Context | None,
    x: Extra | None = None,
) -> Handle[Any]:
    """The general path of every ``call_*``: options, or a call from another thread.

    Validates the options into the handle's :class:`~._handle.Extra` (``x``
    when the caller made one already), hands a call from another thread to the
    event loop, and applies ``inherit_deadline``; then puts the entry on the heap.

    :return: the entry's handle (already EXPIRED if it was due after the
        inherited deadline)
    :raises TypeError: if ``func`` is not callable or an option has a bad type
    :raises ValueError: if an option has a bad value
    :raises RuntimeError: ``inherit_deadline`` from a thread other than the loop's
    """
    if (
        x is None
        and name is None
        and timeout is None
        and retry is None
        and in_thread is None
        and not inherit_deadline
        and context is None
    ):
        if not callable(func):
            raise TypeError(f"func must be callable, got {func!r}")
        h: Handle[Any] = Handle(when, func, args, e)
    else:
        x = make_extra(func, name, timeout, retry, in_thread, inherit_deadline, e.sync_in_thread, x)
        if context is not None:
            if not isinstance(context, Context):
                raise TypeError(f"context must be a contextvars.Context, got {context!r}")
            x.context = context
        h = Handle(when, func, args, e, x)
    if _get_ident() != e.loop_thread:
        if inherit_deadline:
            raise RuntimeError(NO_DEADLINE_IN_THREAD)
        e.bridge.submit(h)
        return h
    if inherit_deadline:
        assert x is not None
        deadline = current_effective_deadline()
        if deadline < _INF:
            x.deadline = deadline
            if when >= deadline:
                # Never started: it could not begin before the deadline.
                e.expire_unstarted(h, DeadlineExpired(f"{h.name} was due after its deadline"))
                return h
    e.push(h)
    return h
