"""TaskRegistry: the registered tasks a durable store may name, and current_entry().

A store names a task; it never holds code.  A worker finds the function for a
stored entry only through the :class:`TaskRegistry` it was given, so nothing is
imported, unpickled or evaluated from a store.
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable, Iterator, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from .._retry import Retry
from ._store import Entry

__all__ = ["TaskDef", "TaskRegistry", "current_entry"]

F = TypeVar("F", bound=Callable[..., Any])

#: Longest task name a registry accepts (names are stored in every row).
MAX_NAME = 200


class Running:
    """What :func:`current_entry` reads: the entry of the run in this context.

    The worker keeps one per run (its run record) in the context variable and
    replaces :attr:`entry` when an abort of the run is requested, so a sync
    task's thread, which runs in a copy of the context, sees the new entry.
    :attr:`entry` is None before and after the task runs (a run record that
    kept its entry to the end would keep thousands alive on a busy worker).
    """

    __slots__ = ("entry",)

    entry: Entry | None


_current: ContextVar[Running | None] = ContextVar("duetime_current_entry", default=None)


def current_entry() -> Entry:
    """The durable entry whose task is running in this context.

    Inside a task run by a durable worker it returns the :class:`Entry` (status
    RUNNING): ``key``, ``task``, ``attempt``, ``due`` and ``idempotency_key``,
    which is the same for every attempt of one occurrence.  Its
    ``abort_requested`` turns True once the worker learns that an abort of the
    run was requested (the next call returns the new entry): a sync task, which
    cannot be interrupted, polls it to stop early.

    :raises RuntimeError: outside a durable task
    """
    running = _current.get()
    entry = None if running is None else running.entry
    if entry is None:
        raise RuntimeError("current_entry() is only available inside a durable task")
    return entry


def _is_async(func: Callable[..., Any]) -> bool:
    while isinstance(func, functools.partial):
        func = func.func
    if inspect.iscoroutinefunction(func):
        return True
    call = getattr(func, "__call__", None)  # noqa: B004 - an async __call__ counts
    return call is not None and inspect.iscoroutinefunction(call)


@dataclass(frozen=True, slots=True)
class _Arity:
    """How many positional arguments a task takes: ``low <= n <= high``, unless a
    required keyword-only parameter makes every positional call fail."""

    low: int
    high: float  # math.inf with *args
    never: bool
    signature: inspect.Signature

    @classmethod
    def of(cls, func: Callable[..., Any]) -> _Arity | None:
        """The arity of ``func``, or None if it has no signature to check against."""
        try:
            sig = inspect.signature(func)
        except (TypeError, ValueError):  # some builtins and C callables have none
            return None
        low, high, never = 0, 0.0, False
        for p in sig.parameters.values():
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
                high += 1
                if p.default is p.empty:
                    low += 1
            elif p.kind is p.VAR_POSITIONAL:
                high = math.inf
            elif p.kind is p.KEYWORD_ONLY and p.default is p.empty:
                never = True
        return cls(low, high, never, sig)

    def check(self, name: str, args: Sequence[Any]) -> None:
        """Raise TypeError naming task ``name`` if ``args`` cannot be bound."""
        if not self.never and self.low <= len(args) <= self.high:
            return
        try:  # Python's own words for what is wrong
            self.signature.bind(*args)
        except TypeError as exc:
            reason = str(exc)
        else:  # pragma: no cover - the counts above decide exactly what bind does
            return
        n = len(args)
        bare = self.signature.replace(  # the parameters only: annotations may be long strings
            parameters=[p.replace(annotation=p.empty) for p in self.signature.parameters.values()],
            return_annotation=self.signature.empty,
        )
        raise TypeError(
            f"task {name!r} cannot take {n} positional argument{'s' if n != 1 else ''}:"
            f" {reason} (its parameters are {bare}; durable tasks are called"
            " with positional arguments only)"
        )


def _check_seconds(value: object, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"{what} must be a number of seconds, got {value!r}")
    seconds = float(value)
    if not (math.isfinite(seconds) and seconds > 0):
        raise ValueError(f"{what} must be finite and > 0, got {value!r}")
    return seconds


def check_task_name(name: object) -> str:
    """Validate a task name.

    :raises TypeError: if ``name`` is not a str
    :raises ValueError: if it is empty, too long, or holds control characters
    """
    if not isinstance(name, str):
        raise TypeError(f"a task name must be a str, got {name!r}")
    if not name or len(name) > MAX_NAME:
        raise ValueError(f"a task name must have 1 to {MAX_NAME} characters, got {name!r}")
    if not name.isprintable():
        raise ValueError(f"a task name must be printable, got {name!r}")
    return name


@dataclass(frozen=True, slots=True)
class TaskDef:
    """A registered task: its name, function and options.

    :ivar name: the name stored in entries
    :ivar func: the function (async functions run on the event loop, sync ones
        in a worker thread)
    :ivar retry: how a raising attempt is retried (None: not retried)
    :ivar lease: the lease in seconds written into each entry (None: the store's)
    :ivar timeout: seconds an attempt may run before it is cancelled and counts
        as a failed attempt (None: no limit)
    :ivar max_deliveries: claims of one attempt that may end without a finish
        (a crashed or paused worker) before the entry is dead-lettered as poison
    :ivar is_async: whether ``func`` returns an awaitable
    """

    name: str
    func: Callable[..., Any]
    retry: Retry | None
    lease: float | None
    timeout: float | None
    max_deliveries: int
    is_async: bool


class TaskRegistry:
    """The tasks a durable scheduler or worker can run, by name.

    ::

        tasks = TaskRegistry()

        @tasks.task("billing.send_invoice", retry=Retry(attempts=5), lease=30.0)
        async def send_invoice(invoice_id: int) -> None: ...

    ``tasks["billing.send_invoice"]`` and ``tasks[send_invoice]`` return the
    :class:`TaskDef`; ``name in tasks`` and ``func in tasks`` test membership.
    """

    __slots__ = ("_arity", "_by_func", "_by_name")

    def __init__(self) -> None:
        self._by_name: dict[str, TaskDef] = {}
        self._by_func: dict[Callable[..., Any], TaskDef] = {}
        self._arity: dict[str, _Arity | None] = {}

    def task(
        self,
        name: str,
        *,
        retry: Retry | None = None,
        lease: float | None = None,
        timeout: float | None = None,
        max_deliveries: int = 5,
    ) -> Callable[[F], F]:
        """Register the decorated function under ``name`` and return it unchanged.

        :param name: the task's stable name (stored in entries, so renaming the
            function does not orphan them)
        :param retry: how a raising attempt is retried, across restarts
        :param lease: seconds a claim holds the entry before another worker may
            take it (renewed every lease/3 while the task runs); overrides the
            store's default
        :param timeout: seconds an attempt may run; a timed-out attempt is a
            failed attempt (``TimeoutError``)
        :param max_deliveries: lost claims (worker crashed or paused past its
            lease) of one attempt before the entry is dead-lettered as poison
        :raises TypeError: if an option has a bad type
        :raises ValueError: if the name is invalid or an option out of range
        """
        check_task_name(name)
        if retry is not None and not isinstance(retry, Retry):
            raise TypeError(f"retry must be a duetime.Retry or None, got {retry!r}")
        lease_s = None if lease is None else _check_seconds(lease, "lease")
        timeout_s = None if timeout is None else _check_seconds(timeout, "timeout")
        if isinstance(max_deliveries, bool) or not isinstance(max_deliveries, int):
            raise TypeError(f"max_deliveries must be an int, got {max_deliveries!r}")
        if max_deliveries < 1:
            raise ValueError(f"max_deliveries must be >= 1, got {max_deliveries}")

        def register(func: F) -> F:
            if not callable(func):
                raise TypeError(f"@task({name!r}) must decorate a callable, got {func!r}")
            self.add(
                TaskDef(name, func, retry, lease_s, timeout_s, max_deliveries, _is_async(func))
            )
            return func

        return register

    def add(self, task: TaskDef) -> None:
        """Register a :class:`TaskDef` (what :meth:`task` does).

        :raises ValueError: if its name, or its function, is already registered
        """
        if task.name in self._by_name:
            raise ValueError(f"task {task.name!r} is already registered")
        other = self._by_func.get(task.func)
        if other is not None:
            raise ValueError(f"{task.func!r} is already registered as task {other.name!r}")
        arity = _Arity.of(task.func)
        self._by_name[task.name] = task
        self._by_func[task.func] = task
        self._arity[task.name] = arity

    def check_args(self, task: TaskDef, args: Sequence[Any]) -> None:
        """Check that ``task.func(*args)`` binds to the function's signature (the
        signature is read once, at registration).

        :raises TypeError: too few or too many arguments, or a required
            keyword-only parameter (a stored entry is called positionally); the
            message names the task
        """
        arity = self._arity.get(task.name)
        if arity is not None:
            arity.check(task.name, args)

    def arity_bounds(self, task: TaskDef) -> tuple[int, float]:
        """``(low, high)``: :meth:`check_args` passes ``args`` of a length from
        ``low`` to ``high`` and raises for any other (``(1, 0)`` when every call
        fails), for a caller that checks many argument sets of one task.
        """
        arity = self._arity.get(task.name)
        if arity is None:
            return 0, math.inf
        return (1, 0.0) if arity.never else (arity.low, arity.high)

    @overload
    def resolve(self, task: str) -> TaskDef: ...
    @overload
    def resolve(self, task: Callable[..., Any]) -> TaskDef: ...
    def resolve(self, task: str | Callable[..., Any]) -> TaskDef:
        """The registered task for a name or a function, checked at the call site.

        :raises LookupError: for a name that is not registered
        :raises TypeError: for a function that is not registered, or anything else
        """
        if isinstance(task, str):
            found = self._by_name.get(task)
            if found is None:
                raise LookupError(f"no task named {task!r} is registered in this TaskRegistry")
            return found
        if callable(task):
            try:
                found = self._by_func.get(task)
            except TypeError:  # an unhashable callable is never registered
                found = None
            if found is None:
                if getattr(task, "__name__", None) == "<lambda>":
                    raise TypeError(
                        f"{task!r} is not a registered task: a lambda cannot be decorated,"
                        " so define a named function (def), register it with"
                        " @tasks.task(name), and defer that function or its name"
                    )
                raise TypeError(
                    f"{task!r} is not a registered task: decorate it with @tasks.task(name)"
                )
            return found
        raise TypeError(f"a task is a registered function or its name, got {task!r}")

    def get(self, name: str) -> TaskDef | None:
        """The task registered under ``name``, or None (what a worker uses)."""
        return self._by_name.get(name)

    def __getitem__(self, task: str | Callable[..., Any]) -> TaskDef:
        return self.resolve(task)

    def __contains__(self, task: object) -> bool:
        if isinstance(task, str):
            return task in self._by_name
        try:
            return task in self._by_func
        except TypeError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)

    def __repr__(self) -> str:
        return f"<TaskRegistry {sorted(self._by_name)!r}>"
