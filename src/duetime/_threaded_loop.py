"""The machinery under ThreadedScheduler: a Scheduler on an event loop in its own thread.

:class:`LoopThread` starts the event loop thread and enters the Scheduler there,
shuts both down in order, takes submissions from any thread into an inbox that
the loop drains in batches (one cross-thread wake-up per batch, not per job), and
makes the calls a :class:`~duetime.Job` needs onto the loop.  The public
``call_*`` front is :class:`~duetime.ThreadedScheduler`, which derives from it.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from datetime import datetime
from types import TracebackType
from typing import Any, Self, TypeVar

from anyio import CapacityLimiter
from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._exceptions import SchedulerClosed
from ._handle import FAILED, Handle, current_run
from ._host import host_of
from ._jobs import Job, RecurringJob
from ._options import make_extra
from ._retry import Retry
from ._scheduler import Scheduler
from ._threads import CancelWaiting, GuardAsync, GuardSync, InThread, JobThreads, contained
from ._util import is_async
from ._vocab import Status

__all__ = ["LoopThread"]

T = TypeVar("T")


class LoopThread(AbstractContextManager["LoopThread"]):
    """A :class:`Scheduler` run on an event loop in a background thread.

    Every method is safe to call from any thread.  It is the base of
    :class:`~duetime.ThreadedScheduler`, which documents the behaviour.

    :param scheduler: the Scheduler to run (not entered yet)
    :param backend: ``"asyncio"`` or ``"trio"``
    :param backend_options: passed to :func:`anyio.from_thread.start_blocking_portal`
    :param max_threads: worker threads for sync jobs (>= 1, checked by the caller)
    :param keep_finished: how many finished jobs :meth:`_prune` keeps findable
    :param on_exit: the Scheduler's ``on_exit``
    """

    def __init__(
        self,
        scheduler: Scheduler,
        *,
        backend: str,
        backend_options: dict[str, Any] | None,
        max_threads: int,
        keep_finished: int,
        on_exit: str,
    ) -> None:
        self._scheduler = scheduler
        self._on_exit = on_exit
        self._threads = JobThreads(max_threads)
        self._host = host_of(scheduler)
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
        # The Thread object, not its ident: a thread started after the loop's
        # ended may be given the same ident, and would pass for the loop's own.
        self._loop_thread: threading.Thread | None = None
        self._stopped = threading.Event()  # set once the loop thread has finished
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._scheduler_cm: AbstractContextManager[Scheduler] | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> Self:
        """Start the event loop thread and enter the scheduler.

        If entering fails (a durable store that cannot be opened, say), the
        loop thread is stopped again, the error is raised here, and the
        scheduler counts as shut down.

        :raises RuntimeError: if already started
        """
        with self._lock:
            if self._state != 0:
                raise RuntimeError("a ThreadedScheduler can be started only once")
            self._state = 1
        portal_cm = self._portal_cm = start_blocking_portal(
            self._backend, self._backend_options, name="duetime-scheduler"
        )
        portal = self._portal = portal_cm.__enter__()
        self._scheduler_cm = portal.wrap_async_context_manager(self._scheduler)
        try:
            self._scheduler_cm.__enter__()
        except BaseException:
            # No __exit__ follows a failed __enter__: stop the loop thread now,
            # or it would outlive the program's main thread.
            with self._lock:
                self._state = 2
            try:
                portal_cm.__exit__(None, None, None)
            finally:
                self._threads.close()
                self._stopped.set()
            raise
        portal.call(self._set_thread_limiter)
        return self

    def _set_thread_limiter(self) -> None:
        self._loop_thread = threading.current_thread()
        host = self._host
        # Sync jobs run on self._threads; this bounds any the scheduler runs itself.
        host.set_thread_limiter(CapacityLimiter(self._max_threads))
        self._threads.bind(host.clock)
        if self._on_exit == "cancel":
            # Jobs still waiting for a worker thread have not started: shutdown
            # cancels them like any pending job.
            host.add_exit_hook(CancelWaiting(self._threads))
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
        return threading.current_thread() is self._loop_thread

    def _called_from_own_job(self) -> bool:
        try:
            info = current_run()
        except RuntimeError:
            return False
        return info.handle._owner is self._host

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.shutdown(wait=True)

    # ------------------------------------------------------------------ submission

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
            if threading.current_thread() is self._loop_thread:
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

    # ------------------------------------------------------------------ calls onto the loop

    def _loop_call(self, func: Callable[[], T]) -> T:
        if self._on_loop_thread():
            return func()  # a job or done-callback on the loop: no hop (the portal refuses)
        portal = self._portal
        if self._state != 1 or portal is None:
            raise SchedulerClosed("the ThreadedScheduler is not running")
        return portal.call(func)

    def _loop_await(self, func: Callable[[], Awaitable[T]]) -> T:
        """Await ``func()`` on the loop and return its result, blocking this thread.

        :raises RuntimeError: on the loop's own thread (it would wait for itself)
        :raises SchedulerClosed: before :meth:`start` or after :meth:`shutdown`
        """
        if self._on_loop_thread():
            raise RuntimeError(
                "this call waits for the event loop, and this is the loop's own thread: "
                "from an async job, await the same method of .scheduler instead"
            )
        portal = self._portal
        if self._state != 1 or portal is None:
            raise SchedulerClosed(self._closed_message())
        try:
            return portal.call(func)
        except RuntimeError:
            if self._state != 1:  # shut down meanwhile: the portal stopped
                raise SchedulerClosed(self._closed_message()) from None
            raise

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
