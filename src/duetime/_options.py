"""Validation of the options every scheduling call shares (``name=``, ``timeout=``...)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ._handle import Extra
from ._retry import Retry
from ._util import is_async, to_positive

__all__ = ["make_extra"]


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
