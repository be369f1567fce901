"""Validation of the arguments every scheduling call shares."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from ._execute import is_async
from ._handle import Extra
from ._retry import Retry

__all__ = ["check_aware", "make_extra", "to_delay", "to_positive", "to_seconds"]

_INF = math.inf


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


def make_extra(
    func: Callable[..., Any],
    name: str | None,
    timeout: float | None,
    retry: Retry | None,
    in_thread: bool | None,
    inherit_deadline: bool,
    sync_in_thread: bool,
    x: Extra | None = None,
) -> Extra:
    """Validate the options shared by every ``call_*`` and return them as an Extra.

    :raises TypeError: if ``func`` is not callable or an option has a bad type
    :raises ValueError: if an option has a bad value, or ``timeout`` is asked of a
        sync callback that would run inline (it could not be enforced)
    """
    if not callable(func):
        raise TypeError(f"func must be callable, got {func!r}")
    if x is None:
        x = Extra()
    if name is not None:
        if not isinstance(name, str):
            raise TypeError(f"name must be a str, got {name!r}")
        x.name = name
    if in_thread is not None:
        if not isinstance(in_thread, bool):
            raise TypeError(f"in_thread must be a bool, got {in_thread!r}")
        x.in_thread = in_thread
    if timeout is not None:
        t = to_positive(timeout, "timeout")
        threaded = in_thread if in_thread is not None else sync_in_thread
        if not threaded and not is_async(func):
            raise ValueError(
                "timeout= cannot be enforced on a sync callback run inline on the "
                "event loop; pass in_thread=True (or use an async callback)"
            )
        x.timeout = t
    if retry is not None:
        if not isinstance(retry, Retry):
            raise TypeError(f"retry must be a duetime.Retry, got {retry!r}")
        x.retry = retry
    if not isinstance(inherit_deadline, bool):
        raise TypeError(f"inherit_deadline must be a bool, got {inherit_deadline!r}")
    return x
