"""ThreadedScheduler: the Scheduler's API for synchronous programs, safe from any thread."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Coroutine
from contextlib import AbstractContextManager
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Literal, TypeVar, TypeVarTuple, Unpack, overload

from anyio import CapacityLimiter
from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._cron import Cron
from ._exceptions import SchedulerClosed
from ._handle import FAILED, Handle, current_run, report_unobserved
from ._host import host_of
from ._jobs import Job, RecurringJob
from ._logs import core_log
from ._options import make_extra
from ._recurring import Recurring
from ._retry import Retry
from ._scheduler import Scheduler
from ._threads import GuardAsync, GuardSync, InThread, JobThreads, contained, unwrap
from ._util import check_aware, is_async, to_delay
from ._vocab import Misfire, Overlap, Status

__all__ = ["Job", "RecurringJob", "ThreadedScheduler"]  # Job/RecurringJob from _jobs

logger = core_log

T = TypeVar("T")
PosArgsT = TypeVarTuple("PosArgsT")

# Finished jobs kept for get(id) beyond those the program still references.
_DEFAULT_KEEP_FINISHED = 10_000


class ThreadedScheduler(AbstractContextManager["ThreadedScheduler"]):
    """Run a :class:`Scheduler` on an event loop in a background thread.

    Every method is safe to call from any thread.  Sync callbacks run on
    at most ``max_threads`` long-lived worker threads, so a slow one never delays
    the others; async callbacks run on the loop.  A job that raises a
    BaseException (``sys.exit()``, KeyboardInterrupt) fails with it, as in
    :mod:`concurrent.futures`, and the scheduler keeps running.  Use it as a
    context manager, or call :meth:`start` and :meth:`shutdown`.

    Submissions are batched: a call appends to an inbox and wakes the loop once
    per batch, not once per job, so scheduling 100 000 jobs costs no 100 000
    cross-thread round trips.

    :param backend: ``"asyncio"`` or ``"trio"``
    :param backend_options: passed to :func:`anyio.from_thread.start_blocking_portal`
    :param max_threads: worker threads for sync callbacks (default: min(32, CPUs + 4))
    :param keep_finished: how many finished jobs :meth:`get` can still find by id
        (jobs the program holds stay usable regardless)
    :param max_concurrency: as for :class:`Scheduler`
    :param on_exit: as for :class:`Scheduler`
    :param grace: as for :class:`Scheduler`
    :param sync_in_thread: as for :class:`Scheduler`, but True by default here
    :param on_error: as for :class:`Scheduler` (called on the loop thread, with the
        job's own exception; whatever it raises is logged)
    :param wall_clock: as for :class:`Scheduler`
    :param slow_callback_duration: as for :class:`Scheduler`
    """

    def __init__(
        self,
        backend: str = "asyncio",
        *,
        backend_options: dict[str, Any] | None = None,
        max_threads: int | None = None,
        keep_finished: int = _DEFAULT_KEEP_FINISHED,
        max_concurrency: int | None = None,
        on_exit: Literal["cancel", "drain"] = "cancel",
        grace: float | None = None,
        sync_in_thread: bool = True,
        on_error: Callable[[Handle[Any], BaseException], object] | None = None,
        wall_clock: Callable[[], datetime] | None = None,
        slow_callback_duration: float = 0.1,
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
        if on_error is not None and not callable(on_error):
            raise TypeError(f"on_error must be callable, got {on_error!r}")
        # Validates the options now, in the caller's thread.
        self._scheduler = Scheduler(
            max_concurrency=max_concurrency,
            on_exit=on_exit,
            grace=grace,
            sync_in_thread=sync_in_thread,
            on_error=_contained_on_error(on_error),
            wall_clock=wall_clock,
            slow_callback_duration=slow_callback_duration,
        )
        self._on_exit = on_exit
        self._threads = JobThreads(max_threads)
        self._host = host_of(self._scheduler)
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
        self._jobs: dict[str, Job[Any] | RecurringJob[Any]] = {}
        self._prune_at = 1024
        self._portal: BlockingPortal | None = None
        self._loop_thread: int | None = None
        self._stopped = threading.Event()  # set once the loop thread has finished
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
        self._loop_thread = threading.get_ident()
        host = self._host
        # Sync jobs run on self._threads; this bounds any the scheduler runs itself.
        host.set_thread_limiter(CapacityLimiter(self._max_threads))
        self._threads.bind(host.clock)
        if self._on_exit == "cancel":
            # Jobs still waiting for a worker thread have not started: shutdown
            # cancels them like any pending job.
            host.add_exit_hook(_CancelWaiting(self._threads))
        host.set_before_sleep(self._before_sleep)
        host.wake()  # one pass through the hook, which publishes _planned_wake

    def _before_sleep(self) -> float:
        """On the loop thread, each time the timer loop is about to sleep."""
        host = self._host
        with self._lock:
            self._drain_locked()
            deadline = host.next_deadline()
            self._planned_wake = deadline
            self._clock_offset = host.clock() - time.monotonic()
            return deadline

    def shutdown(self, wait: bool = True) -> None:
        """Stop: pending jobs end CANCELLED (a sync job still waiting for a worker
        thread is pending); running ones finish (``wait=True``, within ``grace``)
        or are cancelled at once (``wait=False``).

        Calling it twice, or from two threads at once, is safe: a second
        ``shutdown(wait=True)`` returns once the first has finished.  Afterwards
        every scheduling call, from any thread, raises :exc:`SchedulerClosed`.

        :raises RuntimeError: if called from one of this scheduler's own jobs
        """
        if self._on_loop_thread() or self._called_from_own_job():
            raise RuntimeError(
                "shutdown() cannot be called from one of this scheduler's own callbacks: it "
                "would wait for itself; call it from the thread that started the scheduler"
            )
        with self._lock:
            state = self._state
            self._state = 2
        if state == 2:
            if wait:
                self._stopped.wait()  # another thread is shutting down
            return
        if state == 0:
            self._stopped.set()
            return
        portal = self._portal
        assert portal is not None
        assert self._scheduler_cm is not None
        assert self._portal_cm is not None
        try:
            portal.call(self._drain)  # everything submitted before now gets a handle
            if not wait:
                portal.call(self._host.end_grace)
            self._scheduler_cm.__exit__(None, None, None)
        finally:
            try:
                self._portal_cm.__exit__(None, None, None)
            finally:
                self._threads.close()
                self._stopped.set()

    def _on_loop_thread(self) -> bool:
        return threading.get_ident() == self._loop_thread

    def _called_from_own_job(self) -> bool:
        try:
            info = current_run()
        except RuntimeError:
            return False
        return info.handle._owner is self._host

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
        return self._submit(to_delay(delay), func, args, name, timeout, retry, in_thread)

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
            raise TypeError(
                f"when must be an aware datetime, got {when!r}; for a delay use call_later()"
            )
        check_aware(when)
        return self._submit(when, func, args, name, timeout, retry, in_thread)

    @overload
    def call_every(
        self,
        interval: float | timedelta | Cron,
        func: Callable[[Unpack[PosArgsT]], Coroutine[Any, Any, T]],
        /,
        *args: Unpack[PosArgsT],
        start: float | timedelta | datetime = ...,
        max_runs: int | None = ...,
        until: float | timedelta | datetime | None = ...,
        jitter: float | timedelta = ...,
        misfire: Misfire = ...,
        overlap: Overlap = ...,
        name: str | None = ...,
        timeout: float | None = ...,
        retry: Retry | None = ...,
        in_thread: bool | None = ...,
    ) -> RecurringJob[T]: ...

    @overload
    def call_every(
        self,
        interval: float | timedelta | Cron,
        func: Callable[[Unpack[PosArgsT]], T],
        /,
        *args: Unpack[PosArgsT],
        start: float | timedelta | datetime = ...,
        max_runs: int | None = ...,
        until: float | timedelta | datetime | None = ...,
        jitter: float | timedelta = ...,
        misfire: Misfire = ...,
        overlap: Overlap = ...,
        name: str | None = ...,
        timeout: float | None = ...,
        retry: Retry | None = ...,
        in_thread: bool | None = ...,
    ) -> RecurringJob[T]: ...

    def call_every(  # type: ignore[misc]  # mypy: TypeVarTuple overload impl
        self,
        interval: float | timedelta | Cron,
        func: Callable[..., Any],
        /,
        *args: Any,
        start: float | timedelta | datetime = 0.0,
        max_runs: int | None = None,
        until: float | timedelta | datetime | None = None,
        jitter: float | timedelta = 0.0,
        misfire: Misfire = "coalesce",
        overlap: Overlap = "skip",
        name: str | None = None,
        timeout: float | None = None,
        retry: Retry | None = None,
        in_thread: bool | None = None,
    ) -> RecurringJob[Any]:
        """Run ``func(*args)`` every ``interval``; see :meth:`Scheduler.call_every`.

        One round trip to the loop, so bad input raises here, at the call site.

        :raises SchedulerClosed: before :meth:`start` or after :meth:`shutdown`
        :raises TypeError: on bad input, as :meth:`Scheduler.call_every`
        :raises ValueError: on bad input, as :meth:`Scheduler.call_every`
        """

        if not callable(func):
            raise TypeError(f"func must be callable, got {func!r}")
        make_extra(func, name, timeout, retry, in_thread, False, self._host.sync_in_thread)
        body, run_timeout = self._body(func, timeout, in_thread)

        def create() -> list[Recurring[Any]]:
            # In a list: the portal would otherwise await the awaitable Recurring.
            return [
                self._scheduler.call_every(
                    interval,
                    body,
                    *args,
                    start=start,
                    max_runs=max_runs,
                    until=until,
                    jitter=jitter,
                    misfire=misfire,
                    overlap=overlap,
                    name=name,
                    timeout=run_timeout,
                    retry=contained(retry),
                    in_thread=in_thread,
                )
            ]

        with self._lock:
            if self._state != 1:
                raise SchedulerClosed(self._closed_message())
        series = self._loop_call(create)[0]
        job: RecurringJob[Any] = RecurringJob(self, series)
        with self._lock:
            self._jobs[job._id] = job
        return job

    def _closed_message(self) -> str:
        if self._state == 0:
            return "the ThreadedScheduler is not running: call start() or use 'with'"
        return "the ThreadedScheduler has been shut down"

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
        opts = (name, timeout, retry, in_thread)
        if opts == (None, None, None, None):
            if not callable(func):
                raise TypeError(f"func must be callable, got {func!r}")
        else:
            threaded = self._host.sync_in_thread
            make_extra(func, name, timeout, retry, in_thread, False, threaded)
        body, run_timeout = self._body(func, timeout, in_thread)
        if run_timeout is not timeout or retry is not None:
            opts = (name, run_timeout, contained(retry), in_thread)
        job: Job[Any] = Job(self, body if type(body) is InThread else None)
        submitted = time.monotonic()
        # A datetime's loop time needs the wall clock, maybe not readable here: wake.
        due = -math.inf if isinstance(when, datetime) else submitted + when
        with self._lock:
            if self._state != 1:
                raise SchedulerClosed(self._closed_message())
            self._inbox.append((job, when, submitted, body, args, opts))
            self._jobs[job._id] = job
            if len(self._jobs) >= self._prune_at:
                self._prune()
            wake = not self._wake_pending and due + self._clock_offset < self._planned_wake
            if wake:
                self._wake_pending = True
        if wake:
            if threading.get_ident() == self._loop_thread:
                # From a callback on the loop itself: no cross-thread hop needed.
                self._drain()
                return job
            assert self._portal is not None
            try:
                # One cross-thread wake-up per batch of submissions.
                self._portal.start_task_soon(self._drain)
            except RuntimeError:
                with self._lock:
                    self._wake_pending = False
                # A concurrent shutdown() stopped the portal after draining the
                # inbox, this job included: it has its final state already.
                if self._state == 1:
                    raise
        return job

    def _body(
        self, func: Callable[..., Any], timeout: float | None, in_thread: bool | None
    ) -> tuple[Callable[..., Any], float | None]:
        """What the scheduler runs for ``func``, and the timeout it enforces.

        A sync job for a worker thread becomes an :class:`InThread` body, which
        enforces its own timeout (counted from when a thread picks it up).  Every
        body turns a BaseException of the job into a failure of that job alone.
        """
        if is_async(func):
            return GuardAsync(func), timeout
        threaded = self._host.sync_in_thread if in_thread is None else in_thread
        if threaded:
            return InThread(self._threads, func, timeout), None
        return GuardSync(func), timeout

    def _drain(self) -> None:
        """On the loop thread: give every job in the inbox its scheduler handle."""
        with self._lock:
            self._drain_locked()

    def _drain_locked(self) -> None:
        inbox, self._inbox = self._inbox, []
        self._wake_pending = False
        s = self._scheduler
        now = self._host.clock()
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
            try:
                job._handle = s.call_at(
                    target,
                    func,
                    *args,
                    name=name,
                    timeout=timeout,
                    retry=retry,
                    in_thread=in_thread,
                )
            except Exception as exc:  # e.g. a wall_clock that returns a naive datetime
                # Validated at the call site, so this is rare; the job still ends.
                failed: Handle[Any] = Handle(now, func, args, None)
                failed._finish(FAILED, exc)
                job._handle = failed

    def _prune(self) -> None:
        """Forget finished jobs beyond ``keep_finished`` (called under the lock)."""
        finished = [jid for jid, job in self._jobs.items() if job.done()]
        for jid in finished[: max(len(finished) - self._keep_finished, 0)]:
            del self._jobs[jid]
        self._prune_at = max(1024, 2 * len(self._jobs))

    # ------------------------------------------------------------------ per-job calls

    def _loop_call(self, func: Callable[[], T]) -> T:
        if self._on_loop_thread():
            return func()  # a job or done-callback on the loop: no hop (the portal refuses)
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
            body = job._body
            if body is not None and h.status is Status.RUNNING:
                body.abandon()  # waiting for a thread: it reads CANCELLED from now on
            return h.cancel()

        try:
            return self._loop_call(cancel)
        except SchedulerClosed:
            return False  # shut down: the job is final already

    def _on_done(self, job: Job[Any], fn: Callable[[Handle[Any] | None], object]) -> None:
        """Call ``fn(handle)`` on the loop thread once ``job`` is done (at once if it is)."""

        def register() -> None:
            self._drain()
            h = job._handle
            if h is None:
                fn(None)  # cancelled before the loop took it: final already
            else:
                h.add_done_callback(fn)

        if self._on_loop_thread():
            register()  # a job or done-callback on the loop: the portal would refuse
            return
        portal = self._portal
        if portal is not None and not self._stopped.is_set():
            try:
                portal.call(register)
                return
            except RuntimeError:
                pass  # the portal stopped meanwhile: every job is final now
        h = job._handle
        if h is None or h.done():
            fn(h)

    # ------------------------------------------------------------------ lookup

    def get(self, job_id: str) -> Job[Any] | RecurringJob[Any] | None:
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


class _CancelWaiting:
    """An exit hook: cancel the sync jobs still waiting for a worker thread."""

    __slots__ = ("_threads",)

    def __init__(self, threads: JobThreads) -> None:
        self._threads = threads

    def cancel(self) -> None:
        self._threads.cancel_waiting()


def _contained_on_error(
    on_error: Callable[[Handle[Any], BaseException], object] | None,
) -> Callable[[Handle[Any], BaseException], object]:
    """``on_error`` as the loop calls it: with the job's own exception, never raising."""

    def report(handle: Handle[Any], exc: BaseException) -> None:
        exc = unwrap(exc)
        if on_error is None:
            report_unobserved(None, handle, exc)
            return
        try:
            on_error(handle, exc)
        except BaseException:  # must not stop the loop
            logger.exception("on_error raised while reporting %r", handle)

    return report
