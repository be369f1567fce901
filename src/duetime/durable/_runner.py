"""DurableRunner: defer registered tasks into a store, and (as a worker) run them.

The Scheduler owns one runner when it is given ``store=``: ``defer`` and friends
go through it, and with ``worker=True`` its claim loop runs stored entries.

The worker side is one claim loop and one lease-renewal loop per process.  The
claim loop sleeps until the store's head, a wake-up hint from the store
(``wait_changed``), an earlier entry deferred by this process, or a freed slot;
there is no polling per entry.  Each claim runs as its own task with
``current_entry()`` set, and ends with one fenced ``finish``.  All leases held
by the process are renewed together, in one batched ``extend`` every lease/3.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import anyio
import anyio.abc
from anyio import CancelScope, Event, get_cancelled_exc_class, to_thread

from .._exceptions import SchedulerClosed
from .._handle import Status
from .._options import check_aware, to_delay
from ._codec import PayloadError, decode_args, encode_args
from ._registry import TaskDef, TaskRegistry, _current
from ._series import MISFIRE, OVERLAP, Misfire, Overlap, Series, parse_schedule, trigger_grid
from ._store import (
    Claim,
    Dead,
    Done,
    Entry,
    NewRow,
    NextOccurrence,
    OnConflict,
    Outcome,
    Release,
    RetryAt,
    Store,
    utc,
)

__all__ = ["DurableRunner"]

logger = logging.getLogger("duetime.durable")

#: The longest the claim loop sleeps without a hint (a safety poll).
SAFETY_POLL = 10.0
#: At most this many entries per claim (DESIGN §10).
MAX_CLAIM = 100
#: Nap after an empty claim although the head said something was due.
_MIN_NAP = 0.01
#: Upper bound of the backoff after store errors in the loops.
_MAX_BACKOFF = 30.0
#: How long a shielded store call at shutdown (release, finish) may take.
_SHIELD_CAP = 30.0
_MAX_KEY = 512
_MAX_REASON = 2000
_ON_CONFLICT = ("keep", "replace", "error")


class _Run:
    """One claim this process holds: what renewal and shutdown need."""

    __slots__ = ("key", "lease", "lost", "renew_at", "scope", "started", "token")

    def __init__(self, claim: Claim, now: float) -> None:
        self.key = claim.entry.key
        self.token = claim.token
        self.lease = claim.lease
        self.renew_at = now + claim.lease / 3
        self.scope: CancelScope | None = None
        self.started = False
        self.lost = False


def _reason(exc: BaseException) -> str:
    text = f"{type(exc).__qualname__}: {exc}"
    return text if len(text) <= _MAX_REASON else text[: _MAX_REASON - 3] + "..."


def _check_key(key: object, what: str = "key") -> str:
    if not isinstance(key, str):
        raise TypeError(f"{what} must be a str, got {key!r}")
    if not key or len(key) > _MAX_KEY or not key.isprintable():
        raise ValueError(f"{what} must be 1 to {_MAX_KEY} printable characters, got {key!r}")
    return key


class DurableRunner:
    """Defers registered tasks into a store and, as a worker, runs them.

    Use it as ``async with DurableRunner(store, tasks, worker=True) as runner:``;
    entering it enters the store, leaving it leaves the store.

    :param store: the durable store (entered and left with the runner)
    :param registry: the tasks this process may defer and run
    :param worker: run stored entries (False: only defer, e.g. a web process)
    :param concurrency: how many durable tasks run at once in this process
    :param grace: how long leaving waits for running tasks before cancelling
        them and releasing their leases (None: as long as they take)
    :param on_error: ``on_error(entry, exc)`` for each final failure of a task
        (retries exhausted, an unknown task, an undecodable payload); default:
        logged at ERROR on the ``duetime.durable`` logger
    :param wall_clock: accepted for symmetry with the Scheduler; durable times
        are on the store's clock, so it is not consulted
    :param owner: this worker's name in the store (default: host, pid, random)
    :raises TypeError: on an argument of the wrong type
    :raises ValueError: on an out-of-range value
    """

    def __init__(
        self,
        store: Store,
        registry: TaskRegistry,
        *,
        worker: bool = True,
        concurrency: int = 16,
        grace: float | None = None,
        on_error: Callable[[Entry, BaseException], object] | None = None,
        wall_clock: Callable[[], datetime] | None = None,
        owner: str | None = None,
    ) -> None:
        if not isinstance(store, Store):
            raise TypeError(f"store must implement the duetime Store protocol, got {store!r}")
        if not isinstance(registry, TaskRegistry):
            raise TypeError(f"tasks must be a duetime.TaskRegistry, got {registry!r}")
        if isinstance(concurrency, bool) or not isinstance(concurrency, int):
            raise TypeError(f"concurrency must be an int, got {concurrency!r}")
        if concurrency < 1:
            raise ValueError(f"concurrency must be >= 1, got {concurrency}")
        if on_error is not None and not callable(on_error):
            raise TypeError("on_error must be callable")
        self._store = store
        self._registry = registry
        self._worker = bool(worker)
        self._concurrency = concurrency
        self._grace = None if grace is None else to_delay(grace, "grace")
        self._on_error = on_error
        self._wall_clock = wall_clock
        self.owner = (
            _check_key(owner, "owner")
            if owner is not None
            else f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        )
        self._open = False
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

    # -- lifecycle -------------------------------------------------------------------

    async def __aenter__(self) -> DurableRunner:
        if self._open or self._stopping:
            raise RuntimeError("a DurableRunner can be entered only once")
        await self._store.__aenter__()
        tg = anyio.create_task_group()
        try:
            await tg.__aenter__()
        except BaseException:
            await self._store.__aexit__(None, None, None)
            raise
        self._tg = tg
        self._open = True
        if self._worker:
            self._claim_done = Event()
            tg.start_soon(self._claim_loop, name=f"duetime durable claim loop {self.owner}")
            tg.start_soon(self._renew_loop, name=f"duetime durable lease renewal {self.owner}")
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        """Stop claiming, release what did not start, give running tasks ``grace``,
        then cancel them and release their leases; leave the store."""
        self._open = False
        self._stopping = True
        self._poke()
        try:
            if exc_type is None and self._runs and self._grace != 0:
                # Not shielded: an outer cancellation cuts the grace short.
                with anyio.move_on_after(math.inf if self._grace is None else self._grace):
                    await self._wait_idle()
        finally:
            with CancelScope(shield=True):
                with anyio.move_on_after(_SHIELD_CAP):
                    if self._claim_done is not None:
                        await self._claim_done.wait()
                for run in list(self._runs):
                    if run.scope is not None:
                        run.scope.cancel()
                with anyio.move_on_after(_SHIELD_CAP):
                    await self._wait_idle()
            # Only the two loops are left; the task group must exit outside the shield.
            tg = self._tg
            assert tg is not None
            tg.cancel_scope.cancel()
            try:
                await tg.__aexit__(None, None, None)
            finally:
                with CancelScope(shield=True), anyio.move_on_after(_SHIELD_CAP):
                    await self._store.__aexit__(exc_type, exc, tb)

    async def _wait_idle(self) -> None:
        while self._runs:
            self._idle = Event()
            await self._idle.wait()

    def _check_open(self) -> None:
        if not self._open:
            raise SchedulerClosed("the durable runner is not open (enter it with async with)")

    # -- producer API ------------------------------------------------------------------

    def _row(
        self,
        task: str | Callable[..., Any],
        args: Sequence[Any],
        delay: float | timedelta | None,
        at: datetime | None,
        key: str | None,
    ) -> NewRow:
        t = self._registry.resolve(task)
        if at is not None:
            if delay is not None:
                raise ValueError("pass delay= or at=, not both")
            if not isinstance(at, datetime):
                raise TypeError(f"at must be an aware datetime, got {at!r}")
            check_aware(at)
            due: float | None = at.timestamp()
            wait = None
        else:
            due = None
            wait = 0.0 if delay is None else to_delay(delay, "delay")
        return NewRow(
            key=uuid.uuid4().hex if key is None else _check_key(key),
            task=t.name,
            payload=encode_args(tuple(args)),
            due=due,
            delay=wait,
            lease=t.lease,
            max_deliveries=t.max_deliveries,
        )

    async def _add(self, rows: list[NewRow], on_conflict: OnConflict) -> list[Entry]:
        if on_conflict not in _ON_CONFLICT:
            raise ValueError(f"on_conflict must be one of {_ON_CONFLICT}, got {on_conflict!r}")
        self._check_open()
        entries = await self._store.add(rows, on_conflict=on_conflict)
        if self._worker and any(
            e.status is Status.PENDING and e.due.timestamp() < self._wake_at for e in entries
        ):
            self._poke()
        return entries

    async def defer(
        self,
        task: str | Callable[..., Any],
        /,
        *args: Any,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        key: str | None = None,
        on_conflict: OnConflict = "keep",
    ) -> Entry:
        """Store one entry of a registered task; it is safe in the store on return.

        :param task: the registered function, or its name
        :param args: positional arguments (JSON plus the tagged types)
        :param delay: seconds (or a timedelta) added to the store's clock
        :param at: an aware datetime (absolute; as good as this host's clock)
        :param key: the entry's key (default: a random one); an insert is
            idempotent by key
        :param on_conflict: ``"keep"`` returns an existing entry (finished ones
            included), ``"replace"`` replaces one that is not running,
            ``"error"`` raises :exc:`~duetime.EntryExists`
        :returns: the entry now stored under the key
        :raises LookupError: an unknown task name
        :raises TypeError: an unregistered function, or an argument the codec
            does not carry
        :raises ValueError: a naive ``at``, a negative delay, both ``delay`` and
            ``at``, an argument the codec refuses, a payload over 64 KiB
        :raises EntryExists: see ``on_conflict``
        :raises SchedulerClosed: if the runner is not open
        """
        row = self._row(task, args, delay, at, key)
        return (await self._add([row], on_conflict))[0]

    async def defer_many(
        self,
        task: str | Callable[..., Any],
        argsets: Iterable[Sequence[Any]],
        *,
        delay: float | timedelta | None = None,
        at: datetime | None = None,
        keys: Iterable[str | None] | None = None,
        on_conflict: OnConflict = "keep",
    ) -> list[Entry]:
        """Store many entries of one task in one store call.

        Every row is checked before anything is stored.

        :param argsets: one sequence of positional arguments per entry
        :param keys: one key (or None) per entry; default: random keys
        :raises ValueError: ``keys`` of another length, or a key given twice;
            otherwise as :meth:`defer`
        """
        sets = list(argsets)
        for args in sets:
            if isinstance(args, str | bytes) or not isinstance(args, Sequence):
                raise TypeError(f"each item of argsets must be a tuple or list, got {args!r}")
        key_list = [None] * len(sets) if keys is None else list(keys)
        if len(key_list) != len(sets):
            raise ValueError(f"got {len(key_list)} keys for {len(sets)} argument sets")
        rows = [self._row(task, a, delay, at, k) for a, k in zip(sets, key_list, strict=True)]
        if len({r.key for r in rows}) != len(rows):
            raise ValueError("defer_many got the same key twice")
        if not rows:
            self._check_open()
            return []
        return await self._add(rows, on_conflict)

    async def defer_every(
        self,
        trigger: float | timedelta | Any,
        task: str | Callable[..., Any],
        /,
        *args: Any,
        key: str,
        start: float | timedelta | datetime | None = None,
        misfire: Misfire = "coalesce",
        overlap: Overlap = "skip",
        on_conflict: OnConflict = "keep",
    ) -> Entry:
        """Store a recurring series: one row, on a drift-free grid.

        :param trigger: an interval (seconds or a timedelta; point ``k`` is due
            at ``start + k * interval``) or a ``duetime.Cron``
        :param key: the series' identity (required; idempotent by key)
        :param start: when the grid starts: a delay from the store's now, or an
            aware datetime (default: now; an interval's first point is ``start``,
            a cron trigger's is its first time at or after ``start``)
        :param misfire: a point claimed a whole interval or more late:
            ``"coalesce"`` runs once for the latest point, ``"skip"`` skips,
            ``"catch_up"`` runs every missed point, one after another
        :param overlap: points that come while an occurrence runs: ``"skip"``
            them, ``"wait"`` (the first runs next), or ``"allow"`` (each point
            becomes its own entry keyed ``"{key}@{occurrence}"``)
        :raises TypeError: a bad trigger or argument
        :raises ValueError: a bad policy, interval, start, or as :meth:`defer`
        """
        t = self._registry.resolve(task)
        _check_key(key)
        if misfire not in MISFIRE:
            raise ValueError(f"misfire must be one of {MISFIRE}, got {misfire!r}")
        if overlap not in OVERLAP:
            raise ValueError(f"overlap must be one of {OVERLAP}, got {overlap!r}")
        trigger_grid(trigger, 0.0)  # validate at the call site
        payload = encode_args(args)
        begin: float | None = None
        if isinstance(start, datetime):
            check_aware(start)
            begin = start.timestamp()
        elif start is not None:
            offset = to_delay(start, "start")
        self._check_open()
        if begin is None:
            begin = await self._store.time() + (0.0 if start is None else offset)
        grid = trigger_grid(trigger, begin)
        first = grid.first(begin)
        if first is None:
            raise ValueError(f"{trigger!r} has no time at or after {begin}")
        row = NewRow(
            key=key,
            task=t.name,
            payload=payload,
            due=first,
            lease=t.lease,
            max_deliveries=t.max_deliveries,
            schedule=Series(grid, misfire, overlap).dump(begin),
        )
        return (await self._add([row], on_conflict))[0]

    async def cancel_deferred(self, key: str) -> bool:
        """Delete a PENDING or FAILED entry (or series); False if absent, running or finished."""
        self._check_open()
        return await self._store.cancel(_check_key(key))

    async def deferred(self, key: str) -> Entry | None:
        """The entry stored under ``key`` (finished ones while kept), or None."""
        self._check_open()
        return await self._store.get(_check_key(key))

    async def entries(self, *, status: Status | None = None, limit: int = 1000) -> list[Entry]:
        """Stored entries by due time, optionally only those with ``status``."""
        self._check_open()
        return await self._store.entries(status=status, limit=limit)

    async def dead_letters(self, *, limit: int = 1000) -> list[Entry]:
        """FAILED entries (retries exhausted, unknown task, bad payload, poison)."""
        return await self.entries(status=Status.FAILED, limit=limit)

    async def retry_deferred(self, key: str) -> bool:
        """Make a FAILED entry PENDING again, due now, attempt 1; False if not FAILED."""
        self._check_open()
        ok = await self._store.retry(_check_key(key))
        if ok and self._worker:
            self._poke()
        return ok

    async def delete_deferred(self, key: str) -> bool:
        """Delete an entry that is not running (dead letters and finished ones too)."""
        self._check_open()
        return await self._store.delete(_check_key(key))

    # -- the claim loop ------------------------------------------------------------------

    def _poke(self) -> None:
        self._poked = True
        if self._sleep_scope is not None:
            self._sleep_scope.cancel()

    async def _claim_loop(self) -> None:
        backoff = 0.0
        try:
            while not self._stopping:
                self._poked = False
                self._wake_at = math.inf
                use_store = True
                delay: float | None
                try:
                    free = self._concurrency - len(self._runs)
                    if free <= 0:
                        delay = None  # a finishing task pokes
                    else:
                        limit = min(free, MAX_CLAIM)
                        n = await self._claim(limit)
                        if n == limit:
                            continue  # maybe more are due
                        head = await self._store.head()
                        now = await self._store.time()
                        delay = SAFETY_POLL if head is None else min(head - now, SAFETY_POLL)
                        if delay <= 0:
                            if n:
                                continue
                            delay = _MIN_NAP
                        self._wake_at = now + delay
                    backoff = 0.0
                except Exception:
                    backoff = min(max(backoff * 2, 0.1), _MAX_BACKOFF)
                    logger.exception("durable claim loop: store error; retrying in %.1f s", backoff)
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
        # Shielded: claimed rows must reach this process, to run or be released.
        with CancelScope(shield=True):
            with anyio.fail_after(_SHIELD_CAP):
                claims = await self._store.claim(self.owner, limit)
            if self._stopping:
                for c in claims:
                    await self._finish_safely(c.entry.key, c.token, Release())
                return len(claims)
        now = anyio.current_time()
        tg = self._tg
        assert tg is not None
        for c in claims:
            run = _Run(c, now)
            self._runs.add(run)
            if run.renew_at < self._renew_at and self._renew_scope is not None:
                self._renew_scope.cancel()
            tg.start_soon(self._run_claim, c, run, name=f"duetime durable {c.entry.key}")
        return len(claims)

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
            except Exception:
                logger.exception("durable claim loop: wait_changed failed")
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
                oks = await self._store.extend([(r.key, r.token) for r in batch])
            except Exception:
                logger.exception("durable lease renewal: store error; retrying")
                for r in batch:
                    r.renew_at = now + min(1.0, r.lease / 10)
                continue
            for run, ok in zip(batch, oks, strict=False):
                if ok:
                    run.renew_at = now + run.lease / 3
                elif not run.lost:
                    run.lost = True
                    logger.warning(
                        "durable entry %r: lease lost (another worker may hold it); "
                        "its run is cancelled and not finished here",
                        run.key,
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
            logger.exception("durable entry %r: the runner failed around its run", run.key)
        finally:
            if outcome is not None and not run.lost:
                with CancelScope(shield=True):
                    await self._finish_safely(run.key, run.token, outcome)
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
            if not self._runs and self._idle is not None:
                self._idle.set()

    async def _finish_safely(self, key: str, token: int, outcome: Outcome) -> None:
        """Finish with a few retries on store errors; a lost lease is only logged."""
        pause = 0.1
        for attempt in range(4):
            try:
                with anyio.fail_after(_SHIELD_CAP):
                    ok = await self._store.finish(key, token, outcome)
            except Exception:
                if attempt == 3:
                    logger.exception(
                        "durable entry %r: could not record %r; it is run again "
                        "when its lease lapses",
                        key,
                        outcome,
                    )
                    return
                await anyio.sleep(pause)
                pause *= 2
                continue
            if not ok:
                logger.warning(
                    "durable entry %r: lease lost before %s was recorded (another "
                    "worker holds it now)",
                    key,
                    type(outcome).__name__,
                )
            return

    def _report(self, entry: Entry, exc: BaseException) -> None:
        if self._on_error is None:
            logger.error(
                "durable task %r (entry %r, attempt %d) failed for good",
                entry.task,
                entry.key,
                entry.attempt,
                exc_info=(type(exc), exc, exc.__traceback__),
            )
            return
        try:
            self._on_error(entry, exc)
        except Exception:
            logger.exception("on_error raised while reporting entry %r", entry.key)

    def _dead(self, entry: Entry, exc: BaseException, prefix: str) -> Dead:
        self._report(entry, exc)
        return Dead(prefix + str(exc))

    async def _execute(self, claim: Claim, run: _Run) -> Outcome | None:
        entry = claim.entry
        task = self._registry.get(entry.task)
        if task is None:
            msg = f"task {entry.task!r} is not registered in this worker's TaskRegistry"
            return self._dead(entry, LookupError(msg), "unknown task: ")
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
        error = await self._call(task, args, entry, run)
        if run.lost:
            return None
        if isinstance(error, _Released):
            return Release()
        if error is None:
            if series is None:
                return Done()
            return _next(series.next_due(point, await self._store.time()), None)
        reason = _reason(error)
        now = await self._store.time()
        if task.retry is not None and task.retry.should_retry(entry.attempt, error):
            return RetryAt(now + task.retry.pause(entry.attempt), reason)
        self._report(entry, error)
        if series is None:
            return Dead(reason)
        nxt = series.next_due(point, now)
        return NextOccurrence(nxt, reason) if nxt is not None else Dead(reason)

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
    ) -> BaseException | _Released | None:
        """Run the task; return its exception, _RELEASED if we cancelled it, or None."""
        token = _current.set(entry)
        try:
            with CancelScope() as scope:
                run.scope = scope
                run.started = True
                try:
                    if task.timeout is None:
                        await self._invoke(task, args)
                    else:
                        with anyio.fail_after(task.timeout):
                            await self._invoke(task, args)
                except get_cancelled_exc_class():
                    raise
                except BaseException as exc:  # a task's error is an outcome
                    return exc
            if scope.cancelled_caught:
                return _RELEASED
            return None
        finally:
            run.scope = None
            _current.reset(token)

    @staticmethod
    async def _invoke(task: TaskDef, args: tuple[Any, ...]) -> None:
        if task.is_async:
            await task.func(*args)
        else:
            # abandon_on_cancel: a timeout or shutdown does not wait for the thread.
            await to_thread.run_sync(task.func, *args, abandon_on_cancel=True)


class _Released:
    """The run was cancelled by this runner (shutdown or a lost lease)."""


_RELEASED = _Released()


def _next(due: float | None, error: str | None) -> Outcome:
    return Done() if due is None else NextOccurrence(due, error)
