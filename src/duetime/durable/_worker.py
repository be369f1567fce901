"""The worker side of a DurableRunner: the claim loop, lease renewal, running claims.

One claim loop and one renewal loop per process.  The claim loop sleeps until
the store's head, a wake-up hint from the store (``wait_changed``), an earlier
entry written by this process, or a freed slot: there is no polling per entry.
Each claim runs in one of up to ``concurrency`` reused runner tasks, with
``current_entry()`` set, and ends with one fenced finish, sent with the
finishes of the runs that end beside it as one ``finish_many``
(``_finisher.Finisher``).  Every lease the process holds is renewed in one
batched ``extend`` every lease/3; a run whose lease was taken over is cancelled and
never finishes the entry.

A sync task runs in a thread, which cannot be interrupted: its entry stays
leased (renewed) for as long as the thread runs, past a ``timeout=`` and past
the shutdown's grace, and nothing (no next attempt, no release) happens to the
entry before the thread returns.

Store errors in the loops are retried with a backoff of at most
:data:`MAX_BACKOFF` seconds, cut short when another call of this process gets
through; an outage is logged once when it starts and once when it ends
(``_log.StoreHealth``).
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import replace
from functools import partial
from typing import Any

import anyio
import anyio.abc
from anyio import CancelScope, CapacityLimiter, Event, get_cancelled_exc_class, to_thread

from ._codec import PayloadError, decode_args
from ._finisher import Finisher
from ._log import StoreHealth, entry_fields, printable, worker_log
from ._registry import TaskDef, TaskRegistry, _current
from ._series import Series, parse_schedule
from ._store import (
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
    utc,
)

__all__ = ["MAX_BACKOFF", "MAX_CLAIM", "SAFETY_POLL", "WorkerSide"]

#: The longest the claim loop sleeps without a hint (a safety poll).
SAFETY_POLL = 10.0
#: At most this many entries per claim (DESIGN §10).
MAX_CLAIM = 100
#: Nap after an empty claim although the head said something was due.
_MIN_NAP = 0.01
#: Upper bound of the claim loop's backoff after store errors (seconds).
MAX_BACKOFF = 2.0
#: How long a shielded store call (a claim, a release, a finish) may take.
SHIELD_CAP = 30.0
#: How long shutdown waits for a claim in flight before it abandons it (its rows
#: then wait out their lease: a store that hangs must not hang the exit).
STOP_CAP = 5.0
_MAX_REASON = 2000


class _Run:
    """One claim this process holds: what renewal and shutdown need."""

    __slots__ = (
        "claimed",
        "expires",
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
        self.thread = False  # a thread runs this entry's task (it cannot be interrupted)


def _reason(exc: BaseException) -> str:
    text = f"{type(exc).__qualname__}: {exc}"
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def _timed_out(task: TaskDef, entry: Entry) -> TimeoutError:
    return TimeoutError(
        f"task {task.name!r} (entry {entry.key!r}, attempt {entry.attempt}) "
        f"timed out after {task.timeout:g} s"
    )


class WorkerSide:
    """The worker half of :class:`~duetime.durable._runner.DurableRunner` (a base class)."""

    owner: str
    _store: Store
    _registry: TaskRegistry
    _concurrency: int
    _on_error: Any
    _stopping: bool
    _tg: anyio.abc.TaskGroup | None
    _runs: set[_Run]
    _idle: Event | None
    _claim_done: Event | None
    _poked: bool
    _sleep_scope: CancelScope | None
    _wake_at: float
    _renew_scope: CancelScope | None
    _renew_at: float
    _finisher: Finisher
    _health: StoreHealth
    _threads: CapacityLimiter | None  # sync tasks' threads: one per run, never waited for
    _claim_scope: CancelScope | None  # the shield of a claim in flight
    _queue: deque[tuple[Claim, _Run]]  # claimed, waiting for a runner task
    _runners: int  # runner tasks started
    _idle_runners: list[Event]  # one per runner task waiting for work (set: wake it)
    _waking: int  # runner tasks kicked (woken or started) that have not run yet

    # -- the claim loop ------------------------------------------------------------------

    def _poke(self) -> None:
        self._poked = True
        if self._sleep_scope is not None:
            self._sleep_scope.cancel()

    async def _claim_loop(self) -> None:
        backoff = 0.0
        health = self._health
        try:
            while not self._stopping:
                self._poked = False
                self._wake_at = math.inf
                use_store = True
                delay: float | None
                call = "claim"
                try:
                    free = self._concurrency - len(self._runs)
                    if free <= 0:
                        delay = None  # a finishing task pokes
                    else:
                        limit = min(free, MAX_CLAIM)
                        n = await self._claim(limit)
                        if n == limit:
                            health.ok()
                            continue  # maybe more are due
                        call = "head"
                        head = await self._store.head()
                        call = "time"
                        now = await self._store.time()
                        delay = SAFETY_POLL if head is None else min(head - now, SAFETY_POLL)
                        if delay <= 0:
                            if n:
                                health.ok()
                                continue
                            delay = _MIN_NAP
                        self._wake_at = now + delay
                    backoff = 0.0
                    health.ok()
                except Exception as exc:
                    health.failed(exc, call)
                    # Capped low: a worker resumes within MAX_BACKOFF of the store's
                    # return even if nothing else wakes it (a poke does, and so does
                    # another call of this process getting through).
                    backoff = min(max(backoff * 2, 0.1), MAX_BACKOFF)
                    delay, use_store = backoff, False
                if self._poked or self._stopping:
                    continue
                if delay is None:
                    self._wake_at = -math.inf
                await self._sleep(delay, use_store)
        finally:
            assert self._claim_done is not None
            self._claim_done.set()

    async def _claim(self, limit: int) -> int:
        # Shielded: claimed rows must reach this process, to run or be released
        # (shutdown may still cut it, after STOP_CAP: the rows then lapse).
        sent = anyio.current_time()
        with CancelScope(shield=True) as shield:
            self._claim_scope = shield
            try:
                with anyio.fail_after(SHIELD_CAP):
                    claims = await self._store.claim(self.owner, limit)
            finally:
                self._claim_scope = None
            if self._stopping:
                if claims:
                    until = sent + min(c.lease for c in claims)
                    items = [(c.entry.key, c.token, Release()) for c in claims]
                    await self._finisher.finish_all(items, until)
                return len(claims)
        now = anyio.current_time()
        for c in claims:
            run = _Run(c, sent, now)
            self._runs.add(run)
            if run.renew_at < self._renew_at and self._renew_scope is not None:
                self._renew_scope.cancel()
            self._queue.append((c, run))
        self._kick()
        return len(claims)

    def _kick(self) -> None:
        """Make sure one more runner task looks at the queue, if it holds claims and
        none is on its way: wake an idle one, or start one (up to the concurrency).
        A runner kicks the next as it takes a claim, so runs that block fan out over
        more runners one by one, and runs that never block (no-op tasks) are all
        run by the first runner, without waking the others for nothing."""
        if self._waking or not self._queue:
            return
        if self._idle_runners:
            self._waking += 1
            self._idle_runners.pop().set()
        elif self._runners < self._concurrency:
            tg = self._tg
            assert tg is not None
            self._waking += 1
            self._runners += 1
            tg.start_soon(self._runner_task, name=f"duetime durable runner {self.owner}")

    async def _runner_task(self) -> None:
        """Run queued claims one after another; wait to be kicked when there are none."""
        queue = self._queue
        self._waking -= 1  # started by _kick
        while True:
            if queue:
                # One cancel scope for a streak of runs (a scope per run costs more
                # than a no-op task): cancelling a run (a lost lease, shutdown)
                # cancels the scope of its runner, which runs one claim at a time, and
                # ends the streak, so the next run starts in a fresh scope.
                with CancelScope() as streak:
                    while queue and not streak.cancel_called:
                        claim, run = queue.popleft()
                        self._kick()  # the next claim is not held up if this one blocks
                        run.streak = streak
                        await self._run_claim(claim, run)
                continue
            wake = Event()
            self._idle_runners.append(wake)
            await wake.wait()
            self._waking -= 1  # woken by _kick

    async def _sleep(self, delay: float | None, use_store: bool) -> None:
        with CancelScope() as scope:
            self._sleep_scope = scope
            try:
                if delay is None:
                    await anyio.sleep_forever()
                elif use_store:
                    await self._store.wait_changed(delay)
                else:
                    await anyio.sleep(delay)
            except Exception as exc:
                self._health.failed(exc, "wait_changed")
                await anyio.sleep(min(delay or SAFETY_POLL, 1.0))
            finally:
                self._sleep_scope = None

    # -- lease renewal -----------------------------------------------------------------

    async def _renew_loop(self) -> None:
        while True:
            nxt = min((r.renew_at for r in self._runs), default=math.inf)
            with CancelScope(deadline=nxt) as scope:
                self._renew_scope, self._renew_at = scope, nxt
                try:
                    await anyio.sleep_forever()
                finally:
                    self._renew_scope, self._renew_at = None, math.inf
            now = anyio.current_time()
            batch = [r for r in self._runs if r.renew_at <= now + r.lease / 6]
            if not batch:
                continue
            try:
                # A hung call must not outlast the leases it renews.
                with anyio.fail_after(min(r.lease for r in batch) / 3):
                    oks = await self._store.extend([(r.key, r.token) for r in batch])
            except Exception as exc:
                self._health.failed(exc, "extend")
                for r in batch:
                    r.renew_at = now + min(1.0, r.lease / 10)
                continue
            self._health.ok()
            for run, ok in zip(batch, oks, strict=False):
                if ok:
                    run.renew_at = now + run.lease / 3
                    run.expires = now + run.lease
                elif not run.lost:
                    run.lost = True
                    run.renew_at = math.inf  # its thread may run on: renew it no more
                    worker_log.warning(
                        "durable entry %r: lease lost (another worker may hold it); "
                        "its run is cancelled and not finished here",
                        run.key,
                        extra={"key": run.key, "task": run.task},
                    )
                    if run.scope is not None:
                        run.scope.cancel()

    # -- running one claim -------------------------------------------------------------

    async def _run_claim(self, claim: Claim, run: _Run) -> None:
        outcome: Outcome | None = None
        try:
            outcome = await self._execute(claim, run)
        except get_cancelled_exc_class():
            outcome = Release()
            raise
        except Exception:  # a store error (or a bug) around the run: never kill the runner
            worker_log.exception(
                "durable entry %r: the runner failed around its run",
                run.key,
                extra={"key": run.key, "task": run.task},
            )
        finally:
            if outcome is not None and not run.lost:
                # Queued, not awaited (so no shield is needed when cancelled): the
                # finisher sends it with its neighbours, then calls _finished.
                run.renew_at = math.inf  # no more renewals: it is being finished
                self._finisher.put(
                    run.key,
                    run.token,
                    outcome,
                    partial(self._finished, run, outcome),
                    run.expires,
                )
            else:
                self._finished(run, None, False)

    def _finished(self, run: _Run, outcome: Outcome | None, recorded: bool) -> None:
        """A run's end is recorded (or needs no record): free its slot."""
        if recorded:
            # Our own write may move the head earlier than the loop's wake-up
            # (a store need not report its own writes to wait_changed).
            due = outcome.at if isinstance(outcome, RetryAt) else None
            if isinstance(outcome, NextOccurrence):
                due = outcome.due
            if due is not None and due < self._wake_at:
                self._poke()
        full = len(self._runs) >= self._concurrency
        self._runs.discard(run)
        if full:
            self._poke()
        if self._idle is not None:  # shutdown waits: each end may be the one it waits for
            self._idle.set()

    def _report(self, entry: Entry, exc: BaseException) -> None:
        """A dead letter: ``on_error``, or an ERROR with the traceback."""
        if self._on_error is None:
            worker_log.error(
                "durable task %r (entry %r, attempt %d) failed for good: %s",
                entry.task,
                entry.key,
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
                "on_error raised while reporting entry %r", entry.key, extra={"key": entry.key}
            )

    def _dead(self, entry: Entry, exc: BaseException, prefix: str) -> Dead:
        self._report(entry, exc)
        return Dead(prefix + str(exc))

    async def _now(self) -> float:
        """The store's time, shielded: a run that ended is recorded even when shutdown
        cancels its runner meanwhile (a thread's run, past the grace)."""
        with CancelScope(shield=True), anyio.fail_after(SHIELD_CAP):
            now = await self._store.time()
        return now

    async def _execute(self, claim: Claim, run: _Run) -> Outcome | None:
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
        if self._stopping or run.lost:
            return None if run.lost else Release()
        if series is not None and point != entry.due.timestamp():
            entry = replace(entry, due=utc(point))  # current_entry().due: the point it stands for
        started = anyio.current_time()
        error = await self._call(task, args, entry, run)
        if worker_log.isEnabledFor(logging.DEBUG):
            self._log_run(claim, entry, run, started, error)
        if run.lost:
            return None
        if error is None:
            if series is None:
                return Done()
            return _next(series.next_due(point, await self._now()), None)
        reason = _reason(error)
        now = await self._now()
        if task.retry is not None and task.retry.should_retry(entry.attempt, error):
            pause = task.retry.pause(entry.attempt)
            worker_log.warning(
                "durable task %r (entry %r) attempt %d failed: %s; retrying in %.1f s",
                entry.task,
                entry.key,
                entry.attempt,
                printable(reason),
                pause,
                extra=entry_fields(entry.key, entry.task, entry.attempt),
            )
            return RetryAt(now + pause, reason)
        self._report(entry, error)
        if series is None:
            return Dead(reason)
        nxt = series.next_due(point, now)
        return NextOccurrence(nxt, reason) if nxt is not None else Dead(reason)

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
            entry.task,
            entry.key,
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
        token = _current.set(entry)
        run.scope = run.streak  # cancellable by renewal and shutdown only while it runs
        run.started = True
        try:
            if not task.is_async:
                return await self._call_in_thread(task, args, entry, run)
            if task.timeout is None:
                await task.func(*args)
                return None
            with anyio.move_on_after(task.timeout) as limit:
                await task.func(*args)
            return _timed_out(task, entry) if limit.cancelled_caught else None
        except get_cancelled_exc_class():
            raise
        except BaseException as exc:  # a task's error is an outcome
            return exc
        finally:
            run.scope = None
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
                task.func(*args)
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
            entry.key,
            entry.attempt,
            task.timeout,
            extra=entry_fields(entry.key, task.name, entry.attempt),
        )


def _next(due: float | None, error: str | None) -> Outcome:
    return Done() if due is None else NextOccurrence(due, error)
