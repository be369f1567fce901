"""Running a coroutine in a context of its own, inside a task that is reused.

Runner tasks are reused across async callbacks, so the task's own context
would carry one callback's ``ContextVar`` values into the next.
:class:`InContext` steps the coroutine with ``context.run`` instead, so each
callback sees only its own context, as if it had a task of its own.
"""

from __future__ import annotations

from collections.abc import Coroutine, Generator
from contextvars import Context
from typing import Any

__all__ = ["InContext"]


class InContext:
    """An awaitable that drives ``coro`` one step at a time inside ``context``."""

    __slots__ = ("context", "coro")

    def __init__(self, coro: Coroutine[Any, Any, Any], context: Context) -> None:
        self.coro = coro
        self.context = context

    def close(self) -> None:
        """Close the coroutine without running it (it was cancelled before it started)."""
        self.context.run(self.coro.close)

    def __await__(self) -> Generator[Any, Any, Any]:
        coro = self.coro
        run = self.context.run
        send = coro.send
        value: Any = None
        error: BaseException | None = None
        while True:
            try:
                yielded = run(send, value) if error is None else run(coro.throw, error)
            except StopIteration as stop:
                return stop.value
            try:
                value = yield yielded
                error = None
            except GeneratorExit:
                # This awaitable is being closed: close the coroutine with it.
                run(coro.close)
                raise
            except BaseException as exc:
                value = None
                error = exc
