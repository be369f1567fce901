"""ThreadedScheduler: the Scheduler's API for synchronous programs, safe from any thread."""

from __future__ import annotations

import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Coroutine
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Generic, TypeVar, TypeVarTuple, Unpack, overload

from anyio import CapacityLimiter
from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._exceptions import CallbackCancelled, SchedulerClosed
from ._handle import Handle, Status
from ._retry import Retry
from ._scheduler import Scheduler, _check_aware, _to_delay, make_extra

__all__ = ["Job", "ThreadedScheduler"]

T = TypeVar("T")
PosArgsT = TypeVarTuple("PosArgsT")

# Finished jobs kept for get(id) beyond those the program still references.
_DEFAULT_KEEP_FINISHED = 10_000


class Job(Generic[T]):
    """A thread-safe handle to one job of a :class:`ThreadedScheduler`.

    It behaves like a :class:`concurrent.futures.Future`: :meth:`result` and
    :meth:`exception` block until the job is done (or ``timeout`` passes).
    """

    __slots__ = ("__weakref__", "_cancel_early", "_handle", "_id", "_owner")

    def __init__(self, owner: ThreadedScheduler) -> None:
        # Random version-4 UUID; random.getrandbits avoids a urandom syscall per job.
        self._id = str(uuid.UUID(int=random.getrandbits(128), version=4))
        self._owner = owner
        # Set on the loop thread once the submission is taken off the inbox.
        self._handle: Handle[T] | None = None
        self._cancel_early = False

    @property
    def id(self) -> str:
        """A unique UUID string."""
        return self._id

    @property
    def status(self) -> Status:
        """The job's :class:`Status` (PENDING until the loop has taken it)."""
        h = self._handle
        if h is None:
            return Status.CANCELLED if self._cancel_early else Status.PENDING
        return h.status

    def done(self) -> bool:
        """Whether the job is in a final state."""
        h = self._handle
        return self._cancel_early if h is None else h.done()

    def result(self, timeout: float | None = None) -> T:
        """Wait for the job and return its value, or raise its exception.

        :param timeout: seconds to wait at most (None: no limit)
        :raises TimeoutError: if the job is not done within ``timeout``
        :raises CallbackCancelled: if the job was cancelled
        :raises duetime.DeadlineExpired: if it expired
        :raises BaseException: the callback's own exception if it failed
        """
        h = self._wait(timeout)
        return h.return_value

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """Wait for the job and return its exception, or None if it succeeded.

        :raises TimeoutError: if the job is not done within ``timeout``
        :raises CallbackCancelled: if the job was cancelled
        """
        return self._wait(timeout).exception

    def cancel(self) -> bool:
        """Cancel the job; True if this call cancelled it (see :meth:`Handle.cancel`)."""
        if self.done():
            return False
        return self._owner._cancel(self)

    def add_done_callback(self, fn: Callable[[Job[T]], object]) -> None:
        """Call ``fn(job)`` once the job is done: at once if it is, else on the loop thread."""
        if self.done():
            fn(self)
            return
        self._owner._on_done(self, lambda _h: fn(self))

    def _wait(self, timeout: float | None) -> Handle[T]:
        if timeout is not None:
            timeout = _to_delay(timeout, "timeout")
        if not self.done():
            event = threading.Event()
            self._owner._on_done(self, lambda _h: event.set())
            if not event.wait(timeout):
                raise TimeoutError(f"job {self._id} not done after {timeout} s")
        h = self._handle
        if h is None:  # cancelled before the loop ever took it
            raise CallbackCancelled(f"job {self._id} was cancelled")
        return h

    def __repr__(self) -> str:
        return f"<Job id={self._id} status={self.status}>"


class ThreadedScheduler(AbstractContextManager["ThreadedScheduler"]):
    """Run a :class:`Scheduler` on an event loop in a background thread.

    Every method is safe to call from any thread.  Sync callbacks run in a bounded
    pool of worker threads (``max_threads``), so a slow one never delays the
    others; async callbacks run on the loop.  Use it as a context manager, or call
    :meth:`start` and :meth:`shutdown`.

    Submissions are batched: a call appends to an inbox and wakes the loop once
    per batch, not once per job, so scheduling 100 000 jobs costs no 100 000
    cross-thread round trips.

    :param backend: ``"asyncio"`` or ``"trio"``
    :param backend_options: passed to :func:`anyio.from_thread.start_blocking_portal`
    :param max_threads: worker threads for sync callbacks (default: min(32, CPUs + 4))
    :param keep_finished: how many finished jobs :meth:`get` can still find by id
        (jobs the program holds stay usable regardless)
    :param scheduler_options: passed to :class:`Scheduler`; ``sync_in_thread``
        defaults to True here
    """

    def __init__(
        self,
        backend: str = "asyncio",
        *,
        backend_options: dict[str, Any] | None = None,
        max_threads: int | None = None,
        keep_finished: int = _DEFAULT_KEEP_FINISHED,
        **scheduler_options: Any,
    ) -> None:
        if max_threads is None:
            import os

            max_threads = min(32, (os.cpu_count() or 1) + 4)
        if isinstance(max_threads, bool) or not isinstance(max_threads, int):
            raise TypeError(f"max_threads must be an int, got {max_threads!r}")
        if max_threads < 1:
            raise ValueError(f"max_threads must be >= 1, got {max_threads}")
        if isinstance(keep_finished, bool) or not isinstance(keep_finished, int):
            raise TypeError(f"keep_finished must be an int, got {keep_finished!r}")
        if keep_finished < 0:
            raise ValueError(f"keep_finished must be >= 0, got {keep_finished}")
        scheduler_options.setdefault("sync_in_thread", True)
        self._scheduler = Scheduler(**scheduler_options)  # validates the options now
        self._backend = backend
        self._backend_options = backend_options
        self._max_threads = max_threads
        self._keep_finished = keep_finished

        self._lock = threading.Lock()
        self._state = 0  # 0 new, 1 running, 2 closed
        self._inbox: list[
            tuple[Job[Any], Any, float, Callable[..., Any], tuple[Any, ...], Any]
        ] = []
        self._wake_pending = False
        # Published by the loop, under the lock, right before it sleeps: it will
        # wake by _planned_wake (loop time) and take in the inbox then.  A
        # submission due no earlier than that needs no cross-thread wake-up.
        self._planned_wake = -math.inf
        self._clock_offset = 0.0  # loop time - time.monotonic()
        self._jobs: dict[str, Job[Any]] = {}
        self._prune_at = 1024
        self._portal: BlockingPortal | None = None
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._scheduler_cm: AbstractContextManager[Scheduler] | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> ThreadedScheduler:
        """Start the event loop thread and enter the scheduler.

        :raises RuntimeError: if already started
        """
        with self._lock:
            if self._state != 0:
                raise RuntimeError("a ThreadedScheduler can be started only once")
            self._state = 1
        self._portal_cm = start_blocking_portal(
            self._backend, self._backend_options, name="duetime-scheduler"
        )
        portal = self._portal = self._portal_cm.__enter__()
        self._scheduler_cm = portal.wrap_async_context_manager(self._scheduler)
        self._scheduler_cm.__enter__()
        portal.call(self._set_thread_limiter)
        return self

    def _set_thread_limiter(self) -> None:
        s = self._scheduler
        s._thread_limiter = CapacityLimiter(self._max_threads)
        s._before_sleep = self._before_sleep
        s._rearm(-math.inf)  # one pass through the hook, which publishes _planned_wake

    def _before_sleep(self) -> float:
        """On the loop thread, each time the timer loop is about to sleep."""
        s = self._scheduler
        with self._lock:
            self._drain_locked()
            deadline = s._next_deadline()
            self._planned_wake = deadline
            self._clock_offset = s._clock() - time.monotonic()
            return deadline

    def shutdown(self, wait: bool = True) -> None:
        """Stop: pending jobs end CANCELLED; running ones finish (``wait=True``)
        or are cancelled at once (``wait=False``).  Calling it twice is safe.

        Afterwards every scheduling call, from any thread, raises
        :exc:`SchedulerClosed`.
        """
        with self._lock:
            if self._state == 2:
                return
            was_running = self._state == 1
            self._state = 2
        if not was_running:
            return
        portal = self._portal
        assert portal is not None
        assert self._scheduler_cm is not None
        assert self._portal_cm is not None
        try:
            portal.call(self._drain)  # everything submitted before now gets a handle
            if not wait:
                portal.call(setattr, self._scheduler, "_grace", 0.0)
            self._scheduler_cm.__exit__(None, None, None)
        finally:
            self._portal_cm.__exit__(None, None, None)

    def __enter__(self) -> ThreadedScheduler:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown(wait=True)

    # ------------------------------------------------------------------ scheduling

    @overload
    def call_soon(
        self,
        func: Callable[[Unpack[PosArgsT]], Coroutine[Any, Any, T]],
        /,
        *args: Unpack[PosArgsT],
        name: str | None = ...,
        timeout: float | None = ...,
        retry: Retry | None = ...,
        in_thread: bool | None = ...,
    ) -> Job[T]: ...

    @overload
    def call_soon(
        self,
        func: Callable[[Unpack[PosArgsT]], T],
        /,
        *args: Unpack[PosArgsT],
        name: str | None = ...,
        timeout: float | None = ...,
        retry: Retry | None = ...,
        in_thread: bool | None = ...,
    ) -> Job[T]: ...

    def call_soon(  # type: ignore[misc]  # mypy: TypeVarTuple overload impl
        self,
        func: Callable[..., Any],
        /,
        *args: Any,
        name: str | None = None,
        timeout: float | None = None,
        retry: Retry | None = None,
        in_thread: bool | None = None,
    ) -> Job[Any]:
        """Run ``func(*args)`` as soon as possible; see :meth:`Scheduler.call_soon`.

        :raises SchedulerClosed: before :meth:`start` or after :meth:`shutdown`
        """
        return self._submit(0.0, func, args, name, timeout, retry, in_thread)

    @overload
    def call_later(
        self,
        delay: float | timedelta,
        func: Callable[[Unpack[PosArgsT]], Coroutine[Any, Any, T]],
        /,
        *args: Unpack[PosArgsT],
        name: str | None = ...,
        timeout: float | None = ...,
        retry: Retry | None = ...,
        in_thread: bool | None = ...,
    ) -> Job[T]: ...

    @overload
    def call_later(
        self,
        delay: float | timedelta,
        func: Callable[[Unpack[PosArgsT]], T],
        /,
        *args: Unpack[PosArgsT],
        name: str | None = ...,
        timeout: float | None = ...,
        retry: Retry | None = ...,
        in_thread: bool | None = ...,
    ) -> Job[T]: ...

    def call_later(  # type: ignore[misc]  # mypy: TypeVarTuple overload impl
        self,
        delay: float | timedelta,
        func: Callable[..., Any],
        /,
        *args: Any,
        name: str | None = None,
        timeout: float | None = None,
        retry: Retry | None = None,
        in_thread: bool | None = None,
    ) -> Job[Any]:
        """Run ``func(*args)`` after ``delay`` seconds, counted from this call.

        :raises SchedulerClosed: before :meth:`start` or after :meth:`shutdown`
        :raises TypeError: on bad input, as :meth:`Scheduler.call_later`
        :raises ValueError: on bad input, as :meth:`Scheduler.call_later`
        """
        return self._submit(_to_delay(delay), func, args, name, timeout, retry, in_thread)

    @overload
    def call_at(
        self,
        when: datetime,
        func: Callable[[Unpack[PosArgsT]], Coroutine[Any, Any, T]],
        /,
        *args: Unpack[PosArgsT],
        name: str | None = ...,
        timeout: float | None = ...,
        retry: Retry | None = ...,
        in_thread: bool | None = ...,
    ) -> Job[T]: ...

    @overload
    def call_at(
        self,
        when: datetime,
        func: Callable[[Unpack[PosArgsT]], T],
        /,
        *args: Unpack[PosArgsT],
        name: str | None = ...,
        timeout: float | None = ...,
        retry: Retry | None = ...,
        in_thread: bool | None = ...,
    ) -> Job[T]: ...

    def call_at(  # type: ignore[misc]  # mypy: TypeVarTuple overload impl
        self,
        when: datetime,
        func: Callable[..., Any],
        /,
        *args: Any,
        name: str | None = None,
        timeout: float | None = None,
        retry: Retry | None = None,
        in_thread: bool | None = None,
    ) -> Job[Any]:
        """Run ``func(*args)`` at the aware datetime ``when`` (wall clock).

        Loop-clock floats are not accepted here: the loop's clock is not this
        thread's.  Use :meth:`call_later` for relative times.

        :raises SchedulerClosed: before :meth:`start` or after :meth:`shutdown`
        :raises TypeError: if ``when`` is not a datetime
        :raises ValueError: if ``when`` is naive
        """
        if not isinstance(when, datetime):
            raise TypeError(f"when must be an aware datetime, got {when!r}")
        _check_aware(when)
        return self._submit(when, func, args, name, timeout, retry, in_thread)

    def _submit(
        self,
        when: float | datetime,
        func: Callable[..., Any],
        args: tuple[Any, ...],
        name: str | None,
        timeout: float | None,
        retry: Retry | None,
        in_thread: bool | None,
    ) -> Job[Any]:
        # Validate here, in the caller's thread, so bad input raises at the call site.
        make_extra(func, name, timeout, retry, in_thread, False, self._scheduler._sync_in_thread)
        opts = (name, timeout, retry, in_thread)
        job: Job[Any] = Job(self)
        submitted = time.monotonic()
        # A datetime's loop time needs the wall clock, maybe not readable here: wake.
        due = -math.inf if isinstance(when, datetime) else submitted + when
        with self._lock:
            if self._state != 1:
                raise SchedulerClosed(
                    "the ThreadedScheduler is not running: call start() or use 'with'"
                    if self._state == 0
                    else "the ThreadedScheduler has been shut down"
                )
            self._inbox.append((job, when, submitted, func, args, opts))
            self._jobs[job._id] = job
            if len(self._jobs) >= self._prune_at:
                self._prune()
            wake = not self._wake_pending and due + self._clock_offset < self._planned_wake
            if wake:
                self._wake_pending = True
        if wake:
            assert self._portal is not None
            try:
                # One cross-thread wake-up per batch of submissions.
                self._portal.start_task_soon(self._drain)
            except RuntimeError:
                # A concurrent shutdown() stopped the portal after draining the
                # inbox, this job included: it has its final state already.
                if self._state == 1:
                    raise
        return job

    def _drain(self) -> None:
        """On the loop thread: give every job in the inbox its scheduler handle."""
        with self._lock:
            self._drain_locked()

    def _drain_locked(self) -> None:
        inbox, self._inbox = self._inbox, []
        self._wake_pending = False
        s = self._scheduler
        now = s._clock()
        mono = time.monotonic()
        for job, when, submitted, func, args, (name, timeout, retry, in_thread) in inbox:
            if job._cancel_early:
                continue
            if s.closed:
                job._cancel_early = True
                continue
            if isinstance(when, datetime):
                target: float | datetime = when
            else:
                # Count the delay from the submission, not from this drain.
                target = now + max(when - (mono - submitted), 0.0)
            job._handle = s.call_at(
                target, func, *args, name=name, timeout=timeout, retry=retry, in_thread=in_thread
            )

    def _prune(self) -> None:
        """Forget finished jobs beyond ``keep_finished`` (called under the lock)."""
        finished = [jid for jid, job in self._jobs.items() if job.done()]
        for jid in finished[: max(len(finished) - self._keep_finished, 0)]:
            del self._jobs[jid]
        self._prune_at = max(1024, 2 * len(self._jobs))

    # ------------------------------------------------------------------ per-job calls

    def _loop_call(self, func: Callable[[], T]) -> T:
        portal = self._portal
        if self._state != 1 or portal is None:
            raise SchedulerClosed("the ThreadedScheduler is not running")
        return portal.call(func)

    def _cancel(self, job: Job[Any]) -> bool:
        def cancel() -> bool:
            self._drain()
            h = job._handle
            if h is None:
                if job._cancel_early:
                    return False
                job._cancel_early = True
                return True
            return h.cancel()

        try:
            return self._loop_call(cancel)
        except SchedulerClosed:
            return False  # shut down: the job is final already

    def _on_done(self, job: Job[Any], fn: Callable[[Handle[Any]], object]) -> None:
        def register() -> None:
            self._drain()
            h = job._handle
            if h is not None:
                h.add_done_callback(fn)

        if self._state == 1 and self._portal is not None:
            try:
                self._portal.call(register)
                return
            except RuntimeError:
                pass  # the portal stopped meanwhile: the job is final now
        h = job._handle
        if h is not None:
            fn(h)

    # ------------------------------------------------------------------ lookup

    def get(self, job_id: str) -> Job[Any] | None:
        """Return the job with this id, or None if unknown (or long finished)."""
        with self._lock:
            return self._jobs.get(job_id)

    def __len__(self) -> int:
        """The number of jobs submitted and not yet done."""
        with self._lock:
            return sum(1 for job in self._jobs.values() if not job.done())

    @property
    def scheduler(self) -> Scheduler:
        """The underlying :class:`Scheduler` (use it only from the loop thread)."""
        return self._scheduler
