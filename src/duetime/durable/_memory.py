"""MemoryStore: the durable store protocol in one process, on virtual time, for tests.

It keeps rows in a dict and the claimable ones in a heap keyed by when they
become claimable (the due time of a PENDING row, the lease end of a RUNNING
one), with lazy deletion through a per-row version.  Its clock follows the
event loop's clock (so on ``VirtualTimeLoop`` or trio's ``MockClock`` leases
lapse exactly when virtual time says), and :meth:`MemoryStore.crash` makes a
"dead" worker's leases lapse at once.  Its announcements (``wait_changed``,
``wait_finished``, ``wait_aborted``) wake waiters at once, with no poll.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import anyio
import anyio.lowlevel

from .._exceptions import EntryExists
from .._vocab import Status
from ._activity import ActivityRing
from ._codec import known_map
from ._fast import new_entry
from ._memory_stats import MemoryInspection
from ._row_text import check_new_rows
from ._store import (
    ABORTED,
    RESULT_DROPPED,
    Aborted,
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
    check_result_ttl,
    entry_args,
    utc,
)
from ._wakeup import Wakeup

__all__ = ["MemoryStore"]

#: 2024-01-01T00:00Z, the same default start as ``duetime.testing.VirtualWallClock``.
_DEFAULT_EPOCH = 1704067200.0


@dataclass(slots=True)
class _Row:
    key: str
    task: str
    payload: str
    status: Status
    due: float
    lease: float
    max_deliveries: int
    schedule: str | None
    attempt: int = 1
    deliveries: int = 0
    occurrence: int = 0
    last_error: str | None = None
    token: int = 0
    owner: str | None = None
    lease_until: float = math.inf
    expires_at: float = math.inf
    version: int = 0
    result: str | None = None
    result_until: float = math.inf
    error_type: str | None = None
    traceback: str | None = None
    abort_requested: bool = False

    def visible_at(self) -> float | None:
        if self.status is Status.PENDING:
            return self.due
        if self.status is Status.RUNNING:
            return self.lease_until
        return None

    def entry(self) -> Entry:
        """The entry as listings report it (no result or traceback)."""
        return new_entry(
            self.key, self.task, entry_args(self.payload), utc(self.due), self.status,
            self.attempt, self.last_error, self.occurrence, self.schedule, self.deliveries,
            self.abort_requested,
        )  # fmt: skip

    def full_entry(self, now: float) -> Entry:
        """The entry as :meth:`MemoryStore.get` reports it: with its result (while
        kept) and its failure's type and traceback."""
        kept = self.result if self.result_until > now else None
        return replace(
            self.entry(), result=kept, error_type=self.error_type, traceback=self.traceback
        )


class _LoopEpochClock:
    """Epoch seconds that advance with the event loop's clock (virtual or not)."""

    def __init__(self, start: float) -> None:
        self._start = start
        self._t0: float | None = None
        try:
            self._t0 = anyio.current_time()
        except Exception:  # not inside an event loop yet: anchor on the first reading
            self._t0 = None

    def __call__(self) -> float:
        now = anyio.current_time()
        if self._t0 is None:
            self._t0 = now
        return self._start + (now - self._t0)


class MemoryStore(MemoryInspection):
    """An in-process durable store on the event loop's (virtual) clock, for tests.

    It passes the same conformance suite as the persistent stores, so code
    tested against it behaves the same on SQLite or Redis.  Nothing survives
    the process; "several processes" are simulated with several ``owner``
    names and :meth:`crash`.

    :param lease: the default lease in seconds for rows that carry none
    :param dedupe_ttl: how long a completed key is kept as a tombstone
    :param result_ttl: how long a COMPLETED tombstone keeps its task's return
        value (default and at most ``dedupe_ttl``)
    :param clock: the store's clock: a callable returning UTC epoch seconds
        (or an aware datetime, e.g. a ``duetime.testing.VirtualWallClock``).
        By default it reads 2024-01-01T00:00Z when the store is created (or
        first used) and then advances with ``anyio.current_time()``.
    :raises ValueError: a lease, dedupe_ttl or result_ttl that is not a positive
        number, or a result_ttl over dedupe_ttl
    """

    def __init__(
        self,
        *,
        lease: float = 30.0,
        dedupe_ttl: float = 86400.0,
        result_ttl: float | None = None,
        clock: Callable[[], float] | Callable[[], datetime] | None = None,
    ) -> None:
        _positive("lease", lease)
        _positive("dedupe_ttl", dedupe_ttl)
        self.lease = float(lease)
        self.dedupe_ttl = float(dedupe_ttl)
        self.result_ttl = check_result_ttl(result_ttl, self.dedupe_ttl)
        self._clock: Callable[[], Any] = (
            clock if clock is not None else _LoopEpochClock(_DEFAULT_EPOCH)
        )
        self._rows: dict[str, _Row] = {}
        self._heap: list[tuple[float, int, str, int]] = []  # (visible_at, seq, key, version)
        self._expiry: list[tuple[float, int, str, int]] = []  # tombstones: (expires_at, ...)
        self._seq = 0
        self._tokens = 0
        self._changed = Wakeup()
        self._finished = Wakeup()
        self._activity = ActivityRing()  # per-minute claims and finishes (inspection)
        self._aborted = Wakeup()

    # -- context manager (nothing to open) ---------------------------------------

    async def __aenter__(self) -> MemoryStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    def __repr__(self) -> str:
        return f"<MemoryStore rows={len(self._rows)} lease={self.lease}>"

    # -- internals ----------------------------------------------------------------

    def _now(self) -> float:
        now = self._clock()
        return now.timestamp() if isinstance(now, datetime) else float(now)

    def _touch(self, row: _Row) -> None:
        """Record a change of ``row``: a new version, and a heap entry if claimable."""
        self._seq += 1
        row.version = self._seq
        vis = row.visible_at()
        if vis is not None:
            heapq.heappush(self._heap, (vis, self._seq, row.key, row.version))
        if row.expires_at != math.inf:
            heapq.heappush(self._expiry, (row.expires_at, self._seq, row.key, row.version))

    def _peek(self) -> tuple[float, _Row] | None:
        heap = self._heap
        while heap:
            vis, _, key, version = heap[0]
            row = self._rows.get(key)
            if row is not None and row.version == version:
                return vis, row
            heapq.heappop(heap)
        return None

    def _purge(self, now: float) -> None:
        """Delete tombstones older than dedupe_ttl (lazily, on the next write or read)."""
        exp = self._expiry
        while exp and exp[0][0] <= now:
            _, _, key, version = heapq.heappop(exp)
            row = self._rows.get(key)
            if row is not None and row.version == version:
                del self._rows[key]

    def _head_value(self) -> float | None:
        top = self._peek()
        return None if top is None else top[0]

    def _wake_if_earlier(self, before: float | None) -> None:
        after = self._head_value()
        moved = after is not None and (before is None or after < before)
        if moved:
            self._changed.notify()

    def _live(self, key: str, now: float) -> _Row | None:
        row = self._rows.get(key)
        if row is not None and row.expires_at <= now:
            del self._rows[key]
            return None
        return row

    # -- the Store protocol -----------------------------------------------------

    async def time(self) -> float:
        """The store's clock, in UTC epoch seconds."""
        await anyio.lowlevel.checkpoint()
        return self._now()

    async def add(self, rows: Sequence[NewRow], *, on_conflict: OnConflict = "keep") -> list[Entry]:
        """Insert rows, idempotent by key (see :meth:`duetime.durable.Store.add`).

        The batch is all or nothing: if any row raises, none is inserted.

        :raises EntryExists: ``on_conflict="error"`` and the key exists, or
            ``"replace"`` of a RUNNING entry
        :raises ValueError: an unknown ``on_conflict``, or a row whose text holds a
            lone surrogate
        :raises TypeError: a row that is not a NewRow
        """
        if on_conflict not in ("keep", "replace", "error"):
            raise ValueError(
                f"on_conflict must be 'keep', 'replace' or 'error', not {on_conflict!r}"
            )
        await anyio.lowlevel.checkpoint()
        now = self._now()
        self._purge(now)
        # Check the whole batch first so that an error inserts nothing.
        check_new_rows(rows)
        seen: set[str] = set()
        for new in rows:
            existing = new.key in seen or self._live(new.key, now) is not None
            if existing and on_conflict == "error":
                raise EntryExists(f"a durable entry with key {new.key!r} already exists")
            if on_conflict == "replace":
                row = self._rows.get(new.key)
                if row is not None and row.status is Status.RUNNING:
                    raise EntryExists(
                        f"durable entry {new.key!r} is running and cannot be replaced"
                    )
            seen.add(new.key)
        before = self._head_value()
        out: list[Entry] = []
        known = known_map()
        for new in rows:
            old = self._rows.get(new.key)
            if old is not None and on_conflict == "keep":
                out.append(old.entry())
                continue
            row = _Row(  # positional: key, task, payload, status, due, lease, md, schedule
                new.key,
                new.task,
                new.payload,
                Status.PENDING,
                new.due if new.due is not None else now + (new.delay or 0.0),
                new.lease if new.lease is not None else self.lease,
                new.max_deliveries,
                new.schedule,
            )
            self._rows[new.key] = row
            self._touch(row)
            args = known.get(new.payload) or entry_args(new.payload)  # what row.entry() gives
            out.append(
                new_entry(new.key, new.task, args, utc(row.due), Status.PENDING, 1, None, 0,
                          new.schedule, 0, False)
            )  # fmt: skip
        self._wake_if_earlier(before)
        return out

    async def cancel(self, key: str) -> bool:
        """Delete a PENDING or FAILED row; False if absent, RUNNING or finished."""
        await anyio.lowlevel.checkpoint()
        row = self._live(key, self._now())
        if row is None or row.status not in (Status.PENDING, Status.FAILED):
            return False
        del self._rows[key]
        self._finished.notify()
        return True

    async def abort(self, key: str) -> bool:
        """Cancel ``key``, interrupting its run: a PENDING or FAILED row is deleted;
        a RUNNING one gets an abort request, announced to :meth:`wait_aborted`
        (see :meth:`duetime.durable.Store.abort`).

        :return: True if deleted or its abort requested; False if absent or finished
        """
        await anyio.lowlevel.checkpoint()
        row = self._live(key, self._now())
        if row is None:
            return False
        if row.status is Status.RUNNING:
            row.abort_requested = True
            self._aborted.notify()
            return True
        if row.status not in (Status.PENDING, Status.FAILED):
            return False
        del self._rows[key]
        self._finished.notify()
        return True

    async def aborts(self, claims: Sequence[tuple[str, int]]) -> list[bool]:
        """For each ``(key, token)``, whether an abort of that RUNNING row was
        requested (False for a token that is no longer current)."""
        await anyio.lowlevel.checkpoint()
        out: list[bool] = []
        for key, token in claims:
            row = self._rows.get(key)
            out.append(
                row is not None
                and row.status is Status.RUNNING
                and row.token == token
                and row.abort_requested
            )
        return out

    async def get(self, key: str) -> Entry | None:
        """The entry stored under ``key`` (tombstones included), or None."""
        await anyio.lowlevel.checkpoint()
        now = self._now()
        row = self._live(key, now)
        return None if row is None else row.full_entry(now)

    async def entries(self, *, status: Status | None = None, limit: int = 1000) -> list[Entry]:
        """Entries by due time (then key), optionally only those with ``status``.

        :raises TypeError: a limit that is not an int
        :raises ValueError: a negative limit
        """
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"limit must be an int, not {type(limit).__name__}")
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        await anyio.lowlevel.checkpoint()
        self._purge(self._now())
        rows = [r for r in self._rows.values() if status is None or r.status is status]
        rows.sort(key=lambda r: (r.due, r.key))
        return [r.entry() for r in rows[:limit]]

    async def claim(self, owner: str, limit: int) -> list[Claim]:
        """Lease up to ``limit`` claimable rows, earliest first, each with a new token.

        A row whose claim would exceed its ``max_deliveries`` is dead-lettered
        (FAILED, "poison") instead.
        """
        if limit < 0:
            raise ValueError(f"claim limit must be >= 0, not {limit!r}")
        await anyio.lowlevel.checkpoint()
        return self._claim(owner, limit)

    def _claim(self, owner: str, limit: int) -> list[Claim]:
        now = self._now()
        out: list[Claim] = []
        while len(out) < limit:
            top = self._peek()
            if top is None or top[0] > now:
                break
            heapq.heappop(self._heap)
            row = top[1]
            row.owner = None
            if row.abort_requested:  # its worker died before it learnt of the abort
                self._end_aborted(row, ABORTED, now)
                self._touch(row)
                continue
            if row.deliveries >= row.max_deliveries:
                row.status = Status.FAILED
                row.last_error = _poison(row)
                self._touch(row)
                continue
            self._tokens += 1
            row.token = self._tokens
            row.owner = owner
            row.status = Status.RUNNING
            row.deliveries += 1
            row.lease_until = now + row.lease
            self._touch(row)
            out.append(Claim(row.entry(), row.payload, row.token, row.lease_until, row.lease))
        self._activity.claimed(now, [c.entry.due.timestamp() for c in out])
        return out

    async def extend(self, claims: Sequence[tuple[str, int]]) -> list[bool]:
        """Renew the leases of ``(key, token)`` pairs to now + each row's lease."""
        await anyio.lowlevel.checkpoint()
        now = self._now()
        out: list[bool] = []
        for key, token in claims:
            row = self._rows.get(key)
            ok = row is not None and row.status is Status.RUNNING and row.token == token
            if ok:
                assert row is not None
                row.lease_until = now + row.lease
                self._touch(row)
            out.append(ok)
        return out

    async def finish_many(self, items: Sequence[tuple[str, int, Outcome]]) -> list[bool]:
        """Apply each ``(key, token, outcome)`` whose token is still current, in one
        step; each item is fenced by its own token and gets its own result.

        :raises TypeError: an outcome that is not one of the outcome types
            (nothing is applied)
        """
        for _key, _token, outcome in items:
            _check_outcome(outcome)
        await anyio.lowlevel.checkpoint()
        done = [self._finish(key, token, outcome) for key, token, outcome in items]
        self._record_finishes(items, done)
        return done

    async def finish_and_claim(
        self, items: Sequence[tuple[str, int, Outcome]], owner: str, limit: int
    ) -> tuple[list[bool], list[Claim]]:
        """``finish_many(items)`` then ``claim(owner, limit)`` in one step.

        :raises TypeError: an outcome that is not one of the outcome types
        :raises ValueError: a negative limit (nothing is applied either way)
        """
        if limit < 0:
            raise ValueError(f"claim limit must be >= 0, not {limit!r}")
        for _key, _token, outcome in items:
            _check_outcome(outcome)
        await anyio.lowlevel.checkpoint()
        done = [self._finish(key, token, outcome) for key, token, outcome in items]
        self._record_finishes(items, done)
        return done, self._claim(owner, limit)

    def _finish(self, key: str, token: int, outcome: Outcome) -> bool:
        row = self._rows.get(key)
        if row is None or row.status is not Status.RUNNING or row.token != token:
            return False
        now = self._now()
        before = self._head_value()
        row.owner = None
        row.lease_until = math.inf
        aborted = row.abort_requested
        row.abort_requested = False  # only a RUNNING row carries a request
        if isinstance(outcome, Aborted):
            self._end_aborted(row, outcome.reason, now)
        elif aborted and not isinstance(outcome, Done):  # an aborted row never runs again
            self._end_aborted(row, ABORTED, now)
        elif isinstance(outcome, Done):
            row.status = Status.COMPLETED
            row.expires_at = now + self.dedupe_ttl
            row.result = outcome.result
            row.result_until = now + self.result_ttl
            if outcome.dropped is not None:
                row.last_error = RESULT_DROPPED + outcome.dropped
            self._finished.notify()
        elif isinstance(outcome, RetryAt):
            row.status = Status.PENDING
            row.due = outcome.at
            row.attempt += 1
            row.deliveries = 0
            row.last_error = outcome.error
        elif isinstance(outcome, NextOccurrence):
            row.status = Status.PENDING
            row.due = outcome.due
            row.occurrence += 1
            row.attempt = 1
            row.deliveries = 0
            row.last_error = outcome.error
        elif isinstance(outcome, Dead):
            row.status = Status.FAILED
            row.last_error = outcome.error
            row.error_type = outcome.error_type
            row.traceback = outcome.traceback
            self._finished.notify()
        else:  # Release: unrun, so this claim does not count as a delivery
            row.status = Status.PENDING
            row.deliveries = max(0, row.deliveries - 1)
        self._touch(row)
        self._wake_if_earlier(before)
        return True

    def _end_aborted(self, row: _Row, reason: str, now: float) -> None:
        """End ``row`` CANCELLED by an abort: a tombstone, a series stops."""
        row.status = Status.CANCELLED
        row.last_error = reason
        row.abort_requested = False
        row.owner = None
        row.lease_until = math.inf
        row.expires_at = now + self.dedupe_ttl
        self._finished.notify()

    async def retry(self, key: str) -> bool:
        """Make a FAILED row PENDING again, due now, attempt 1; False if not FAILED."""
        await anyio.lowlevel.checkpoint()
        row = self._rows.get(key)
        if row is None or row.status is not Status.FAILED:
            return False
        before = self._head_value()
        row.status = Status.PENDING
        row.due = self._now()
        row.attempt = 1
        row.deliveries = 0
        self._touch(row)
        self._wake_if_earlier(before)
        return True

    async def delete(self, key: str) -> bool:
        """Delete a row that is not RUNNING (tombstones and dead letters included)."""
        await anyio.lowlevel.checkpoint()
        row = self._live(key, self._now())
        if row is None or row.status is Status.RUNNING:
            return False
        del self._rows[key]
        self._finished.notify()
        return True

    async def head(self) -> float | None:
        """When the earliest row becomes claimable (due time or lease end), or None."""
        await anyio.lowlevel.checkpoint()
        return self._head_value()

    async def wait_changed(self, timeout: float) -> None:
        """Return when a write moved the head earlier, or after ``timeout`` seconds.

        A write that moved it since this task's previous call returned makes the
        call return at once (so a write between :meth:`head` and this call is
        not lost).
        """
        await self._changed.wait(timeout)

    async def wait_finished(self, timeout: float) -> None:
        """Return when a row finished, was cancelled or deleted (a finish since this
        task's previous call returned makes it return at once), or after ``timeout``."""
        await self._finished.wait(timeout)

    async def wait_aborted(self, timeout: float) -> None:
        """Return when an abort was requested (one since this task's previous call
        returned makes it return at once), or after ``timeout``."""
        await self._aborted.wait(timeout)

    # -- test helpers -------------------------------------------------------------

    def crash(self, owner: str) -> int:
        """Simulate the death of worker ``owner``: every lease it holds lapses now.

        The rows become claimable again at once (their tokens stay current
        until someone claims them, as in a real store).  Returns how many
        leases lapsed.
        """
        now = self._now()
        before = self._head_value()
        n = 0
        for row in list(self._rows.values()):
            if row.status is Status.RUNNING and row.owner == owner:
                row.owner = None
                row.lease_until = min(row.lease_until, now)
                self._touch(row)
                n += 1
        self._wake_if_earlier(before)
        return n


def _poison(row: _Row) -> str:
    return (
        f"poison: delivered {row.deliveries} times (max_deliveries={row.max_deliveries})"
        " without a fenced finish; its worker died or lost its lease each time"
    )


def _positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (0 < value < math.inf):
        raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")


def _check_outcome(outcome: object) -> None:
    if not isinstance(outcome, Done | RetryAt | NextOccurrence | Dead | Release | Aborted):
        raise TypeError(f"finish() takes an outcome (Done, RetryAt, ...), not {outcome!r}")
