"""A store written outside duetime, against its public front only.

DictStore keeps its rows in a dict and scans them (no index): a small, plain
implementation of :class:`duetime.durable.Store` of the kind a third party
would write first, to check that the protocol, the guide and the conformance
suite are enough to write a store.  It imports nothing private of duetime.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import anyio
import anyio.lowlevel

from duetime import EntryExists, Status
from duetime.durable import (
    ABORTED,
    RESULT_DROPPED,
    Aborted,
    Claim,
    Counts,
    Dead,
    Done,
    Entry,
    EntryDetail,
    EntryQuery,
    Minute,
    NewRow,
    NextOccurrence,
    OnConflict,
    Outcome,
    Page,
    Release,
    RetryAt,
    entry_args,
    utc,
)

__all__ = ["DictStore"]


@dataclass
class _Row:
    key: str
    task: str
    payload: str
    due: float
    lease: float
    max_deliveries: int
    schedule: str | None
    status: Status = Status.PENDING
    attempt: int = 1
    deliveries: int = 0
    occurrence: int = 0
    last_error: str | None = None
    token: int = 0
    lease_until: float = math.inf
    owner: str | None = None
    expires: float = math.inf  # a tombstone's end
    result: str | None = None
    result_until: float = math.inf
    error_type: str | None = None
    traceback: str | None = None
    abort_requested: bool = False  # only while RUNNING

    def claimable_at(self) -> float | None:
        if self.status is Status.PENDING:
            return self.due
        if self.status is Status.RUNNING:
            return self.lease_until
        return None

    def entry(self) -> Entry:
        return Entry(
            key=self.key,
            task=self.task,
            args=entry_args(self.payload),
            due=utc(self.due),
            status=self.status,
            attempt=self.attempt,
            last_error=self.last_error,
            occurrence=self.occurrence,
            schedule=self.schedule,
            deliveries=self.deliveries,
            abort_requested=self.abort_requested,
        )


class DictStore:
    """Rows in a dict, on a clock of the caller's choice (default: ``time.time``).

    :param lease: the default lease in seconds
    :param dedupe_ttl: how long a finished key is kept as a tombstone
    :param result_ttl: how long a COMPLETED tombstone keeps its result (default
        and at most ``dedupe_ttl``)
    :param clock: the store's clock, UTC epoch seconds
    """

    def __init__(
        self,
        *,
        lease: float = 30.0,
        dedupe_ttl: float = 86400.0,
        result_ttl: float | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.lease = float(lease)
        self.dedupe_ttl = float(dedupe_ttl)
        if result_ttl is not None and not 0 < result_ttl <= dedupe_ttl:
            raise ValueError("result_ttl must be positive and at most dedupe_ttl")
        self.result_ttl = self.dedupe_ttl if result_ttl is None else float(result_ttl)
        # wait_finished: the same, for finishes (a count, per task the count seen)
        self._finishes = 0
        self._finish_seen: dict[int, int] = {}
        self._finished = anyio.Event()
        # wait_aborted: the same, for abort requests
        self._aborts = 0
        self._abort_seen: dict[int, int] = {}
        self._aborted = anyio.Event()
        self._clock = clock
        self._rows: dict[str, _Row] = {}
        self._tokens = 0
        # wait_changed: a counter of head moves, the count each task saw last, and
        # an event the next move sets.
        self._moves = 0
        self._seen: dict[int, int] = {}
        self._moved = anyio.Event()
        # activity: minute number -> [started, completed, failed, retried, late total, late max]
        self._minutes: dict[int, list[float]] = {}

    async def __aenter__(self) -> DictStore:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        return None

    # -- helpers ------------------------------------------------------------------

    def _live(self, key: str, now: float) -> _Row | None:
        row = self._rows.get(key)
        if row is not None and row.expires <= now:
            del self._rows[key]  # a tombstone past dedupe_ttl
            return None
        return row

    def _purge(self, now: float) -> None:
        for key in [k for k, r in self._rows.items() if r.expires <= now]:
            del self._rows[key]

    def _head(self) -> float | None:
        times = [t for r in self._rows.values() if (t := r.claimable_at()) is not None]
        return min(times, default=None)

    def _ended(self) -> None:
        self._finishes += 1
        self._finished.set()
        self._finished = anyio.Event()

    def _moved_if_earlier(self, before: float | None) -> None:
        after = self._head()
        if after is not None and (before is None or after < before):
            self._moves += 1
            self._moved.set()
            self._moved = anyio.Event()

    # -- the protocol -----------------------------------------------------------

    async def time(self) -> float:
        await anyio.lowlevel.checkpoint()
        return self._clock()

    async def add(self, rows: Sequence[NewRow], *, on_conflict: OnConflict = "keep") -> list[Entry]:
        if on_conflict not in ("keep", "replace", "error"):
            raise ValueError(f"bad on_conflict {on_conflict!r}")
        await anyio.lowlevel.checkpoint()
        now = self._clock()
        self._purge(now)
        seen: set[str] = set()
        for new in rows:  # every check first: a batch is all or nothing
            if not isinstance(new, NewRow):
                raise TypeError(f"add() takes NewRow values, not {new!r}")
            old = self._rows.get(new.key)
            if on_conflict == "error" and (new.key in seen or old is not None):
                raise EntryExists(f"key {new.key!r} exists")
            if on_conflict == "replace" and old is not None and old.status is Status.RUNNING:
                raise EntryExists(f"key {new.key!r} is running")
            seen.add(new.key)
        before = self._head()
        out = []
        for new in rows:
            old = self._rows.get(new.key)
            if old is not None and on_conflict == "keep":
                out.append(old.entry())
                continue
            row = _Row(
                key=new.key,
                task=new.task,
                payload=new.payload,
                due=new.due if new.due is not None else now + (new.delay or 0.0),
                lease=new.lease if new.lease is not None else self.lease,
                max_deliveries=new.max_deliveries,
                schedule=new.schedule,
            )
            self._rows[new.key] = row
            out.append(row.entry())
        self._moved_if_earlier(before)
        return out

    async def cancel(self, key: str) -> bool:
        await anyio.lowlevel.checkpoint()
        row = self._live(key, self._clock())
        if row is None or row.status not in (Status.PENDING, Status.FAILED):
            return False
        del self._rows[key]
        self._ended()
        return True

    async def abort(self, key: str) -> bool:
        await anyio.lowlevel.checkpoint()
        row = self._live(key, self._clock())
        if row is None:
            return False
        if row.status is Status.RUNNING:
            row.abort_requested = True
            self._aborts += 1
            self._aborted.set()
            self._aborted = anyio.Event()
            return True
        if row.status not in (Status.PENDING, Status.FAILED):
            return False
        del self._rows[key]
        self._ended()
        return True

    async def aborts(self, claims: Sequence[tuple[str, int]]) -> list[bool]:
        await anyio.lowlevel.checkpoint()
        out = []
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
        await anyio.lowlevel.checkpoint()
        now = self._clock()
        row = self._live(key, now)
        if row is None:
            return None
        return replace(
            row.entry(),
            result=row.result if row.result_until > now else None,
            error_type=row.error_type,
            traceback=row.traceback,
        )

    async def entries(self, *, status: Status | None = None, limit: int = 1000) -> list[Entry]:
        if isinstance(limit, bool) or not isinstance(limit, int):
            raise TypeError(f"limit must be an int, not {limit!r}")
        if limit < 0:
            raise ValueError(f"limit must be >= 0, not {limit}")
        await anyio.lowlevel.checkpoint()
        self._purge(self._clock())
        rows = sorted(
            (r for r in self._rows.values() if status is None or r.status is status),
            key=lambda r: (r.due, r.key),
        )
        return [r.entry() for r in rows[:limit]]

    async def claim(self, owner: str, limit: int) -> list[Claim]:
        if limit < 0:
            raise ValueError(f"claim limit must be >= 0, not {limit}")
        await anyio.lowlevel.checkpoint()
        now = self._clock()
        due = sorted(
            (t, r.key)
            for r in self._rows.values()
            if (t := r.claimable_at()) is not None and t <= now
        )
        out: list[Claim] = []
        for _t, key in due:
            if len(out) >= limit:
                break
            row = self._rows[key]
            if row.abort_requested:  # aborted, and its worker is gone: it ends here
                self._cancelled(row, ABORTED, now)
                self._ended()
                continue
            if row.deliveries >= row.max_deliveries:  # poison: dead-letter, do not deliver
                row.status = Status.FAILED
                row.lease_until = math.inf
                row.last_error = f"poison: delivered {row.deliveries} times"
                continue
            self._tokens += 1
            row.token = self._tokens
            row.status = Status.RUNNING
            row.deliveries += 1
            row.lease_until = now + row.lease
            row.owner = owner
            out.append(Claim(row.entry(), row.payload, row.token, row.lease_until, row.lease))
        self._count_claims(now, [c.entry.due.timestamp() for c in out])
        return out

    async def extend(self, claims: Sequence[tuple[str, int]]) -> list[bool]:
        await anyio.lowlevel.checkpoint()
        now = self._clock()
        out = []
        for key, token in claims:
            row = self._rows.get(key)
            ok = row is not None and row.status is Status.RUNNING and row.token == token
            if row is not None and ok:
                row.lease_until = now + row.lease
            out.append(ok)
        return out

    async def finish_many(self, items: Sequence[tuple[str, int, Outcome]]) -> list[bool]:
        for _key, _token, outcome in items:  # a bad outcome applies nothing
            if not isinstance(outcome, Done | RetryAt | NextOccurrence | Dead | Release | Aborted):
                raise TypeError(f"not an outcome: {outcome!r}")
        await anyio.lowlevel.checkpoint()
        now = self._clock()
        before = self._head()
        out = [self._finish(key, token, outcome, now) for key, token, outcome in items]
        self._count_finishes(now, items, out)
        self._moved_if_earlier(before)
        if any(ok for ok in out):
            self._ended()  # spurious wake-ups are harmless; a missed one is not
        return out

    def _finish(self, key: str, token: int, outcome: Outcome, now: float) -> bool:
        row = self._rows.get(key)
        if row is None or row.status is not Status.RUNNING or row.token != token:
            return False  # fenced: another claim, or no claim, holds the row
        row.lease_until = math.inf
        aborted, row.abort_requested = row.abort_requested, False
        if isinstance(outcome, Aborted):
            self._cancelled(row, outcome.reason, now)
        elif aborted and not isinstance(outcome, Done):  # an aborted row never runs again
            self._cancelled(row, ABORTED, now)
        elif isinstance(outcome, Done):
            row.status = Status.COMPLETED
            row.expires = now + self.dedupe_ttl
            row.result, row.result_until = outcome.result, now + self.result_ttl
            if outcome.dropped is not None:
                row.last_error = RESULT_DROPPED + outcome.dropped
        elif isinstance(outcome, RetryAt):
            row.status, row.due, row.last_error = Status.PENDING, outcome.at, outcome.error
            row.attempt += 1
            row.deliveries = 0
        elif isinstance(outcome, NextOccurrence):
            row.status, row.due, row.last_error = Status.PENDING, outcome.due, outcome.error
            row.occurrence += 1
            row.attempt = 1
            row.deliveries = 0
        elif isinstance(outcome, Dead):
            row.status, row.last_error = Status.FAILED, outcome.error
            row.error_type, row.traceback = outcome.error_type, outcome.traceback
        else:  # Release: this claim does not count
            row.status = Status.PENDING
            row.deliveries = max(0, row.deliveries - 1)
        return True

    def _cancelled(self, row: _Row, reason: str, now: float) -> None:
        row.status, row.last_error, row.abort_requested = Status.CANCELLED, reason, False
        row.lease_until = math.inf
        row.expires = now + self.dedupe_ttl

    async def retry(self, key: str) -> bool:
        await anyio.lowlevel.checkpoint()
        row = self._rows.get(key)
        if row is None or row.status is not Status.FAILED:
            return False
        before = self._head()
        row.status, row.due, row.attempt, row.deliveries = Status.PENDING, self._clock(), 1, 0
        self._moved_if_earlier(before)
        return True

    async def delete(self, key: str) -> bool:
        await anyio.lowlevel.checkpoint()
        row = self._live(key, self._clock())
        if row is None or row.status is Status.RUNNING:
            return False
        del self._rows[key]
        self._ended()
        return True

    async def head(self) -> float | None:
        await anyio.lowlevel.checkpoint()
        return self._head()

    async def wait_changed(self, timeout: float) -> None:
        task = anyio.get_current_task().id
        last = self._seen.get(task)
        try:
            if last is not None and last != self._moves:
                await anyio.lowlevel.checkpoint()  # moved since this task's last wait
                return
            with anyio.move_on_after(timeout):
                await self._moved.wait()
        finally:
            self._seen[task] = self._moves

    async def wait_finished(self, timeout: float) -> None:
        task = anyio.get_current_task().id
        last = self._finish_seen.get(task)
        try:
            if last is not None and last != self._finishes:
                await anyio.lowlevel.checkpoint()  # a finish since this task's last wait
                return
            with anyio.move_on_after(timeout):
                await self._finished.wait()
        finally:
            self._finish_seen[task] = self._finishes

    # -- inspection ---------------------------------------------------------------

    async def counts(self) -> Counts:
        await anyio.lowlevel.checkpoint()
        self._purge(self._clock())
        return Counts.of((r.task, r.status, 1) for r in self._rows.values())

    async def page(self, query: EntryQuery) -> Page:
        if not isinstance(query, EntryQuery):
            raise TypeError(f"page() takes an EntryQuery, not {query!r}")
        await anyio.lowlevel.checkpoint()
        self._purge(self._clock())
        rows = sorted(
            (
                r
                for r in self._rows.values()
                if query.matches(r.task, r.status, r.key, r.due, r.schedule)
            ),
            key=lambda r: (r.due, r.key),
        )
        kept = rows[: query.limit]
        more = len(rows) > query.limit
        return Page(tuple(r.entry() for r in kept), (kept[-1].due, kept[-1].key) if more else None)

    async def activity(self, minutes: int = 60) -> list[Minute]:
        if isinstance(minutes, bool) or not isinstance(minutes, int):
            raise TypeError(f"minutes must be an int, not {minutes!r}")
        if not 1 <= minutes <= 60:
            raise ValueError(f"minutes must be 1 to 60, not {minutes}")
        await anyio.lowlevel.checkpoint()
        current = int(self._clock() // 60)
        out = []
        for m in range(current - minutes + 1, current + 1):
            c = self._minutes.get(m)
            if c is None:
                out.append(Minute(m * 60.0))
            else:
                out.append(Minute(m * 60.0, int(c[0]), int(c[1]), int(c[2]), int(c[3]), c[4], c[5]))
        return out

    async def inspect(self, key: str) -> EntryDetail | None:
        entry = await self.get(key)
        row = self._rows.get(key)
        if entry is None or row is None:
            return None
        running = row.status is Status.RUNNING
        return EntryDetail(
            entry=entry,
            payload=row.payload,
            owner=row.owner if running else None,
            lease_until=row.lease_until if running else None,
            token=row.token,
            lease=row.lease,
            max_deliveries=row.max_deliveries,
            expires_at=row.expires if math.isfinite(row.expires) else None,
        )

    def _minute(self, now: float) -> list[float]:
        m = int(now // 60)
        for old in [k for k in self._minutes if k <= m - 60]:
            del self._minutes[old]
        return self._minutes.setdefault(m, [0, 0, 0, 0, 0.0, 0.0])

    def _count_claims(self, now: float, dues: list[float]) -> None:
        if dues:
            c = self._minute(now)
            late = [max(0.0, now - d) for d in dues]
            c[0] += len(dues)
            c[4] += sum(late)
            c[5] = max(c[5], *late)

    def _count_finishes(
        self, now: float, items: Sequence[tuple[str, int, Outcome]], applied: list[bool]
    ) -> None:
        for ok, (k, _t, o) in zip(applied, items, strict=True):
            row = self._rows.get(k)
            # A release is no run; a run an abort ended counts in none of the columns.
            if not ok or isinstance(o, Release) or row is None or row.status is Status.CANCELLED:
                continue
            c = self._minute(now)
            if isinstance(o, Done) or (isinstance(o, NextOccurrence) and o.error is None):
                c[1] += 1
            elif isinstance(o, RetryAt):
                c[3] += 1
            else:
                c[2] += 1

    async def wait_aborted(self, timeout: float) -> None:
        task = anyio.get_current_task().id
        last = self._abort_seen.get(task)
        try:
            if last is not None and last != self._aborts:
                await anyio.lowlevel.checkpoint()  # a request since this task's last wait
                return
            with anyio.move_on_after(timeout):
                await self._aborted.wait()
        finally:
            self._abort_seen[task] = self._aborts
