"""Running one claimed entry: the task call, its outcome, and what is logged about it.

:class:`TaskCalls` is the part of the worker (``_worker.Worker``) that turns a
claim into an :class:`~duetime.durable.Outcome`: it resolves the task,
decodes the arguments, places a series' occurrence, calls the task (an async
one in the runner task, a sync one in a thread it waits for), and decides done,
retry, next occurrence, dead letter or aborted.  A sync task's thread cannot be
interrupted: the run waits for it, shielded, past ``timeout=`` and past the
shutdown's grace, so its entry stays leased and no next attempt starts while
it runs.  An aborted run (``_Run.abort``) ends :class:`~duetime.durable.Aborted`
whatever its task did: an async one is cancelled, a sync one sees
``current_entry().abort_requested`` and its return value is discarded.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import anyio
from anyio import CancelScope, CapacityLimiter, get_cancelled_exc_class, to_thread

from .._instrument import probes
from ._codec import PayloadError, decode_args, encode_result
from ._log import entry_fields, printable, short, worker_log
from ._registry import Running, TaskDef, TaskRegistry, _current
from ._series import Series, parse_schedule
from ._store import (
    MAX_TRACEBACK,
    Aborted,
    Claim,
    Dead,
    Done,
    Entry,
    NewRow,
    NextOccurrence,
    Outcome,
    Release,
    RetryAt,
    Store,
    StoreLost,
    utc,
)

__all__ = ["SHIELD_CAP", "TaskCalls"]

#: How long a shielded store call (a claim, a release, a finish) may take.
SHIELD_CAP = 30.0
_MAX_REASON = 2000
#: How long a run waits for the store's time before it estimates it (see TaskCalls._now).
_TIME_CAP = 2.0
#: The stored result of a task that returned None.
_NONE = encode_result(None)


class _Run(Running):
    """One claim this process holds: what renewal, abort and shutdown need, and
    what ``current_entry()`` reads while its task runs (:attr:`entry`)."""

    __slots__ = (
        "aborted",
        "claimed",
        "expires",
        "finishing",
        "key",
        "lease",
        "lost",
        "renew_at",
        "scope",
        "started",
        "streak",
        "task",
        "thread",
        "token",
        "value",
    )

    def __init__(self, claim: Claim, sent: float, now: float) -> None:
        self.key = claim.entry.key
        self.task = claim.entry.task
        self.token = claim.token
        self.lease = claim.lease
        self.claimed = now  # anyio time the claim came back
        self.expires = sent + claim.lease  # the lease ends by then at the latest
        self.renew_at = now + claim.lease / 3
        self.scope: CancelScope | None = None  # set while the task runs: cancels it
        self.streak: CancelScope | None = None  # the scope of the runner task running it
        self.started = False
        self.lost = False
        self.finishing = False  # its outcome is with the finisher: no task runs for it
        self.thread = False  # a thread runs this entry's task (it cannot be interrupted)
        self.value: Any = None  # what the task returned
        self.aborted = False  # an abort was requested: it ends Aborted
        self.entry = None  # while its task runs: what current_entry() gives

    def abort(self) -> None:
        """An abort of this run was requested: from now on ``current_entry()``
        says so, and a running async task is cancelled (a thread runs on)."""
        if self.aborted:
            return
        self.aborted = True
        if self.entry is not None:
            self.entry = replace(self.entry, abort_requested=True)
        if self.scope is not None and not self.thread:
            self.scope.cancel()


def _reason(exc: BaseException) -> str:
    text = f"{type(exc).__qualname__}: {exc}"
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def _timed_out(task: TaskDef, entry: Entry) -> TimeoutError:
    return TimeoutError(
        f"task {task.name!r} (entry {entry.key!r}, attempt {entry.attempt}) "
        f"timed out after {task.timeout:g} s"
    )


class TaskCalls:
    """Runs one claim's task and decides its outcome (a part of the worker).

    :param store: the store (its clock, and the occurrences ``overlap="allow"`` adds)
    :param registry: the tasks this worker runs
    :param concurrency: how many runs at once (the bound of the sync tasks' threads)
    :param on_error: ``on_error(entry, exc)`` for each final failure (None: logged)
    :param poke: wakes the claim loop (an occurrence this part added is due now)
    :param stopping: whether the worker is stopping (a run not started is released)
    """

    def __init__(
        self,
        store: Store,
        registry: TaskRegistry,
        *,
        concurrency: int,
        on_error: Callable[[Entry, BaseException], object] | None,
        poke: Callable[[], None],
        stopping: Callable[[], bool],
    ) -> None:
        self._store = store
        self._registry = registry
        self._concurrency = concurrency
        self._on_error = on_error
        self._poke = poke
        self._stopping = stopping
        # Sync tasks' threads: one per run, never waited for.
        self._threads: CapacityLimiter | None = None
        #: Set when a thread returns (whoever waits for that puts a fresh Event here).
        self.thread_ended: anyio.Event | None = None

    def _report(self, entry: Entry, exc: BaseException) -> None:
        """A dead letter: ``on_error``, or an ERROR with the traceback."""
        if self._on_error is None:
            worker_log.error(
                "durable task %r (entry %r, attempt %d) failed for good: %s",
                short(entry.task),
                short(entry.key),
                entry.attempt,
                printable(_reason(exc)),
                exc_info=(type(exc), exc, exc.__traceback__),
                extra=entry_fields(entry.key, entry.task, entry.attempt),
            )
            return
        try:
            self._on_error(entry, exc)
        except Exception:
            worker_log.exception(
                "on_error raised while reporting entry %r",
                short(entry.key),
                extra={"key": entry.key},
            )

    def _dead(self, entry: Entry, exc: BaseException, prefix: str) -> Dead:
        self._report(entry, exc)
        return _dead_outcome(prefix + str(exc), exc)

    async def _now(self, claim: Claim, run: _Run) -> float:
        """The store's time, shielded: a run that ended is recorded even when shutdown
        cancels its runner meanwhile (a thread's run, past the grace).

        When the store does not answer (an outage), the claim's store time plus
        what passed here since is used instead: the outcome still reaches the
        finisher, which retries it while the lease holds, so a short outage
        turns neither a failed attempt nor a series' occurrence into a re-run.
        """
        now: float | None = None
        try:
            with CancelScope(shield=True), anyio.fail_after(_TIME_CAP):
                now = await self._store.time()
        except StoreLost:
            raise
        except Exception:
            pass
        if now is None:
            now = claim.lease_until - claim.lease + (anyio.current_time() - run.claimed)
        return now

    async def execute(self, claim: Claim, run: _Run) -> Outcome | None:
        """Run ``claim``'s task; its outcome, or None when nothing is to be recorded
        (its lease was lost).  Cancellation (a lost lease, shutdown) propagates."""
        entry = claim.entry
        task = self._registry.get(entry.task)
        if task is None:
            msg = f"task {entry.task!r} is not registered in this worker's TaskRegistry"
            return self._dead(entry, LookupError(msg), "unknown task: ")
        # The store decoded the payload into entry.args with the same codec; () may
        # mean "undecodable", so only then decode again (to dead-letter it with why).
        args = entry.args
        if not args and claim.payload != "[]":
            try:
                args = decode_args(claim.payload)
            except PayloadError as exc:
                return self._dead(entry, exc, "bad payload: ")
        series: Series | None = None
        point = 0.0
        if entry.schedule is not None:
            try:
                series = parse_schedule(entry.schedule)
            except ValueError as exc:
                return self._dead(entry, exc, "bad schedule: ")
            claimed_at = claim.lease_until - claim.lease
            stands = series.stands_for(entry.due.timestamp(), claimed_at, entry.attempt > 1)
            if stands is None:  # misfire="skip"
                return _next(series.grid.after(claimed_at), None)
            point = stands
            if series.overlap == "allow":
                return await self._spawn_occurrence(claim, task, series, point)
        if self._stopping() or run.lost or run.aborted:
            return None if run.lost else Aborted() if run.aborted else Release()
        if series is not None and point != entry.due.timestamp():
            entry = replace(entry, due=utc(point))  # current_entry().due: the point it stands for
        started = anyio.current_time()
        error = await self._call(task, args, entry, run)
        if error is not None and probes.durable is not None:
            probes.durable.failed(error)
        if worker_log.isEnabledFor(logging.DEBUG):
            self._log_run(claim, entry, run, started, error)
        if run.lost:
            return None
        if run.aborted:  # caught its cancellation, or a thread that returned: discarded
            return Aborted()
        if error is None:
            if series is None:
                return _done(entry, run.value)
            return _next(series.next_due(point, await self._now(claim, run)), None)
        reason = _reason(error)
        now = await self._now(claim, run)
        if task.retry is not None and task.retry.should_retry(entry.attempt, error):
            pause = task.retry.pause(entry.attempt)
            worker_log.warning(
                "durable task %r (entry %r) attempt %d failed: %s; retrying in %.1f s",
                short(entry.task),
                short(entry.key),
                entry.attempt,
                printable(reason),
                pause,
                extra=entry_fields(entry.key, entry.task, entry.attempt),
            )
            return RetryAt(now + pause, reason)
        self._report(entry, error)
        if series is None:
            return _dead_outcome(reason, error)
        nxt = series.next_due(point, now)
        return NextOccurrence(nxt, reason) if nxt is not None else _dead_outcome(reason, error)

    @staticmethod
    def _log_run(
        claim: Claim, entry: Entry, run: _Run, started: float, error: BaseException | None
    ) -> None:
        """The DEBUG line of one run (only built when DEBUG is on: runs are hot)."""
        ended = anyio.current_time()
        # The claim's store time, plus what passed here before the task started.
        lateness = claim.lease_until - claim.lease + (started - run.claimed)
        lateness -= entry.due.timestamp()
        duration = ended - started
        worker_log.debug(
            "durable task %r (entry %r, attempt %d) ran %.3f s, %.3f s late: %s",
            short(entry.task),
            short(entry.key),
            entry.attempt,
            duration,
            lateness,
            "ok" if error is None else printable(_reason(error)),
            extra=entry_fields(
                entry.key, entry.task, entry.attempt, lateness=lateness, duration=duration
            ),
        )

    async def _spawn_occurrence(
        self, claim: Claim, task: TaskDef, series: Series, point: float
    ) -> Outcome:
        """overlap="allow": the occurrence becomes its own one-shot entry."""
        entry = claim.entry
        row = NewRow(
            key=f"{entry.key}@{entry.occurrence}",
            task=task.name,
            payload=claim.payload,
            due=point,
            lease=task.lease,
            max_deliveries=task.max_deliveries,
        )
        # "keep": a re-delivered series row does not add its occurrence twice.
        await self._store.add([row], on_conflict="keep")
        self._poke()  # it is due now; our own write need not wake wait_changed
        return _next(series.grid.after(point), None)

    async def _call(
        self, task: TaskDef, args: tuple[Any, ...], entry: Entry, run: _Run
    ) -> BaseException | None:
        """Run the task; return its exception (a :exc:`TimeoutError` naming the
        task, the entry and the limit when it ran past ``timeout=``), or None.  A
        cancellation of an async run (its runner's streak scope, through
        ``run.scope``) propagates; a sync run's thread is waited for."""
        run.entry = entry
        token = _current.set(run)
        run.scope = run.streak  # cancellable by renewal and shutdown only while it runs
        run.started = True
        try:
            if not task.is_async:
                return await self._call_in_thread(task, args, entry, run)
            if task.timeout is None:
                run.value = await task.func(*args)
                return None
            with anyio.move_on_after(task.timeout) as limit:
                run.value = await task.func(*args)
            return _timed_out(task, entry) if limit.cancelled_caught else None
        except get_cancelled_exc_class():
            raise
        except BaseException as exc:  # a task's error is an outcome
            return exc
        finally:
            run.scope = None
            run.entry = None
            _current.reset(token)

    async def _call_in_thread(
        self, task: TaskDef, args: tuple[Any, ...], entry: Entry, run: _Run
    ) -> BaseException | None:
        """Run a sync task in a thread and wait for it, shielded: a thread cannot be
        interrupted, so neither a timeout nor shutdown stops the wait, and the
        entry stays leased (the renewal loop renews it) until the thread returns.
        Past ``timeout=`` a WARNING names it, and its attempt counts as timed out
        whatever the thread returns then."""
        raised: list[BaseException] = []
        over: list[bool] = []

        def target() -> None:
            try:
                run.value = task.func(*args)
            except BaseException as exc:  # SystemExit too: an outcome, not a loop crash
                raised.append(exc)

        if self._threads is None:
            # Our own limiter, one thread per run: a run never waits for a thread
            # (a wait inside the shield would start the task after shutdown began).
            self._threads = CapacityLimiter(self._concurrency)
        run.thread = True
        try:
            with CancelScope(shield=True):
                if task.timeout is None:
                    await to_thread.run_sync(target, limiter=self._threads)
                else:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(self._overtime, task, entry, over)
                        await to_thread.run_sync(target, limiter=self._threads)
                        tg.cancel_scope.cancel()
        finally:
            run.thread = False
            if self.thread_ended is not None:
                self.thread_ended.set()
        if over:
            return _timed_out(task, entry)
        return raised[0] if raised else None

    @staticmethod
    async def _overtime(task: TaskDef, entry: Entry, over: list[bool]) -> None:
        assert task.timeout is not None
        await anyio.sleep(task.timeout)
        over.append(True)
        worker_log.warning(
            "durable task %r (entry %r, attempt %d) is past its timeout of %g s in a "
            "thread, which cannot be interrupted: the entry stays leased until it "
            "returns, then the attempt counts as timed out",
            task.name,
            short(entry.key),
            entry.attempt,
            task.timeout,
            extra=entry_fields(entry.key, task.name, entry.attempt),
        )


def _done(entry: Entry, value: Any) -> Done:
    """The Done of a one-shot run that returned ``value``: the value encoded, or,
    when the codec cannot carry it (or it is too large), no result and the reason
    (one WARNING: the run's side effects happened, so the entry still completes)."""
    if value is None:
        return Done(_NONE)
    try:
        return Done(encode_result(value))
    except (TypeError, ValueError) as exc:
        reason = str(exc)
    worker_log.warning(
        "durable task %r (entry %r) completed, but its return value is not kept: %s",
        entry.task,
        entry.key,
        printable(reason),
        extra=entry_fields(entry.key, entry.task, entry.attempt),
    )
    return Done(None, dropped=reason[:_MAX_REASON])


def _dead_outcome(reason: str, exc: BaseException) -> Dead:
    """The Dead of a final failure, describing ``exc`` (type name, traceback text)."""
    tb = "".join(traceback.format_exception(exc))
    if len(tb) > MAX_TRACEBACK:
        tb = "...\n" + tb[-(MAX_TRACEBACK - 4) :]
    return Dead(reason, error_type=_qualname(type(exc)), traceback=tb)


def _qualname(cls: type) -> str:
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def _next(due: float | None, error: str | None) -> Outcome:
    return Done() if due is None else NextOccurrence(due, error)
