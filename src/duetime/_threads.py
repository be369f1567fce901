"""How a ThreadedScheduler runs job bodies: its job threads, and BaseException.

Sync jobs run on a few long-lived threads (at most ``max_threads``),
fed by a queue, instead of one ``anyio.to_thread.run_sync`` hop per job: a job
costs a queue put and a lock, and finished jobs are handed back to the event
loop in batches, one cross-thread wake-up per batch.

To the scheduler a sync job is an :class:`InThread` body, an async callable that
queues the call and waits for its outcome.  A job waiting in the queue has not
started: it counts as pending (:meth:`InThread.started`), it is cancelled like a
pending one, and its ``timeout`` starts when a thread picks it up.

A job that raises a BaseException that is not an Exception (``sys.exit()``,
KeyboardInterrupt, a custom one) fails with it, as in :mod:`concurrent.futures`,
and the scheduler keeps running: the exception travels through the scheduler
inside a :class:`Raised`, so the event loop never sees it raised; the
scheduler's ``on_error`` sees the job's own exception (:func:`contained_on_error`).
"""

from __future__ import annotations

import contextlib
import contextvars
import inspect
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager
from queue import SimpleQueue
from typing import Any

from anyio import CancelScope, get_cancelled_exc_class

from ._handle import Handle, current_run, report_unobserved
from ._logs import core_log
from ._retry import Retry
from ._util import loop_soon_threadsafe
from ._virtual import VirtualTimeLoop, current_mock_clock, hold_autojump

__all__ = [
    "CancelWaiting",
    "GuardAsync",
    "GuardSync",
    "InThread",
    "JobThreads",
    "Raised",
    "contained",
    "contained_on_error",
    "unwrap",
]

# Work states: QUEUED -> RUNNING (a thread took it) -> DONE, or QUEUED -> ABANDONED.
QUEUED, RUNNING, DONE, ABANDONED = range(4)


class Raised(Exception):
    """Carries a job's BaseException (one that is not an Exception) as its outcome.

    The scheduler fails the job's handle with this; :func:`unwrap` gives back the
    original, which is what ``Job.result()`` raises.
    """

    def __init__(self, exc: BaseException) -> None:
        super().__init__(repr(exc))
        self.exc = exc


def unwrap(exc: BaseException) -> BaseException:
    """The job's own exception: ``exc``, or the BaseException a :class:`Raised` carries."""
    return exc.exc if isinstance(exc, Raised) else exc


class _ContainedRetry(Retry):
    """A Retry that judges a :class:`Raised` by the exception it carries."""

    __slots__ = ()

    def should_retry(self, attempt: int, exc: BaseException) -> bool:
        return Retry.should_retry(self, attempt, unwrap(exc))


def contained(retry: Retry | None) -> Retry | None:
    """``retry`` as the scheduler must see it for a job run by a ThreadedScheduler.

    So ``Retry()`` (``on=(Exception,)``) does not retry a job that called
    ``sys.exit()``, while ``Retry(on=(SystemExit,))`` does.
    """
    if retry is None or isinstance(retry, _ContainedRetry):
        return retry
    return _ContainedRetry(
        attempts=retry.attempts,
        backoff=retry.backoff,
        factor=retry.factor,
        max_backoff=retry.max_backoff,
        jitter=retry.jitter,
        on=retry.on,
    )


class GuardSync:
    """A sync job run inline on the loop: a BaseException leaves as a :class:`Raised`."""

    __slots__ = ("func",)

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func  # callable_name() looks through ``func`` for the job's name

    def __call__(self, *args: Any) -> Any:
        try:
            return self.func(*args)
        except Exception:
            raise
        except BaseException as exc:
            raise Raised(exc) from None


class GuardAsync:
    """An async job: a BaseException (other than cancellation) leaves as a :class:`Raised`."""

    __slots__ = ("func",)

    def __init__(self, func: Callable[..., Any]) -> None:
        self.func = func

    async def __call__(self, *args: Any) -> Any:
        try:
            result = self.func(*args)
            if inspect.isawaitable(result):
                result = await result
            return result
        except Exception:
            raise
        except BaseException as exc:
            # Cancellation belongs to the scheduler, and GeneratorExit to close().
            if isinstance(exc, get_cancelled_exc_class() | GeneratorExit | BaseExceptionGroup):
                raise
            raise Raised(exc) from None


class Work:
    """One run of a sync job, from the queue to its outcome."""

    __slots__ = (
        "args",
        "ctx",
        "exc",
        "func",
        "handle",
        "scope",
        "started",
        "state",
        "timeout",
        "value",
        "waiter",
    )

    def __init__(self, func: Callable[..., Any], args: tuple[Any, ...], timeout: float | None):
        self.func = func
        self.args = args
        self.timeout = timeout
        # The job's context (the one current_run() reads), for the thread.
        self.ctx: contextvars.Context | None = contextvars.copy_context()
        self.state = QUEUED
        self.value: Any = None
        self.exc: BaseException | None = None
        self.waiter: Any = None
        self.scope: CancelScope | None = None
        self.started = 0.0  # time.monotonic() when a thread took it
        self.handle: Handle[Any] = current_run().handle

    def abort(self, raise_cancel: object) -> Any:
        """trio: the job's body is cancelled while it waits (see JobThreads._wait)."""
        import trio

        self.waiter = None  # nothing to reschedule any more
        return trio.lowlevel.Abort.SUCCEEDED


class InThread:
    """A sync job's body as the scheduler sees it: queue the call, await the outcome.

    One per job (or per series); it remembers its latest run, so that the job
    reads as pending until a thread has picked that run up.
    """

    __slots__ = ("func", "threads", "timeout", "work")

    def __init__(self, threads: JobThreads, func: Callable[..., Any], timeout: float | None):
        self.threads = threads
        self.func = func  # callable_name() looks through ``func`` for the job's name
        self.timeout = timeout
        self.work: Work | None = None

    def started(self) -> bool:
        """Whether a thread has picked up the latest run."""
        w = self.work
        return w is not None and w.state != QUEUED and w.state != ABANDONED

    def abandoned(self) -> bool:
        """Whether the latest run was cancelled before a thread picked it up."""
        w = self.work
        return w is not None and w.state == ABANDONED

    def abandon(self) -> None:
        """Make sure no thread runs the latest run if none has picked it up yet."""
        w = self.work
        if w is not None and w.state == QUEUED:
            self.threads.abandon(w)

    async def __call__(self, *args: Any) -> Any:
        w = self.work = Work(self.func, args, self.timeout)
        return await self.threads.run(w)


class JobThreads:
    """At most ``max_threads`` worker threads, started on demand and kept.

    :meth:`bind` must be called on the event loop thread before the first job.
    """

    def __init__(self, max_threads: int, name: str = "duetime worker") -> None:
        self._max = max_threads
        self._name = name
        self._q: SimpleQueue[Work | None] = SimpleQueue()
        self._lock = threading.Lock()
        self._nthreads = 0
        self._idle = 0  # threads waiting on the queue (or about to)
        self._queued = 0  # put on the queue, not yet taken
        # Handed back by the threads, delivered on the loop in one batch.
        self._done: list[Work] = []
        self._started: list[Work] = []  # timed jobs a thread took: their clock starts
        self._wake_pending = False
        self._wake: Callable[[], object] | None = None
        self._asyncio = True
        self._loop: Any = None
        self._trio: Any = None  # trio.lowlevel, on trio
        self._clock: Callable[[], float] = time.monotonic
        # Jobs whose body waits on the loop (queued, or running in a thread).
        self._waiting: dict[Work, None] = {}
        self._virtual = False
        self._hold: AbstractContextManager[None] | None = None
        self._closed = False

    # ------------------------------------------------------------------ loop side

    def bind(self, clock: Callable[[], float]) -> None:
        """On the loop thread: learn how to wake it from a worker thread."""
        self._clock = clock
        import asyncio

        from anyio.lowlevel import current_token

        soon = loop_soon_threadsafe()
        self._wake = lambda: soon(self._deliver)
        if not isinstance(current_token().native_token, asyncio.AbstractEventLoop):
            import trio

            self._asyncio = False
            self._trio = trio.lowlevel
            self._virtual = current_mock_clock() is not None
        else:
            loop = self._loop = asyncio.get_running_loop()
            self._virtual = isinstance(loop, VirtualTimeLoop)

    async def run(self, w: Work) -> Any:
        """Run ``w`` in a worker thread and return its value (on the loop).

        :raises TimeoutError: if it ran longer than its timeout (the late result
            is discarded)
        :raises Raised: carrying a BaseException the job raised
        """
        waiting = self._waiting
        if not waiting and self._virtual:
            # Virtual time flows at the real rate while threads work, as it does
            # for anyio's worker threads: else a timeout would fire at once.
            self._hold = hold_autojump()
            self._hold.__enter__()
        waiting[w] = None
        with self._lock:
            self._queued += 1
            spawn = self._queued > self._idle and self._nthreads < self._max and not self._closed
            if spawn:
                self._nthreads += 1
                self._idle += 1  # counted now, so that a burst does not start one each
        if spawn:
            threading.Thread(
                target=self._work, name=f"{self._name} {self._nthreads}", daemon=True
            ).start()
        self._q.put(w)
        try:
            if w.timeout is None:
                await self._wait(w)
            else:
                # Without a deadline yet: it is set when a thread picks the job up.
                with CancelScope() as scope:
                    w.scope = scope
                    await self._wait(w)
                if scope.cancelled_caught:  # only the timeout cancels this scope
                    raise TimeoutError(f"{w.handle.name} timed out after {w.timeout} s")
        finally:
            del waiting[w]
            if not waiting and self._hold is not None:
                hold, self._hold = self._hold, None
                hold.__exit__(None, None, None)
            if w.state == QUEUED:
                self.abandon(w)  # cancelled before a thread took it
        exc = w.exc
        if exc is None:
            return w.value
        w.exc = None
        if isinstance(exc, Exception):
            raise exc
        raise Raised(exc)

    async def _wait(self, w: Work) -> None:
        """Wait, on the loop, until :meth:`_deliver` hands ``w`` back (cancellable)."""
        if self._asyncio:
            w.waiter = self._loop.create_future()
            await w.waiter
        else:
            # trio's own primitive: cheaper than an Event per job.
            lowlevel = self._trio
            w.waiter = lowlevel.current_task()
            await lowlevel.wait_task_rescheduled(w.abort)

    def _deliver(self) -> None:
        """On the loop: hand the threads' finished (and started) jobs to their waiters."""
        with self._lock:
            done, self._done = self._done, []
            started, self._started = self._started, []
            self._wake_pending = False
        if started:
            now = self._clock()
            mono = time.monotonic()
            for w in started:
                scope = w.scope
                if scope is not None and w.timeout is not None and w in self._waiting:
                    scope.deadline = now - (mono - w.started) + w.timeout
        if self._asyncio:
            for w in done:
                waiter = w.waiter
                if waiter is not None and not waiter.done():
                    waiter.set_result(None)
        else:
            reschedule = self._trio.reschedule
            for w in done:
                task = w.waiter
                if task is not None:
                    w.waiter = None
                    reschedule(task)

    def abandon(self, w: Work) -> None:
        """Take ``w`` back if no thread has picked it up (it will never run)."""
        with self._lock:
            if w.state == QUEUED:
                w.state = ABANDONED

    def cancel_waiting(self) -> None:
        """On the loop: cancel every job still waiting for a thread (for shutdown)."""
        for w in list(self._waiting):
            if w.state == QUEUED:
                w.handle.cancel()

    def close(self) -> None:
        """Let the threads exit once they are done (safe from any thread; idempotent)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            n = self._nthreads
        for _ in range(n):
            self._q.put(None)

    # ------------------------------------------------------------------ thread side

    def _work(self) -> None:
        q = self._q
        lock = self._lock
        while True:
            w = q.get()
            if w is None:
                return
            wake = False
            with lock:
                self._queued -= 1
                if w.state != QUEUED:
                    continue  # cancelled while queued
                self._idle -= 1
                w.state = RUNNING
                if w.timeout is not None:
                    w.started = time.monotonic()
                    self._started.append(w)
                    wake = not self._wake_pending
                    self._wake_pending = True
            if wake:
                self._post()
            ctx = w.ctx
            assert ctx is not None
            try:
                w.value = ctx.run(w.func, *w.args)
            except BaseException as exc:  # as concurrent.futures does
                w.exc = exc
            w.ctx = None
            with lock:
                w.state = DONE
                self._done.append(w)
                self._idle += 1
                wake = not self._wake_pending
                self._wake_pending = True
            if wake:
                self._post()

    def _post(self) -> None:
        wake = self._wake
        assert wake is not None
        # RuntimeError: the loop has stopped, and nobody waits for the outcome.
        with contextlib.suppress(RuntimeError):
            wake()


class CancelWaiting:
    """An exit hook: cancel the sync jobs still waiting for a worker thread."""

    __slots__ = ("_threads",)

    def __init__(self, threads: JobThreads) -> None:
        self._threads = threads

    def cancel(self) -> None:
        self._threads.cancel_waiting()


def contained_on_error(
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
            core_log.exception("on_error raised while reporting %r", handle)

    return report
