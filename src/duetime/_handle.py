"""Handle: the awaitable result of one scheduled callback, and how its state reads as a Status."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Generator
from contextvars import Context, ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from anyio import Event, TaskNotFinished
from anyio.lowlevel import checkpoint

from ._exceptions import CallbackCancelled
from ._logs import core_log
from ._util import callable_name
from ._vocab import Status

if TYPE_CHECKING:
    from ._retry import Retry

__all__ = ["Handle", "RunInfo", "current_run"]

T = TypeVar("T")
T_co = TypeVar("T_co", covariant=True)

logger = core_log


# Internal state codes.  Plain ints keep the hot path to int compares; QUEUED is a
# due handle waiting for a callback task, which users see as PENDING.
PENDING, QUEUED, RUNNING, COMPLETED, FAILED, CANCELLED, EXPIRED = range(7)
_PUBLIC = (
    Status.PENDING,
    Status.PENDING,
    Status.RUNNING,
    Status.COMPLETED,
    Status.FAILED,
    Status.CANCELLED,
    Status.EXPIRED,
)

_ids = itertools.count(1)


class Owner(Protocol):
    """What a handle needs from whoever runs it (a Scheduler, PendingReplies...)."""

    def _cancel_pending(self, handle: Handle[Any]) -> bool: ...

    def _cancel_running(self, handle: Handle[Any]) -> bool: ...


class Extra:
    """The rare fields of a handle, allocated only when one of them is needed.

    Keeping them here keeps a plain pending ``call_later`` to nine slots.
    """

    __slots__ = (
        "attempt",
        "callbacks",
        "cancelling",
        "context",
        "deadline",
        "event",
        "in_thread",
        "internal",
        "missed",
        "name",
        "ran",
        "retry",
        "series",
        "timeout",
        "unobserved",
        "wall",
    )

    def __init__(self) -> None:
        self.name: str | None = None
        self.timeout: float | None = None
        self.retry: Retry | None = None
        self.in_thread: bool | None = None
        self.deadline: float | None = None  # inherited absolute deadline
        self.wall: Any = None  # aware datetime target, while pending
        self.event: Event | None = None
        self.callbacks: list[Callable[[Handle[Any]], object]] | None = None
        self.cancelling = False
        self.internal = False
        self.attempt = 1
        self.missed = 0
        self.series: Any = None
        self.context: Context | None = None  # the context= given to call_*
        self.ran = False  # set when a run starts: the callback's body was entered
        # The registry holding this failed handle until someone observes it.
        self.unobserved: Any = None


@dataclass(frozen=True, slots=True)
class RunInfo:
    """What a running callback can learn about its own run (see :func:`current_run`).

    :ivar handle: the callback's handle
    :ivar scheduled: the loop time it was due
    :ivar started: the loop time it actually started
    :ivar attempt: the attempt number, from 1 (see :class:`Retry`)
    :ivar missed: for a recurring run, how many grid points were missed before it
    """

    handle: Handle[Any]
    scheduled: float
    started: float
    attempt: int
    missed: int


# Holds (handle, started) while a callback runs: a tuple is cheaper than a RunInfo,
# which is built only when asked for.
_current: ContextVar[tuple[Handle[Any], float] | None] = ContextVar(
    "duetime_current_run", default=None
)


# The engine whose timer loop runs sync callbacks inline in this thread; it
# holds the running one in ``inline`` (cheaper than setting _current per call).
_tls = threading.local()


def current_run() -> RunInfo:
    """Return information about the callback that is running now.

    Works in sync callbacks (inline or in a worker thread) and async callbacks.

    :raises RuntimeError: if called outside a callback run by duetime
    """
    cur = _current.get()
    if cur is None:
        engine = getattr(_tls, "engine", None)
        if engine is None or engine.inline is None:
            raise RuntimeError("current_run() called outside a duetime callback")
        handle = engine.inline
        started = engine.inline_started
    else:
        handle, started = cur
    x = handle._x
    return RunInfo(
        handle,
        handle._when,
        started,
        x.attempt if x is not None else 1,
        x.missed if x is not None else 0,
    )


class Handle(Generic[T_co]):
    """The awaitable outcome of one scheduled callback.

    Modelled on :class:`anyio.TaskHandle`.  ``await handle`` returns the callback's
    return value or re-raises its exception; a cancelled handle raises
    :exc:`CallbackCancelled` and an expired one :exc:`DeadlineExpired`.

    Handles are created by the ``call_*`` methods, never directly.
    """

    # Nine slots: rare fields live in ``_x`` (an :class:`Extra`), made on demand.
    # ``_result`` is a state payload: the coroutine or cancel scope while running,
    # the return value or exception once finished.
    __slots__ = ("__weakref__", "_args", "_func", "_id", "_owner", "_result", "_st", "_when", "_x")

    _result: Any

    def __init__(
        self,
        when: float,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        owner: Owner | None,
        x: Extra | None = None,
    ) -> None:
        self._when = when
        self._id = next(_ids)
        self._func: Callable[..., Any] | None = func
        self._args: tuple[Any, ...] | None = args
        self._st = PENDING
        self._result = None
        self._owner = owner
        self._x = x

    # -- introspection ---------------------------------------------------------

    @property
    def id(self) -> int:
        """A unique integer identifying this handle within the process."""
        return self._id

    @property
    def when(self) -> float:
        """The loop time (``anyio.current_time()``) this callback is or was due."""
        return self._when

    @property
    def name(self) -> str:
        """The name given with ``name=``, else the callback's qualified name."""
        x = self._x
        if x is not None and x.name is not None:
            return x.name
        func = self._func
        if func is None:
            return f"handle-{self._id}"
        return callable_name(func)

    @property
    def status(self) -> Status:
        """The handle's current :class:`Status`."""
        return _PUBLIC[self._st]

    def done(self) -> bool:
        """Whether the handle is in a final state."""
        return self._st >= COMPLETED

    @property
    def return_value(self) -> T_co:
        """The callback's return value.

        :raises anyio.TaskNotFinished: if the handle has not finished
        :raises CallbackCancelled: if it was cancelled
        :raises BaseException: the callback's own exception if it failed, or
            :exc:`DeadlineExpired` if it expired
        """
        st = self._st
        if st == COMPLETED:
            return self._result  # type: ignore[no-any-return]
        if st < COMPLETED:
            raise TaskNotFinished("the callback has not finished yet")
        if st == CANCELLED:
            raise CallbackCancelled(f"{self.name} was cancelled")
        self._observe()
        raise self._result

    @property
    def exception(self) -> BaseException | None:
        """The callback's exception, or ``None`` if it returned normally.

        For an EXPIRED handle this is the :exc:`DeadlineExpired`.

        :raises anyio.TaskNotFinished: if the handle has not finished
        :raises CallbackCancelled: if it was cancelled
        """
        st = self._st
        if st == COMPLETED:
            return None
        if st < COMPLETED:
            raise TaskNotFinished("the callback has not finished yet")
        if st == CANCELLED:
            raise CallbackCancelled(f"{self.name} was cancelled")
        self._observe()
        return self._result  # type: ignore[no-any-return]

    # -- control ---------------------------------------------------------------

    def cancel(self) -> bool:
        """Cancel the callback.

        A pending handle is removed from the schedule in O(1).  A running async
        callback, or a sync one in a worker thread, has its cancel scope cancelled
        (the thread itself runs on; its result is discarded), and ends CANCELLED.
        A sync callback running on the event loop cannot be interrupted:
        cancelling it returns ``False``.  Calling this twice is safe.  It may be
        called from any thread: from another thread than the event loop's, it
        waits for the loop to carry it out.

        :return: ``True`` if this call cancelled it (it ends CANCELLED),
            ``False`` if it had finished already (or cannot be interrupted)
        """
        st = self._st
        if st <= QUEUED:  # the common case first: a cancel storm is all pending
            owner = self._owner
            # None: it finished meanwhile, in another thread.
            return owner._cancel_pending(self) if owner is not None else False
        if st >= COMPLETED:
            return False
        owner = self._owner
        if owner is None:
            return False
        x = self._x
        if x is not None and x.cancelling:
            return False
        return owner._cancel_running(self)

    async def wait(self) -> None:
        """Wait until the handle is in a final state, without raising its outcome.

        Always a checkpoint, as in trio and anyio: it can be cancelled and it
        lets other tasks run even when the handle has already finished.
        """
        if self._st >= COMPLETED:
            self._observe()
            await checkpoint()
            return
        x = self._extra()
        if x.event is None:
            x.event = Event()
        await x.event.wait()
        self._observe()

    def add_done_callback(self, fn: Callable[[Handle[T_co]], object]) -> None:
        """Call ``fn(handle)`` once the handle is in a final state.

        If it already is, ``fn`` is called at once.  An exception raised by ``fn``
        is logged on the ``duetime`` logger; a BaseException (KeyboardInterrupt,
        SystemExit...) propagates, after the handle's other done-callbacks ran.
        """
        if self._st >= COMPLETED:
            self._observe()
            _call_done_callback(fn, self)
            return
        x = self._extra()
        if x.callbacks is None:
            x.callbacks = []
        x.callbacks.append(fn)

    def remove_done_callback(self, fn: Callable[[Handle[T_co]], object]) -> bool:
        """Remove a callback added with :meth:`add_done_callback`; True if found."""
        x = self._x
        if x is None or not x.callbacks or fn not in x.callbacks:
            return False
        x.callbacks.remove(fn)
        return True

    def __await__(self) -> Generator[Any, None, T_co]:
        # A checkpoint whether or not it has finished (see wait()).
        yield from self.wait().__await__()
        return self.return_value

    def __repr__(self) -> str:
        return (
            f"<Handle id={self._id} name={self.name!r} status={_PUBLIC[self._st]}"
            f" when={self._when:.6f}>"
        )

    # -- internals used by owners ---------------------------------------------

    def _observe(self) -> None:
        """Someone looked at the outcome: a failure held for reporting is not reported."""
        x = self._x
        if x is not None and x.unobserved is not None:
            registry = x.unobserved
            x.unobserved = None
            registry.discard(self)

    def _extra(self) -> Extra:
        x = self._x
        if x is None:
            x = self._x = Extra()
        return x

    def _finish(self, st: int, result: object) -> bool:
        """Move to final state ``st``; wake awaiters and run done-callbacks.

        Every done-callback runs even if one raises a BaseException; the first
        such exception is re-raised afterwards.

        :return: whether anybody observes the outcome (a done-callback)
        """
        # The outcome first, then the state: a reader in another thread that
        # sees done() must see the result too.
        self._result = result
        self._st = st
        self._args = None
        self._owner = None
        x = self._x
        if x is None:
            return False
        # An awaiter's Event is not observation by itself: the awaiter may have
        # given up (cancelled) before the outcome came; wait() observes when it
        # returns.  Done-callbacks do observe.
        observed = False
        event = x.event
        if event is not None:
            event.set()
        callbacks = x.callbacks
        if callbacks:
            observed = True
            x.callbacks = None
            fatal: BaseException | None = None
            for fn in callbacks:
                try:
                    _call_done_callback(fn, self)
                except BaseException as exc:
                    if fatal is None:
                        fatal = exc
            if fatal is not None:
                raise fatal
        return observed


def report_unobserved(
    on_error: Callable[[Handle[Any], BaseException], object] | None,
    handle: Handle[Any],
    exc: BaseException,
) -> None:
    """Hand an exception nobody observed to ``on_error``, or log it with its traceback."""
    if on_error is None:
        logger.error(
            "unobserved exception in %s",
            handle.name,
            exc_info=(type(exc), exc, exc.__traceback__),
            extra={"callback": handle.name},
        )
        return
    try:
        on_error(handle, exc)
    except Exception:
        logger.exception("on_error raised while reporting %r", handle)


def _call_done_callback(fn: Callable[[Handle[Any]], object], handle: Handle[Any]) -> None:
    try:
        fn(handle)
    except Exception:
        logger.exception("done-callback %r of %r raised", fn, handle)
