"""Leaving a task group the way duetime's ``async with`` blocks promise."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from types import TracebackType

from anyio.abc import TaskGroup

__all__ = ["exit_block", "exit_task_group"]


async def exit_block(
    tg: TaskGroup,
    drain: Callable[[], Awaitable[None]],
    abort: Callable[[], None],
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | None,
) -> bool | None:
    """Leave an ``async with`` block that owns ``tg`` (Scheduler, WorkerPool).

    Unless the body raised, ``drain()`` first lets outstanding work finish; then
    ``abort()`` ends whatever is left and cancels the group's tasks.  If the drain
    itself is interrupted (an enclosing scope is cancelled), ``abort()`` runs and
    the group sees that exception instead.
    """
    try:
        if exc is None:
            await drain()
    except BaseException as inner:
        abort()
        await tg.__aexit__(type(inner), inner, inner.__traceback__)
        raise
    abort()
    return await exit_task_group(tg, exc_type, exc, tb)


async def exit_task_group(
    tg: TaskGroup,
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | None,
) -> bool | None:
    """Exit ``tg``; the body's own exception leaves as itself, never wrapped.

    Scheduler and WorkerPool cancel their tasks before this, so the only error
    the group can carry besides the body's is a bug of ours, which stays wrapped.
    """
    try:
        return await tg.__aexit__(exc_type, exc, tb)
    except BaseExceptionGroup as group:
        if exc is not None and len(group.exceptions) == 1 and _same(group.exceptions[0], exc):
            return False  # the body's exception is re-raised, as itself
        raise


def _same(got: BaseException, exc: BaseException) -> bool:
    """Whether ``got`` is the body's ``exc``, or (trio) a copy of its group.

    trio re-wraps a group the body raised in a copy of it (``derive``): same
    type, same message, the very same leaf exceptions.
    """
    if got is exc:
        return True
    if not isinstance(got, BaseExceptionGroup) or not isinstance(exc, BaseExceptionGroup):
        return False
    return (
        type(got) is type(exc)
        and got.message == exc.message
        and len(got.exceptions) == len(exc.exceptions)
        and all(_same(a, b) for a, b in zip(got.exceptions, exc.exceptions, strict=True))
    )
