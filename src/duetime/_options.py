"""Validation of the options every scheduling call shares (``name=``, ``timeout=``...)."""

from __future__ import annotations

from collections.abc import Callable
from contextvars import Context
from typing import Any

from ._handle import Extra
from ._retry import Retry
from ._util import is_async, to_delay, to_positive, to_seconds

__all__ = ["OPTION_NAMES", "check_settings", "make_extra", "parse_options"]


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


OPTION_NAMES = ("name", "timeout", "retry", "in_thread", "inherit_deadline", "context")


def parse_options(
    method: str, opts: dict[str, Any]
) -> tuple[str | None, float | None, Retry | None, bool | None, bool, Context | None]:
    """The keyword options of a ``call_*``, in order; TypeError for an unknown one."""
    for key in opts:
        if key not in OPTION_NAMES:
            raise TypeError(f"{method}() got an unexpected keyword argument {key!r}")
    get = opts.get
    return (
        get("name"),
        get("timeout"),
        get("retry"),
        get("in_thread"),
        get("inherit_deadline", False),
        get("context"),
    )


def check_settings(
    max_concurrency: int | None,
    on_exit: str,
    grace: float | None,
    on_error: object,
    wall_clock: object,
    slow_callback_duration: float,
) -> tuple[float | None, float]:
    """Check a Scheduler's settings; return ``grace`` and ``slow_callback_duration`` as floats.

    :raises TypeError: on a setting of the wrong type
    :raises ValueError: on a setting out of range
    """
    if max_concurrency is not None:
        if isinstance(max_concurrency, bool) or not isinstance(max_concurrency, int):
            raise TypeError(f"max_concurrency must be an int, got {max_concurrency!r}")
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be >= 1, got {max_concurrency}")
    if on_exit not in ("cancel", "drain"):
        raise ValueError(f"on_exit must be 'cancel' or 'drain', got {on_exit!r}")
    if grace is not None:
        grace = to_delay(grace, "grace")
    if on_error is not None and not callable(on_error):
        raise TypeError("on_error must be callable")
    if wall_clock is not None and not callable(wall_clock):
        raise TypeError("wall_clock must be callable")
    slow = to_seconds(slow_callback_duration, "slow_callback_duration")
    if slow < 0:
        raise ValueError(f"slow_callback_duration must be >= 0, got {slow_callback_duration!r}")
    return grace, slow
