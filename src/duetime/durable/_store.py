"""The store seam: what a durable store does, and the values that cross it.

A store keeps *rows*: one per one-shot entry, one per recurring series.  All
times that cross this seam are wall-clock UTC epoch seconds (floats) on the
*store's* clock (:meth:`Store.time`: Redis ``TIME``, the host clock for
SQLite, virtual wall time for ``MemoryStore``).  Nothing here imports, unpickles
or evaluates anything: a row names a task and carries a JSON payload string.

Delivery is at least once.  :meth:`Store.claim` leases rows and gives each a
fencing token, unique per store for its whole life; :meth:`Store.finish_many`
and :meth:`Store.extend` succeed only with the current token, so a worker that
lost its lease can neither complete nor double-complete.

The rules every store keeps (the conformance suite,
``duetime.durable.conformance``, checks them):

- ``NewRow.lease`` may be None: the store's default ``lease`` then applies.
  ``NewRow`` checks itself (exactly one of ``due``/``delay``, lease > 0,
  max_deliveries >= 1, non-empty key and task): ValueError/TypeError at the
  call site rather than a bad row in a store.
- ``Entry.deliveries`` counts the claims of the current attempt, the live one
  included; :class:`Release` takes back its own claim (deliveries - 1), and
  :class:`RetryAt`/:class:`NextOccurrence`/``retry`` reset it to 0.  A claim
  that would make it exceed ``max_deliveries`` dead-letters the row instead
  ("poison"), so a task that kills its worker every time stops looping.
- Stores build :attr:`Entry.args` with :func:`entry_args` (the durable codec's
  ``decode_args``); a payload it cannot decode gives ``args == ()`` (the worker
  decodes :attr:`Claim.payload` itself and dead-letters it).
- A token stays current until the row is claimed again, replaced, cancelled
  or finished: finishing or extending after the lease lapsed but before any
  re-claim succeeds (nobody else can hold the row then).
- :meth:`Store.add` is all or nothing per batch: an ``EntryExists`` leaves the
  store unchanged.
- :meth:`Store.entries` and :meth:`Store.get` never report a tombstone older
  than ``dedupe_ttl`` (stores purge those lazily).
- Abort: :meth:`Store.abort` on a RUNNING row stores an abort request with the
  row (:attr:`Entry.abort_requested`) and announces it (:meth:`Store.wait_aborted`);
  the worker holding the lease learns of it (:meth:`Store.aborts`), cancels the
  run and finishes it with :class:`Aborted`.  A row with an abort request never
  runs again: finished with any outcome but :class:`Done` it ends CANCELLED
  (a series stops), and a claim that finds its lease lapsed ends it CANCELLED
  instead of handing it out.  :class:`Done` still completes it (the run ended
  before the abort reached it): whatever races, the entry has one outcome.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, Protocol, runtime_checkable

from .._vocab import Status
from ._codec import decode_args, known_args
from ._stats import Counts, EntryQuery, Minute

__all__ = [
    "MALFORMED",
    "MAX_RESULT",
    "MAX_TRACEBACK",
    "RESULT_DROPPED",
    "Claim",
    "Dead",
    "Done",
    "Entry",
    "EntryDetail",
    "Page",
    "page_from",
    "NewRow",
    "NextOccurrence",
    "OnConflict",
    "Outcome",
    "ReadOnlyStore",
    "Release",
    "RetryAt",
    "Store",
    "StoreLost",
    "ABORTED",
    "Aborted",
    "check_result_ttl",
    "entry_args",
    "utc",
]

OnConflict = Literal["keep", "replace", "error"]

#: How the ``last_error`` of a row dead-lettered as malformed begins (a row
#: another program wrote: a due time that is not a finite number, an unknown
#: status, text that is not UTF-8...); what follows says what is wrong.
MALFORMED = "malformed row: "

#: How the ``last_error`` of a COMPLETED entry whose return value was not kept
#: (the codec cannot carry it, or it is too large) begins; the reason follows.
RESULT_DROPPED = "result not kept: "

#: The ``last_error`` of an entry that ends CANCELLED by an abort request.
ABORTED = "aborted"

#: Largest encoded return value a store keeps, in bytes of UTF-8.
MAX_RESULT = 64 * 1024
#: Longest traceback text a store keeps, in characters (the end is kept).
MAX_TRACEBACK = 16 * 1024


@dataclass(frozen=True, slots=True)
class Entry:
    """A durable entry as a store reports it (public, read-only).

    :ivar key: the entry's key (given to ``defer`` or generated), unique per store
    :ivar task: the registered task name
    :ivar args: the decoded positional arguments
    :ivar due: when it is (next) due, an aware UTC datetime
    :ivar status: PENDING, RUNNING, COMPLETED, FAILED or CANCELLED
    :ivar attempt: the attempt number of the current occurrence, from 1
    :ivar last_error: the reason of the last failure (or dead letter), if any
    :ivar occurrence: for a recurring series, the index of the current
        occurrence (0 for a one-shot entry)
    :ivar schedule: for a recurring series, its trigger spec (JSON text), else None
    :ivar deliveries: claims of the current attempt (the live one included),
        so claims beyond 1 are re-deliveries after a crashed or paused worker;
        a claim that would exceed ``max_deliveries`` dead-letters the row
    :ivar result: a COMPLETED entry's return value as the durable codec wrote it
        (a one-element JSON array), while the store keeps it (``result_ttl``);
        None otherwise.  Only :meth:`Store.get` reports it (listings leave it None).
    :ivar error_type: a FAILED entry's exception type (qualified name), if known
        (only :meth:`Store.get` reports it)
    :ivar traceback: a FAILED entry's traceback as text, if known (only
        :meth:`Store.get` reports it)
    :ivar abort_requested: an abort of the RUNNING entry was requested
        (:meth:`Store.abort`); it ends CANCELLED.  Inside a run,
        ``current_entry().abort_requested`` turns True once the worker has
        learnt of the request (a sync task polls it to stop early).
    """

    key: str
    task: str
    args: tuple[Any, ...]
    due: datetime
    status: Status
    attempt: int = 1
    last_error: str | None = None
    occurrence: int = 0
    schedule: str | None = None
    deliveries: int = 0
    result: str | None = None
    error_type: str | None = None
    traceback: str | None = None
    abort_requested: bool = False

    @property
    def idempotency_key(self) -> str:
        """The same for every attempt of one occurrence: ``key`` or ``key@occurrence``."""
        return self.key if self.schedule is None else f"{self.key}@{self.occurrence}"


@dataclass(frozen=True, slots=True)
class NewRow:
    """A row to add (built by ``defer``; the payload is already encoded and checked).

    Exactly one of ``due`` (absolute epoch seconds) and ``delay`` (seconds added
    to the store's clock, so producer clock skew cannot make it early) is set.
    ``lease`` None means the store's default lease.

    :raises TypeError: a field of the wrong type
    :raises ValueError: both or neither of ``due``/``delay``, a negative or
        non-finite time, a lease <= 0, max_deliveries < 1, an empty key or task
    """

    key: str
    task: str
    payload: str  # JSON text of the arguments (tagged types already encoded)
    due: float | None = None
    delay: float | None = None
    lease: float | None = None
    max_deliveries: int = 5
    schedule: str | None = None  # JSON text of a recurring trigger and its policies

    def __post_init__(self) -> None:
        # The common shape, checked cheaply (defer_many builds thousands); anything
        # else goes through the full checks below, which name the bad field.
        when = self.delay if self.due is None else self.due
        if (
            type(self.key) is str
            and type(self.task) is str
            and type(self.payload) is str
            and self.key
            and self.task
            and (self.due is None) != (self.delay is None)
            and type(when) is float
            and (self.delay is None or self.delay >= 0.0)
            and -math.inf < when < math.inf
            and (self.lease is None or (type(self.lease) is float and 0.0 < self.lease < math.inf))
            and type(self.max_deliveries) is int
            and self.max_deliveries >= 1
            and self.schedule is None
        ):
            return
        self._check()

    def _check(self) -> None:
        for name in ("key", "task", "payload"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise TypeError(f"NewRow.{name} must be a str, not {type(value).__name__}")
        if not self.key or not self.task:
            raise ValueError("NewRow needs a non-empty key and task")
        if (self.due is None) == (self.delay is None):
            raise ValueError("NewRow needs exactly one of due= and delay=")
        when = self.due if self.due is not None else self.delay
        if isinstance(when, bool) or not isinstance(when, int | float) or not math.isfinite(when):
            raise ValueError(f"NewRow due/delay must be a finite number, not {when!r}")
        if self.delay is not None and self.delay < 0:
            raise ValueError(f"NewRow.delay must be >= 0, not {self.delay!r}")
        if self.lease is not None and (
            isinstance(self.lease, bool)
            or not isinstance(self.lease, int | float)
            or not math.isfinite(self.lease)
            or self.lease <= 0
        ):
            raise ValueError(f"NewRow.lease must be a positive number or None, not {self.lease!r}")
        if (
            isinstance(self.max_deliveries, bool)
            or not isinstance(self.max_deliveries, int)
            or self.max_deliveries < 1
        ):
            raise ValueError(
                f"NewRow.max_deliveries must be an int >= 1, not {self.max_deliveries!r}"
            )
        if self.schedule is not None and not isinstance(self.schedule, str):
            raise TypeError("NewRow.schedule must be a str (JSON text) or None")


class StoreLost(RuntimeError):
    """The store a store object opened is no longer the one at its address (a
    SQLite file deleted or replaced under it, a Redis database flushed...).

    Once raised, every call on that store object raises it again: what it
    would write could reach nobody.  A worker should stop (exit non-zero) and
    be restarted, which opens what is there now.
    """


class ReadOnlyStore(RuntimeError):
    """A write (``add``, ``claim``, ``finish``...) to a store opened ``read_only=True``."""


@dataclass(frozen=True, slots=True)
class Claim:
    """A leased row handed to one worker.

    :ivar entry: the entry (status RUNNING)
    :ivar payload: its JSON payload text, decoded by the worker
    :ivar token: the fencing token; finish and extend need it
    :ivar lease_until: store-clock time the lease lapses unless extended
    :ivar lease: the row's lease length in seconds
    """

    entry: Entry
    payload: str
    token: int
    lease_until: float
    lease: float


# -- outcomes handed to Store.finish_many ---------------------------------------------


@dataclass(frozen=True, slots=True)
class Done:
    """The occurrence completed: a one-shot row becomes a COMPLETED tombstone.

    :ivar result: the return value as the durable codec wrote it (kept with the
        tombstone for the store's ``result_ttl``), or None if none is kept
    :ivar dropped: why a return value was not kept (it could not be encoded, or
        was too large): stored as ``last_error`` after :data:`RESULT_DROPPED`
    :raises TypeError: a result or reason that is not a str or None
    :raises ValueError: a result over :data:`MAX_RESULT` bytes of UTF-8
    """

    result: str | None = None
    dropped: str | None = None

    def __post_init__(self) -> None:
        for name in ("result", "dropped"):
            value = getattr(self, name)
            if value is not None and type(value) is not str:
                raise TypeError(f"Done.{name} must be a str or None, not {type(value).__name__}")
        if self.result is not None and len(self.result) * 4 > MAX_RESULT:
            size = len(self.result.encode("utf-8", "surrogatepass"))
            if size > MAX_RESULT:
                raise ValueError(f"Done.result is {size} bytes, over the {MAX_RESULT} byte limit")


@dataclass(frozen=True, slots=True)
class RetryAt:
    """The attempt raised and is retried at ``at``: attempt + 1, deliveries reset."""

    at: float
    error: str


@dataclass(frozen=True, slots=True)
class NextOccurrence:
    """A series moves on: occurrence + 1 due at ``due``, attempt 1, deliveries reset.

    ``error`` records why the occurrence just ended failed (retries exhausted),
    or None if it completed.
    """

    due: float
    error: str | None = None


@dataclass(frozen=True, slots=True)
class Dead:
    """Dead-letter the row: FAILED with its reason, listable and retryable.

    ``error_type`` (the exception's qualified name) and ``traceback`` (text)
    describe the failure to whoever awaits the entry, when known.
    """

    error: str
    error_type: str | None = None
    traceback: str | None = None


@dataclass(frozen=True, slots=True)
class Release:
    """Give the lease back unrun (shutdown): PENDING again at its due time, this
    claim not counted (deliveries - 1)."""


@dataclass(frozen=True, slots=True)
class Aborted:
    """The run was aborted (:meth:`Store.abort`): the row ends CANCELLED, a
    tombstone with ``last_error`` ``reason``; not retried, not dead-lettered,
    and a series stops."""

    reason: str = ABORTED


Outcome = Done | RetryAt | NextOccurrence | Dead | Release | Aborted


@runtime_checkable
class Store(Protocol):
    """What every durable store does.  Used as ``async with store:`` by the Scheduler.

    Every method is safe to call concurrently from tasks of one event loop, and
    several processes (or hosts, for a networked store) may share one store.
    """

    lease: float  #: the default lease in seconds, for rows that carry none
    dedupe_ttl: float  #: how long a finished key is kept as a tombstone
    result_ttl: float  #: how long a COMPLETED tombstone keeps its result (<= dedupe_ttl)

    async def __aenter__(self) -> Store: ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def time(self) -> float:
        """The store's clock, in UTC epoch seconds."""

    async def add(self, rows: Sequence[NewRow], *, on_conflict: OnConflict = "keep") -> list[Entry]:
        """Insert rows, idempotent by key; the batch is one atomic step (if any row
        raises, none is inserted; a key repeated in one batch conflicts with its
        earlier row).

        ``"keep"`` returns an existing entry (tombstones included) unchanged,
        ``"replace"`` replaces one that is not RUNNING, ``"error"`` raises
        :exc:`~duetime.EntryExists` for any existing row (a RUNNING one raises
        under ``"replace"`` too).  Returns the entry now stored for each row.
        """

    async def cancel(self, key: str) -> bool:
        """Delete a PENDING or FAILED row; False if absent, RUNNING or finished."""

    async def abort(self, key: str) -> bool:
        """Cancel ``key``, interrupting its run: a PENDING or FAILED row is deleted
        (as by :meth:`cancel`); a RUNNING row gets an abort request, stored with
        the row (:attr:`Entry.abort_requested`) and announced to every process
        that waits in :meth:`wait_aborted`.  One atomic step either way.  A
        series row is treated alike (its running occurrence is aborted, and the
        series ends CANCELLED with it).

        :return: True if the row was deleted or its abort requested (again);
            False if absent or finished
        """

    async def aborts(self, claims: Sequence[tuple[str, int]]) -> list[bool]:
        """For each ``(key, token)`` a worker holds, whether an abort of that row
        was requested, in one call (False for a token that is no longer current)."""

    async def wait_aborted(self, timeout: float) -> None:
        """Return when an abort may have been requested in any process, or after
        ``timeout`` seconds; the same contract as :meth:`wait_finished` (a request
        since this task's previous call returns at once, spurious returns are
        harmless).  Never raises on a timeout."""

    async def get(self, key: str) -> Entry | None:
        """The entry stored under ``key`` (tombstones included), or None."""

    async def entries(self, *, status: Status | None = None, limit: int = 1000) -> list[Entry]:
        """Entries by due time, optionally only those with ``status``.

        Never raises for what a row holds: a malformed row is listed with
        ``last_error`` starting with :data:`MALFORMED` (FAILED if its status
        cannot be read), and so does :meth:`get`.

        :raises TypeError: a limit that is not an int
        :raises ValueError: a negative limit
        """

    async def claim(self, owner: str, limit: int) -> list[Claim]:
        """Lease up to ``limit`` due rows (PENDING and due, or RUNNING with a lapsed
        lease), each with a new fencing token.  A row whose deliveries would exceed
        its ``max_deliveries`` is dead-lettered instead of returned, and so is a
        malformed row (``last_error`` starting with :data:`MALFORMED`), on its
        own: the other rows are claimed as usual, and :meth:`delete` removes it."""

    async def extend(self, claims: Sequence[tuple[str, int]]) -> list[bool]:
        """Renew the leases of ``(key, token)`` pairs to now + each row's lease, in
        one call; False for a pair whose token is no longer current."""

    async def finish_many(self, items: Sequence[tuple[str, int, Outcome]]) -> list[bool]:
        """Apply each ``(key, token, outcome)`` item whose token is still current,
        in one call (a worker records the runs that end together as one group);
        each item is fenced by its own token and gets its own result, in order
        (False: no change).  The store's only way to record a run's end."""

    async def retry(self, key: str) -> bool:
        """Make a FAILED row PENDING again, due now, attempt 1; False if not FAILED."""

    async def delete(self, key: str) -> bool:
        """Delete a row that is not RUNNING (tombstones and dead letters included)."""

    async def head(self) -> float | None:
        """When the earliest row becomes claimable (due time or lease end), or None."""

    async def wait_changed(self, timeout: float) -> None:
        """Return when another writer may have moved the head earlier, or after
        ``timeout`` seconds (a safety poll).  Never raises on a timeout."""

    async def wait_finished(self, timeout: float) -> None:
        """Return when a row may have finished (COMPLETED, FAILED, cancelled or
        deleted) in any process, or after ``timeout`` seconds.  A finish since this
        task's previous call returned makes it return at once; a spurious return
        is harmless (the caller reads the rows it waits for again).  Never raises
        on a timeout."""

    # -- inspection: what a dashboard asks (values in ._stats) ---------------------
    # Each is answered by the store itself at a cost bounded however many rows
    # it holds: counters or an index it keeps, never a listing of every row.

    async def counts(self) -> Counts:
        """How many entries the store holds, per task and status (tombstones
        included, expired ones not)."""

    async def page(self, query: EntryQuery) -> Page:
        """One page of the entries ``query`` matches, in ``(due, key)`` order.

        :raises TypeError: a query that is not an :class:`EntryQuery`
        """

    async def activity(self, minutes: int = 60) -> list[Minute]:
        """The last ``minutes`` minutes of the store's clock, oldest first, the
        current one last: claims and their start lateness, and finishes by
        outcome (a minute with nothing is all zeros).

        :raises TypeError: minutes that is not an int
        :raises ValueError: minutes outside 1 to 60
        """

    async def inspect(self, key: str) -> EntryDetail | None:
        """Everything the store knows of the entry under ``key`` (tombstones
        included), or None."""

    # -- optional: a store may also offer ``finish_and_claim`` -------------------
    # (:class:`FinishAndClaim`): the worker then records a group of finishes and
    # claims its next rows in one call.  A store without it is used through
    # finish_many and claim, as before.


@runtime_checkable
class FinishAndClaim(Protocol):
    """The optional store method a worker uses, when a store has it, to record
    the runs that just ended and lease its next rows in one call (one
    transaction and one durable commit on a database)."""

    async def finish_and_claim(
        self, items: Sequence[tuple[str, int, Outcome]], owner: str, limit: int
    ) -> tuple[list[bool], list[Claim]]:
        """``finish_many(items)`` then ``claim(owner, limit)``, as one atomic step:
        the same fencing (each finish by its own token; a finish refused does
        not hold the claim back), the same results, and the finishes applied
        first (a row they make due is claimable by the claim).  Nothing is
        visible to another caller before both are durable.

        :raises TypeError: an outcome that is not one of the outcome types
            (nothing is applied)
        :raises ValueError: a negative limit (nothing is applied)
        """


def utc(ts: float) -> datetime:
    """Epoch seconds to an aware UTC datetime."""
    return datetime.fromtimestamp(ts, UTC)


def entry_args(payload: str) -> tuple[Any, ...]:
    """The positional arguments of a stored payload, for :attr:`Entry.args`.

    Decodes with the durable codec (:func:`~duetime.durable._codec.decode_args`).
    Never raises: an undecodable payload gives ``()`` (the worker decodes
    :attr:`Claim.payload` itself and dead-letters it).
    """
    known = known_args(payload)  # rows this task's defer just encoded
    if known is not None:
        return known
    try:
        args = decode_args(payload)
    except Exception:
        return ()
    return tuple(args) if isinstance(args, list | tuple) else ()


def check_result_ttl(result_ttl: float | None, dedupe_ttl: float) -> float:
    """A store's ``result_ttl`` option checked: None means ``dedupe_ttl``.

    :raises TypeError: a value that is not a number
    :raises ValueError: a value that is not positive and finite, or over
        ``dedupe_ttl`` (a result is kept with its tombstone, never longer)
    """
    if result_ttl is None:
        return dedupe_ttl
    if isinstance(result_ttl, bool) or not isinstance(result_ttl, int | float):
        raise TypeError(f"result_ttl must be a number, not {type(result_ttl).__name__}")
    if not (0 < result_ttl < math.inf):
        raise ValueError(f"result_ttl must be a positive finite number, not {result_ttl!r}")
    if result_ttl > dedupe_ttl:
        raise ValueError(
            f"result_ttl ({result_ttl:g} s) cannot exceed dedupe_ttl ({dedupe_ttl:g} s):"
            " a result is kept with its tombstone"
        )
    return float(result_ttl)


# -- inspection values that carry an Entry (the others are in ._stats) ------------------


@dataclass(frozen=True, slots=True)
class Page:
    """One page of :meth:`Store.page`.

    :ivar entries: the entries, in ``(due, key)`` order (as listings report
        them: no result or traceback)
    :ivar next: the cursor for the next page (``EntryQuery(after=...)``), or
        None when no entry matches after this page.  A store may bound the
        work of one call, so a page can hold fewer than ``limit`` entries and
        still have a ``next``.
    """

    entries: tuple[Entry, ...]
    next: tuple[float, str] | None = None


def page_from(rows: Sequence[tuple[float, Entry]], limit: int) -> Page:
    """A Page from up to ``limit + 1`` ``(due, entry)`` pairs in order: the extra
    one only says there is a next page (its cursor is the last one kept)."""
    kept = rows[:limit]
    more = len(rows) > limit and kept
    nxt = (kept[-1][0], kept[-1][1].key) if more else None
    return Page(tuple(e for _, e in kept), nxt)


@dataclass(frozen=True, slots=True)
class EntryDetail:
    """Everything a store knows of one entry (:meth:`Store.inspect`).

    :ivar entry: the entry as :meth:`Store.get` reports it (result, error
        type and traceback included)
    :ivar payload: the stored JSON text of its arguments, raw
    :ivar owner: the worker holding its lease (RUNNING), else None
    :ivar lease_until: when that lease lapses (epoch seconds), else None
    :ivar token: the fencing token of its latest claim (0: never claimed)
    :ivar lease: its lease length in seconds
    :ivar max_deliveries: claims an attempt may take before it is dead-lettered
    :ivar expires_at: when a finished entry's tombstone is dropped, else None
    :ivar trace_id: the trace id the entry was deferred in, for a store that
        keeps it apart (the stores here leave it None: it is in the payload's
        trace element, which the dashboard reads)
    """

    entry: Entry
    payload: str
    owner: str | None = None
    lease_until: float | None = None
    token: int = 0
    lease: float = 0.0
    max_deliveries: int = 0
    expires_at: float | None = None
    trace_id: str | None = None
