"""ThreadedScheduler: the Scheduler's API for synchronous programs, safe from any thread.

The ``call_*`` front and lookups are here; starting, stopping and the batched
hand-over to the event loop are :class:`~._threaded_loop.LoopThread`, and the
durable methods :class:`~._threaded_deferring.ThreadedDeferring`, its bases.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeVar, TypeVarTuple, Unpack, overload

from ._cron import Cron
from ._exceptions import SchedulerClosed
from ._handle import Handle
from ._jobs import Job, RecurringJob
from ._options import make_extra
from ._recurring import Recurring
from ._retry import Retry
from ._scheduler import Scheduler
from ._threaded_deferring import ThreadedDeferring
from ._threads import contained, contained_on_error
from ._util import check_aware, to_delay
from ._vocab import Misfire, Overlap

if TYPE_CHECKING:
    from .durable import Store, TaskRegistry

__all__ = ["Job", "RecurringJob", "ThreadedScheduler"]  # Job/RecurringJob from _jobs

T = TypeVar("T")
PosArgsT = TypeVarTuple("PosArgsT")

# Finished jobs kept for get(id) beyond those the program still references.
_DEFAULT_KEEP_FINISHED = 10_000


class ThreadedScheduler(ThreadedDeferring):
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
    :param store: a durable store, as for :class:`Scheduler`: entered on the
        loop thread by :meth:`start` and left by :meth:`shutdown`; :meth:`defer`
        and its friends block the calling thread until it has answered
    :param tasks: as for :class:`Scheduler` (required with ``store``)
    :param worker: as for :class:`Scheduler`: with a store, also claim and run
        stored entries on the loop (False: only defer them)
    :raises ValueError: on an invalid argument value
    :raises TypeError: on an argument of the wrong type, or ``store`` without
        ``tasks`` (or the reverse)
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
        store: Store | None = None,
        tasks: TaskRegistry | None = None,
        worker: bool = True,
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
        scheduler = Scheduler(
            max_concurrency=max_concurrency,
            on_exit=on_exit,
            grace=grace,
            sync_in_thread=sync_in_thread,
            on_error=contained_on_error(on_error),
            wall_clock=wall_clock,
            slow_callback_duration=slow_callback_duration,
            store=store,
            tasks=tasks,
            worker=worker,
        )
        self._durable = store is not None
        super().__init__(
            scheduler,
            backend=backend,
            backend_options=backend_options,
            max_threads=max_threads,
            keep_finished=keep_finished,
            on_exit=on_exit,
        )

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
