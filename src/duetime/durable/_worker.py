"""The worker: the claim loop, lease renewal, running claims, finishes, shutdown.

One claim loop and one renewal loop per process.  The claim loop sleeps until
the store's head, a wake-up hint from the store (``wait_changed``), an earlier
entry written by this process, or a freed slot: there is no polling per entry.
Each claim runs in one of up to ``concurrency`` reused runner tasks, with
``current_entry()`` set, and ends with one fenced finish, sent with the
finishes of the runs that end beside it as one ``finish_many``
(``_finisher.Finisher``).  Every lease the process holds is renewed in one
batched ``extend`` every lease/3; a run whose lease was taken over is cancelled and
never finishes the entry.  What a run does is in ``_running.TaskCalls``.

One abort watcher per process, while it holds runs (idle, it waits on an
event and calls nothing): it waits in ``Store.wait_aborted`` (at most a third
of the shortest lease held, a safety poll), then asks ``Store.aborts`` about
every claim held, in one call, and aborts each run whose abort was requested:
an async task is cancelled, a sync task's ``current_entry().abort_requested``
turns True; the run ends :class:`~duetime.durable.Aborted` (CANCELLED, not
retried, not dead-lettered, one INFO line).

A sync task runs in a thread, which cannot be interrupted: its entry stays
leased (renewed) for as long as the thread runs, past a ``timeout=`` and past
the shutdown's grace, and nothing (no next attempt, no release) happens to the
entry before the thread returns.

Store errors in the loops are retried with a backoff of at most
:data:`MAX_BACKOFF` seconds, cut short when another call of this process gets
through; an outage is logged once when it starts and once when it ends
(``_log.StoreHealth``).  A :class:`~duetime.durable.StoreLost` is not
retried: the worker stops at once (:meth:`Worker.stop`).
"""

from __future__ import annotations

import math
import os
import socket
import uuid
from collections import deque
from collections.abc import Callable
from functools import partial

import anyio
import anyio.abc
from anyio import CancelScope, Event, get_cancelled_exc_class

from .._instrument import probes
from .._vocab import Status
from ._finisher import Finisher
from ._keys import check_key
from ._log import StoreHealth, short, worker_log
from ._registry import TaskRegistry
from ._running import SHIELD_CAP, TaskCalls, _Run
from ._store import (
    Aborted,
    Claim,
    Entry,
    NextOccurrence,
    Outcome,
    Release,
    RetryAt,
    Store,
    StoreLost,
)

__all__ = ["MAX_BACKOFF", "MAX_CLAIM", "SAFETY_POLL", "SHIELD_CAP", "STOP_CAP", "Worker"]

#: The longest the claim loop sleeps without a hint (a safety poll).
SAFETY_POLL = 10.0
#: At most this many entries per claim.
MAX_CLAIM = 100
#: Nap after an empty claim although the head said something was due.
_MIN_NAP = 0.01
#: Upper bound of the claim loop's backoff after store errors (seconds).
MAX_BACKOFF = 2.0
#: How long shutdown, after the grace, waits for a claim in flight and for each
#: outcome to be recorded before it gives them up (their rows then wait out
#: their lease: a store that hangs must not hang the exit).
STOP_CAP = 5.0


class Worker:
    """Runs the entries of a store: claims them, runs their tasks, keeps their
    leases, records their ends, and stops cleanly.

    It runs inside a task group it is given (:meth:`start`) and is stopped with
    :meth:`stop`; :class:`~duetime.durable.StoreSession` does both
    around the store it enters.

    :param store: the store (entered by whoever starts the worker)
    :param registry: the tasks this worker runs
    :param concurrency: how many durable tasks run at once in this process
    :param on_error: ``on_error(entry, exc)`` for each final failure of a task
        (retries exhausted, an unknown task, an undecodable payload); default:
        logged at ERROR on the ``duetime.durable`` logger
    :param owner: this worker's name in the store (default: host, pid, random)
    :raises TypeError: on an argument of the wrong type
    :raises ValueError: on an out-of-range value
    """

    def __init__(
        self,
        store: Store,
        registry: TaskRegistry,
        *,
        concurrency: int = 16,
        on_error: Callable[[Entry, BaseException], object] | None = None,
        owner: str | None = None,
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int):
            raise TypeError(f"concurrency must be an int, got {concurrency!r}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if on_error is not None and not callable(on_error):
            raise TypeError("on_error must be callable")
        #: This worker's name in the store (a claim's owner).
        self.owner = (
            check_key(owner, "owner")
            if owner is not None
            else f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        )
        self._store = store
        self._registry = registry
        self._concurrency = concurrency
        self._stopping = False
        self._tg: anyio.abc.TaskGroup | None = None
        self._runs: set[_Run] = set()
        self._idle: Event | None = None  # set when _runs becomes empty (shutdown waits)
        self._claim_done: Event | None = None
        # The claim loop: a poke wakes it; _wake_at is the store time it wakes
        # anyway (+inf while awake: any deferral pokes; -inf when every slot is busy).
        self._poked = False
        self._sleep_scope: CancelScope | None = None
        self._wake_at = math.inf
        self._renew_scope: CancelScope | None = None
        self._renew_at = math.inf
        self._abort_wake: Event | None = None  # set when runs appear: the abort watcher waits
        self._health = StoreHealth(self.poke, self._store_lost)
        self._lost: StoreLost | None = None
        self._finisher = Finisher(store, SHIELD_CAP, self._health, self)
        # Slots held for a claim riding with a group of finishes, and whether
        # the last claim came back full (more rows are likely due: worth
        # claiming with the next finishes).
        self._reserved = 0
        self._backlog = False
        self._calls = TaskCalls(
            store,
            registry,
            concurrency=concurrency,
            on_error=on_error,
            poke=self.poke,
            stopping=lambda: self._stopping,
        )
        self._claim_scope: CancelScope | None = None  # the shield of a claim in flight
        self._loop_scope: CancelScope | None = None  # the claim loop's (stop cuts its calls)
        self._queue: deque[tuple[Claim, _Run]] = deque()  # claimed, waiting for a runner task
        self._runners = 0  # runner tasks started
        self._idle_runners: list[Event] = []  # one per runner task waiting (set: wake it)
        self._waking = 0  # runner tasks kicked (woken or started) that have not run yet

    # -- starting and stopping ---------------------------------------------------------

    @property
    def concurrency(self) -> int:
        """How many durable tasks run at once in this process."""
        return self._concurrency

    @property
    def lost(self) -> StoreLost | None:
        """The StoreLost that stopped this worker, or None."""
        return self._lost

    def start(self, tg: anyio.abc.TaskGroup) -> None:
        """Start the claim loop, lease renewal and the finisher in ``tg``.

        A StoreLost from the store cancels ``tg`` (the block that runs beside
        the worker included): retrying cannot help, every call raises it again.
        """
        self._tg = tg
        self._claim_done = Event()
        self._loop_scope = CancelScope()
        if probes.durable is not None:
            probes.durable.worker_started(self._store, tg)
        tg.start_soon(self._claim_loop, name=f"duetime durable claim loop {self.owner}")
        tg.start_soon(self._renew_loop, name=f"duetime durable lease renewal {self.owner}")
        tg.start_soon(self._finisher.serve, name=f"duetime durable finishes {self.owner}")
        tg.start_soon(self._abort_loop, name=f"duetime durable abort watcher {self.owner}")

    def _store_lost(self, exc: StoreLost) -> None:
        """A store call raised StoreLost: stop now (the loops and runs are cancelled)."""
        if self._lost is not None:
            return
        self._lost = exc
        self._stopping = True
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    async def stop(self, grace: float | None) -> None:
        """Stop claiming, release what did not start, give running async tasks
        ``grace`` seconds (None: as long as they take; 0: none), then cancel them
        and release their leases; return when every run is recorded or given up.

        Not shielded while it waits out the grace (an outer cancellation cuts it
        short); the rest is.  The grace ends early once no task runs.  After
        it, a claim in flight and the outcomes not yet recorded get
        ``STOP_CAP`` seconds (a thread's outcome: from its return): a store
        call unanswered then is cut short; what is not recorded is given up,
        logged in one WARNING, and left to its lease.  A sync task's thread
        cannot be interrupted: this waits for it after the grace, renewing its
        lease meanwhile (a WARNING names it).  After a
        StoreLost nothing is released or finished.
        """
        self._stopping = True
        self.poke()
        try:
            if self._runs and grace != 0 and self._lost is None:
                with anyio.move_on_after(math.inf if grace is None else grace):
                    await self._wait_idle()
        finally:
            with CancelScope(shield=True):
                self._finisher.drain(STOP_CAP)
                # The loop's head, time and wait_changed calls: nothing to keep
                # (a claim in flight is shielded, and given STOP_CAP below).
                if self._loop_scope is not None:
                    self._loop_scope.cancel()
                for run in list(self._runs):
                    if run.thread:
                        worker_log.warning(
                            "durable task %r (entry %r) still runs in a thread, which "
                            "cannot be interrupted: exit waits for it, renewing its lease",
                            short(run.task),
                            short(run.key),
                            extra={"key": run.key, "task": run.task},
                        )
                    if run.scope is not None:
                        run.scope.cancel()
                if self._claim_done is not None:
                    with anyio.move_on_after(STOP_CAP):
                        await self._claim_done.wait()
                    if self._claim_scope is not None:
                        self._claim_scope.cancel()  # a store that hangs: give the claim up
                    with anyio.move_on_after(SHIELD_CAP):
                        await self._claim_done.wait()
                await self._wait_runs()
                self._finisher.report_left()

    async def _wait_idle(self) -> None:
        """Wait until no task runs (each run recorded, or its outcome queued)."""
        while any(not r.finishing for r in self._runs):
            self._idle = Event()
            await self._idle.wait()

    async def _wait_runs(self) -> None:
        """Wait for the runs left after cancelling: as long as a thread runs (its
        lease renewed meanwhile), then at most SHIELD_CAP for their finishes."""
        end = math.inf
        while self._runs and self._lost is None:  # a lost store records nothing
            self._idle = Event()
            if any(r.thread for r in self._runs):
                await self._idle.wait()
                continue
            if end == math.inf:
                end = anyio.current_time() + SHIELD_CAP
            with anyio.move_on_at(end) as limit:
                await self._idle.wait()
            if limit.cancelled_caught:
                return

    @property
    def threads_running(self) -> int:
        """How many sync tasks' threads run now (shutdown waits for them)."""
        return sum(1 for r in self._runs if r.thread)

    async def wait_threads(self) -> None:
        """Return once no sync task's thread runs."""
        while self.threads_running:
            self._calls.thread_ended = Event()
            await self._calls.thread_ended.wait()

    def notice(self, entries: list[Entry]) -> None:
        """Wake the claim loop if one of ``entries`` (just written by this process)
        is pending and due before the loop's next wake-up."""
        wake_at = self._wake_at
        if any(e.status is Status.PENDING and e.due.timestamp() < wake_at for e in entries):
            self.poke()

    # -- the claim loop ------------------------------------------------------------------

    def poke(self) -> None:
        """Wake the claim loop now (it claims, then reads the head again)."""
        self._poked = True
        if self._sleep_scope is not None:
            self._sleep_scope.cancel()

    async def _claim_loop(self) -> None:
        assert self._loop_scope is not None
        try:
            with self._loop_scope:
                await self._claims()
        finally:
            assert self._claim_done is not None
            self._claim_done.set()

    async def _claims(self) -> None:
        """The claim loop's body, until the worker stops."""
        backoff = 0.0
        health = self._health
        while not self._stopping:
            self._poked = False
            self._wake_at = math.inf
            use_store = True
            delay: float | None
            call = "claim"
            try:
                free = self._concurrency - len(self._runs) - self._reserved
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
        if shield.cancelled_caught:  # shutdown gave it up: whatever it took lapses
            return 0
        self._backlog = len(claims) == limit
        self._accept(claims, sent)
        return len(claims)

    def _accept(self, claims: list[Claim], sent: float) -> None:
        """Queue claims for the runner tasks (their leases counted from ``sent``)."""
        now = anyio.current_time()
        if claims and self._abort_wake is not None:
            self._abort_wake.set()
        for c in claims:
            run = _Run(c, sent, now)
            self._runs.add(run)
            if run.renew_at < self._renew_at and self._renew_scope is not None:
                self._renew_scope.cancel()
            self._queue.append((c, run))
        self._kick()

    # -- claims that ride with finishes (the finisher's Refill) ------------------------

    def room(self, finishing: int) -> int:
        """How many rows to claim with ``finishing`` finishes: the slots free once
        they are recorded, while the last claim came back full; reserved."""
        if self._stopping or not self._backlog or self._lost is not None:
            return 0
        free = self._concurrency - len(self._runs) + finishing - self._reserved
        n = max(0, min(free, MAX_CLAIM))
        self._reserved += n
        return n

    def took(self, claims: list[Claim], reserved: int, sent: float) -> None:
        """Queue what a claim that rode with finishes returned; free its
        reservation.  Shutting down, each is released unrun by its runner
        (a run not started then is), and shutdown waits for that."""
        self._reserved -= reserved
        self._backlog = len(claims) == reserved
        self._accept(claims, sent)

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
                        short(run.key),
                        extra={"key": run.key, "task": run.task},
                    )
                    if run.scope is not None:
                        run.scope.cancel()

    # -- abort requests ----------------------------------------------------------------

    async def _abort_loop(self) -> None:
        """The abort watcher: while this process holds runs, wait for an abort to be
        announced (or a third of the shortest lease held), then ask the store about
        every run held, in one call, and abort those whose abort was requested."""
        store = self._store
        # Ask without waiting first: at the start (the first wait sets this task's
        # mark, requests after it wake the next wait) and after a failed call (the
        # request that woke it may not have been read).
        at_once = True
        backoff = 0.0
        while True:
            if not self._runs:
                self._abort_wake = Event()
                await self._abort_wake.wait()
                self._abort_wake = None
                continue
            call = "wait_aborted"
            try:
                poll = 0.0 if at_once else min(SAFETY_POLL, min(r.lease for r in self._runs) / 3)
                await store.wait_aborted(poll)
                held = [r for r in self._runs if not (r.aborted or r.lost)]
                if held:
                    call = "aborts"
                    with anyio.fail_after(SHIELD_CAP):
                        flags = await store.aborts([(r.key, r.token) for r in held])
                    for run, flag in zip(held, flags, strict=False):
                        if flag:
                            run.abort()
                at_once = False
                backoff = 0.0
                self._health.ok()
            except Exception as exc:
                self._health.failed(exc, call)
                at_once = True
                backoff = min(max(backoff * 2, 0.1), MAX_BACKOFF)
                await anyio.sleep(backoff)

    # -- running one claim -------------------------------------------------------------

    async def _run_claim(self, claim: Claim, run: _Run) -> None:
        outcome: Outcome | None = None
        try:
            probe = probes.durable
            if probe is None:
                outcome = await self._calls.execute(claim, run)
            else:  # instrumented: a span, metrics
                outcome = await probe.process(self._calls.execute, claim, run)
        except get_cancelled_exc_class():
            outcome = Aborted() if run.aborted else Release()
            raise
        except StoreLost as exc:  # the worker stops: one ERROR was logged by the store
            self._health.failed(exc, "run")
        except Exception:  # a store error (or a bug) around the run: never kill the runner
            worker_log.exception(
                "durable entry %r: the runner failed around its run",
                short(run.key),
                extra={"key": run.key, "task": run.task},
            )
        finally:
            if isinstance(outcome, Aborted):
                worker_log.info(
                    "durable task %r (entry %r) aborted",
                    short(run.task),
                    short(run.key),
                    extra={"key": run.key, "task": run.task},
                )
            if outcome is not None and not run.lost:
                # Queued, not awaited (so no shield is needed when cancelled): the
                # finisher sends it with its neighbours, then calls _finished.
                run.renew_at = math.inf  # no more renewals: it is being finished
                run.finishing = True
                if self._idle is not None:  # the grace may wait for no more tasks
                    self._idle.set()
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
        if probes.durable is not None:
            probes.durable.finished(run.task, outcome, recorded, run.lost)
        if recorded:
            # Our own write may move the head earlier than the loop's wake-up
            # (a store need not report its own writes to wait_changed).
            due = outcome.at if isinstance(outcome, RetryAt) else None
            if isinstance(outcome, NextOccurrence):
                due = outcome.due
            if due is not None and due < self._wake_at:
                self.poke()
        full = len(self._runs) >= self._concurrency
        self._runs.discard(run)
        if full:
            self.poke()
        if self._idle is not None:  # shutdown waits: each end may be the one it waits for
            self._idle.set()
