"""Leaving a task group the way duetime's ``async with`` blocks promise."""

from __future__ import annotations

from types import TracebackType

from anyio.abc import TaskGroup

__all__ = ["exit_task_group"]


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
        if exc is not None and len(group.exceptions) == 1 and group.exceptions[0] is exc:
            return False
        raise
