"""Helpers every wing of duetime shares: clocks, callables, numeric validators, states.

This module is the bottom layer: it imports nothing else from duetime, so the
pool, the scheduler and the durable wing can all use it without importing each
other.
"""

from __future__ import annotations

import asyncio
import inspect
import math
import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from anyio.lowlevel import current_token

__all__ = [
    "CLOSED",
    "CLOSING",
    "NEW",
    "OPEN",
    "backend_clock",
    "callable_name",
    "check_aware",
    "is_async",
    "loop_soon_threadsafe",
    "strip_own_frames",
    "to_delay",
    "to_positive",
    "to_seconds",
]

#: Lifecycle states shared by Scheduler (its engine) and WorkerPool.
NEW, OPEN, CLOSING, CLOSED = range(4)

_INF = math.inf


def backend_clock() -> Callable[[], float]:
    """Return the running backend's raw clock function (cheaper than current_time).

    Must be called from inside an event loop.  The function returns the same
    values as :func:`anyio.current_time`, minus anyio's and the backend's lookups.
    """
    native = current_token().native_token
    if isinstance(native, asyncio.AbstractEventLoop):
        if type(native).time is asyncio.BaseEventLoop.time:
            # Same values as loop.time(), minus a Python-level method call.
            return time.monotonic
        return native.time
    import trio

    # The clock object's own method: trio.current_time() looks the runner up in
    # a thread-local on every call.
    clock = trio.lowlevel.current_clock()
    return clock.current_time


def is_async(func: Callable[..., Any]) -> bool:
    """Whether calling ``func`` returns a coroutine (as far as can be told)."""
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(func, "__call__", None)  # noqa: B004 - an async __call__ counts
    return call is not None and inspect.iscoroutinefunction(call)


def callable_name(func: Callable[..., Any]) -> str:
    """A readable name for ``func``: its qualified name, looking through partials."""
    name = getattr(func, "__qualname__", None)
    if name is None:
        inner = getattr(func, "func", None)  # functools.partial
        if inner is not None and inner is not func:
            return callable_name(inner)
        return repr(func)
    return str(name)


def to_seconds(value: object, what: str) -> float:
    """A number of seconds or a timedelta as a finite float (any sign).

    :raises TypeError: if ``value`` is neither a real number nor a timedelta
    :raises ValueError: if it is NaN or infinite
    """
    if type(value) is float or type(value) is int:
        seconds = float(value)
    elif isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        seconds = float(value)
    else:
        raise TypeError(f"{what} must be a number of seconds or a timedelta, got {value!r}")
    if not math.isfinite(seconds):
        raise ValueError(f"{what} must be finite, got {value!r}")
    return seconds


def to_delay(value: object, what: str = "delay") -> float:
    """Like :func:`to_seconds`, and ``>= 0``.

    :raises ValueError: if negative, NaN or infinite
    """
    seconds = to_seconds(value, what)
    if seconds < 0:
        raise ValueError(f"{what} must be finite and >= 0, got {value!r}")
    return seconds


def to_positive(value: object, what: str) -> float:
    """Like :func:`to_seconds`, and ``> 0``.

    :raises ValueError: if zero, negative, NaN or infinite
    """
    seconds = to_seconds(value, what)
    if seconds <= 0:
        raise ValueError(f"{what} must be finite and > 0, got {value!r}")
    return seconds


def check_aware(when: datetime) -> None:
    """Reject a naive datetime.

    :raises ValueError: if ``when`` has no UTC offset
    """
    if when.tzinfo is None or when.utcoffset() is None:
        raise ValueError(
            f"naive datetime {when!r}: pass an aware datetime (e.g. tzinfo=timezone.utc)"
        )


def strip_own_frames(exc: BaseException) -> None:
    """Drop duetime's own frames from the head of ``exc``'s traceback.

    A callback's exception then shows the callback's frames only, and does not
    keep duetime's frames (and the handle in their locals) alive: a handle
    whose failure nobody looked at can be collected, and reported, at once.
    """
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_globals.get("__name__", "").startswith("duetime."):
        tb = tb.tb_next
    if tb is not None:
        exc.__traceback__ = tb


def loop_soon_threadsafe() -> Callable[..., object]:
    """The running loop's thread-safe "call soon": asyncio's ``call_soon_threadsafe``
    or trio's ``TrioToken.run_sync_soon`` (callable from any thread, or from a
    garbage-collection callback)."""
    token: Any = current_token().native_token
    if isinstance(token, asyncio.AbstractEventLoop):
        return token.call_soon_threadsafe
    return token.run_sync_soon  # type: ignore[no-any-return]  # a trio.lowlevel.TrioToken
