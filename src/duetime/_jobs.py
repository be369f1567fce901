"""Job and RecurringJob: thread-safe handles to a ThreadedScheduler's work."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from anyio import fail_after

from ._exceptions import CallbackCancelled, SchedulerClosed
from ._handle import Handle
from ._logs import core_log
from ._threads import unwrap
from ._util import to_delay
from ._vocab import Status

if TYPE_CHECKING:
    from anyio.from_thread import BlockingPortal

    from ._recurring import Recurring
    from ._threads import InThread

__all__ = ["Job", "JobOwner", "RecurringJob"]

T = TypeVar("T")

logger = core_log


class JobOwner(Protocol):
    """What a job asks of its :class:`~duetime.ThreadedScheduler`."""

    _portal: BlockingPortal | None
    _stopped: threading.Event

    def _cancel(self, job: Job[Any]) -> bool: ...

    def _on_done(self, job: Job[Any], fn: Callable[[Handle[Any] | None], object]) -> None: ...

    def _on_loop_thread(self) -> bool: ...

    def _loop_call(self, fn: Callable[[], T]) -> T: ...


class Job(Generic[T]):
    """A thread-safe handle to one job of a :class:`ThreadedScheduler`.

    It behaves like a :class:`concurrent.futures.Future`: :meth:`result` and
    :meth:`exception` block until the job is done (or ``timeout`` passes).  A sync
    job is PENDING until a worker thread picks it up, then RUNNING.
    """

    __slots__ = ("__weakref__", "_body", "_cancel_early", "_done_event", "_handle", "_id", "_owner")

    def __init__(self, owner: JobOwner, body: InThread | None = None) -> None:
        self._id = _new_id()
        self._owner = owner
        # Set on the loop thread once the submission is taken off the inbox.
        self._handle: Handle[T] | None = None
        self._body = body  # a sync job's body: it knows whether a thread has it
        self._cancel_early = False
        self._done_event: threading.Event | None = None  # made by the first waiter

    @property
    def id(self) -> str:
        """A unique UUID string."""
        return self._id

    @property
    def status(self) -> Status:
        """The job's :class:`Status`: PENDING until it starts (a sync job: until a
        worker thread picks it up), RUNNING while it runs, then final."""
        h = self._handle
        if h is None:
            return Status.CANCELLED if self._cancel_early else Status.PENDING
        st = h.status
        if st is Status.RUNNING:
            body = self._body
            if body is not None and not body.started():
                # Waiting for a worker thread; or taken back by cancel(), and
                # its handle is about to say so.
                return Status.CANCELLED if body.abandoned() else Status.PENDING
        return st

    def done(self) -> bool:
        """Whether the job is in a final state."""
        h = self._handle
        if h is None:
            return self._cancel_early
        if h.done():
            return True
        body = self._body
        return body is not None and body.abandoned()

    def result(self, timeout: float | None = None) -> T:
        """Wait for the job and return its value, or raise its exception.

        :param timeout: seconds to wait at most (None: no limit)
        :raises TimeoutError: if the job is not done within ``timeout``
        :raises CallbackCancelled: if the job was cancelled
        :raises duetime.DeadlineExpired: if it expired
        :raises BaseException: the callback's own exception if it failed, even one
            that is not an Exception (``sys.exit()`` in a job raises SystemExit here)
        """
        h = self._wait(timeout)
        exc = h.exception
        if exc is not None:
            raise unwrap(exc)
        return h.return_value

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait for the job and return its exception, or None if it succeeded.

        :raises TimeoutError: if the job is not done within ``timeout``
        :raises CallbackCancelled: if the job was cancelled
        """
        exc = self._wait(timeout).exception
        return None if exc is None else unwrap(exc)

    def cancel(self) -> bool:
        """Cancel the job; True if this call cancelled it (see :meth:`Handle.cancel`)."""
        if self.done():
            return False
        return self._owner._cancel(self)

    def add_done_callback(self, fn: Callable[[Job[T]], object]) -> None:
        """Call ``fn(job)`` once the job is done: at once if it is, else on the loop thread.

        An exception ``fn`` raises (even a BaseException) is logged, never raised
        into the loop.
        """
        if self.done():
            fn(self)
            return

        def call(_h: object) -> None:
            try:
                fn(self)
            except BaseException:  # a done-callback must not stop the loop
                logger.exception("done-callback %r of %r raised", fn, self)

        self._owner._on_done(self, call)

    def _wait(self, timeout: float | None) -> Handle[T]:
        if timeout is not None:
            timeout = to_delay(timeout, "timeout")
        h = self._handle
        if (h is None and not self._cancel_early) or (h is not None and not h.done()):
            if self._owner._on_loop_thread():
                raise RuntimeError(
                    f"job {self._id} is not done: waiting for it on the scheduler's own "
                    "loop thread would block it for ever; use add_done_callback()"
                )
            event = self._done_event
            if event is None:
                # One event per job, however often result(timeout=...) is retried.
                event = self._done_event = threading.Event()
                self._owner._on_done(self, lambda _h: event.set())
            if not event.wait(timeout):
                raise TimeoutError(f"job {self._id} not done after {timeout} s")
        h = self._handle
        if h is None:  # cancelled before the loop ever took it
            raise CallbackCancelled(f"job {self._id} was cancelled")
        return h

    def __repr__(self) -> str:
        return f"<Job id={self._id} status={self.status}>"


class RecurringJob(Generic[T]):
    """A thread-safe handle to a recurring series of a :class:`ThreadedScheduler`.

    Reading its counters is safe from any thread; control methods make one
    round trip to the loop.
    """

    __slots__ = ("__weakref__", "_id", "_owner", "_series")

    def __init__(self, owner: JobOwner, series: Recurring[T]) -> None:
        self._id = _new_id()
        self._owner = owner
        self._series = series

    @property
    def id(self) -> str:
        """A unique UUID string."""
        return self._id

    @property
    def status(self) -> Status:
        """PENDING before the first run, RUNNING while active, then final."""
        return self._series.status

    @property
    def runs(self) -> int:
        """Runs that finished (succeeded or failed)."""
        return self._series.runs

    @property
    def missed(self) -> int:
        """Grid points that passed without a run of their own."""
        return self._series.missed

    def done(self) -> bool:
        """Whether the series is over and its last run finished."""
        return self._series.done()

    def last_result(self, timeout: float | None = None) -> T:
        """The latest run's outcome: its value, or its exception raised.

        :raises LookupError: if no run has started yet
        """
        last = self._series.last
        if last is None:
            raise LookupError("no run has started yet")
        job: Job[T] = Job(self._owner)
        job._handle = last
        return job.result(timeout)

    def cancel(self) -> bool:
        """Stop the series (a run in progress finishes); True if this call did."""
        try:
            return self._owner._loop_call(self._series.cancel)
        except SchedulerClosed:
            return False

    def pause(self) -> None:
        """Pause the series; :meth:`resume` continues on the grid."""
        self._owner._loop_call(self._series.pause)

    def resume(self) -> None:
        """Resume a paused series at its next grid point."""
        self._owner._loop_call(self._series.resume)

    def wait(self, timeout: float | None = None) -> int:
        """Block until the series is over; return the number of runs.

        :raises TimeoutError: if it is not over within ``timeout`` seconds
        """
        if timeout is not None:
            timeout = to_delay(timeout, "timeout")
        if self.done():
            return self._series.runs

        async def wait() -> int:
            with fail_after(timeout):  # on the loop's clock
                return await self._series.wait()

        portal = self._owner._portal
        if portal is None or self._owner._stopped.is_set():
            return self._series.runs  # shut down: the series is over
        try:
            return portal.call(wait)
        except TimeoutError:
            raise TimeoutError(f"recurring job {self._id} not over after {timeout} s") from None

    def __repr__(self) -> str:
        return f"<RecurringJob id={self._id} status={self.status} runs={self.runs}>"


def _new_id() -> str:
    # Random version-4 UUID; random.getrandbits avoids a urandom syscall per job.
    return str(uuid.UUID(int=random.getrandbits(128), version=4))
