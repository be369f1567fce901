"""The worker side of a DurableRunner: the claim loop, lease renewal, running claims.

One claim loop and one renewal loop per process.  The claim loop sleeps until
the store's head, a wake-up hint from the store (``wait_changed``), an earlier
entry written by this process, or a freed slot: there is no polling per entry.
Each claim runs in one of up to ``concurrency`` reused runner tasks, with
``current_entry()`` set, and ends with one fenced finish, sent with the
finishes of the runs that end beside it as one ``finish_many``
(``_finisher.Finisher``).  Every lease the process holds is renewed in one
batched ``extend`` every lease/3; a run whose lease was taken over is cancelled and
never finishes the entry.  What a run does is in ``_running.RunSide``.

A sync task runs in a thread, which cannot be interrupted: its entry stays
leased (renewed) for as long as the thread runs, past a ``timeout=`` and past
the shutdown's grace, and nothing (no next attempt, no release) happens to the
entry before the thread returns.

Store errors in the loops are retried with a backoff of at most
:data:`MAX_BACKOFF` seconds, cut short when another call of this process gets
through; an outage is logged once when it starts and once when it ends
(``_log.StoreHealth``).  A :class:`~duetime.durable._store.StoreLost` is not
retried: the runner stops (see ``DurableRunner``).
"""

from __future__ import annotations

import math
from collections import deque
from functools import partial
from typing import Any

import anyio
import anyio.abc
from anyio import CancelScope, Event, get_cancelled_exc_class

from ._finisher import Finisher
from ._log import StoreHealth, worker_log
from ._registry import TaskRegistry
from ._running import SHIELD_CAP, RunSide, _Run
from ._store import (
    Claim,
    NextOccurrence,
    Outcome,
    Release,
    RetryAt,
    Store,
    StoreLost,
)

__all__ = ["MAX_BACKOFF", "MAX_CLAIM", "SAFETY_POLL", "SHIELD_CAP", "STOP_CAP", "WorkerSide"]

#: The longest the claim loop sleeps without a hint (a safety poll).
SAFETY_POLL = 10.0
#: At most this many entries per claim (DESIGN §10).
MAX_CLAIM = 100
#: Nap after an empty claim although the head said something was due.
_MIN_NAP = 0.01
#: Upper bound of the claim loop's backoff after store errors (seconds).
MAX_BACKOFF = 2.0
#: How long shutdown waits for a claim in flight before it abandons it (its rows
#: then wait out their lease: a store that hangs must not hang the exit).
STOP_CAP = 5.0


class WorkerSide(RunSide):
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
        if shield.cancelled_caught:  # shutdown gave it up: whatever it took lapses
            return 0
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
        except StoreLost as exc:  # the worker stops: one ERROR was logged by the store
            self._health.failed(exc, "run")
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
