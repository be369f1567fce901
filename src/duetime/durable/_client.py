"""The client: what a producer does with a store (defer, list, cancel, retry, delete).

Every argument is checked, and every row encoded, before the store is called;
an entry this process writes that is due before its worker's next wake-up
wakes that worker (a store need not report its own writes to
``wait_changed``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Any, Literal

from .._exceptions import SchedulerClosed
from .._instrument import probes
from .._util import check_aware, to_delay
from .._vocab import MISFIRE, OVERLAP, Misfire, Overlap, Status
from ._codec import encode_args, encode_args_exact, encode_args_many, known_payloads
from ._deferred import Deferred
from ._fast import new_row
from ._keys import check_key, lookup_key, new_keys
from ._registry import TaskRegistry
from ._series import Series, parse_schedule, trigger_grid
from ._store import Entry, NewRow, OnConflict, Store
from ._worker import Worker

if TYPE_CHECKING:
    from ._deferred import Watcher

__all__ = ["Client"]


#: How many running (and pending) entries an abort of an ``overlap="allow"``
#: series looks through for its occurrences.
_OCCURRENCE_SCAN = 10_000


def _allows_overlap(schedule: str | None) -> bool:
    if schedule is None:
        return False
    try:
        return parse_schedule(schedule).overlap == "allow"
    except ValueError:
        return False


async def abort_with_occurrences(store: Store, key: str) -> bool:
    """:meth:`Store.abort` ``key``; for an ``overlap="allow"`` series, also its
    occurrences that run or wait to run as entries of their own
    (``"{key}@{k}"``), among the first :data:`_OCCURRENCE_SCAN` entries of each
    of those statuses.

    :return: whether any of them was deleted or its abort requested
    """
    series = await store.get(key)
    done = await store.abort(key)
    if series is None or not _allows_overlap(series.schedule):
        return done
    prefix = f"{key}@"
    for status in (Status.RUNNING, Status.PENDING):
        for e in await store.entries(status=status, limit=_OCCURRENCE_SCAN):
            tail = e.key[len(prefix) :]
            if e.key.startswith(prefix) and tail.isdigit() and e.task == series.task:
                done = await store.abort(e.key) or done
    return done


_ON_CONFLICT = ("keep", "replace", "error")


def _when(
    delay: float | timedelta | None, at: datetime | None
) -> tuple[float | None, float | None]:
    """``(due, delay)`` for a NewRow from defer's ``delay=``/``at=`` (due now by default)."""
    if at is not None:
        if delay is not None:
            raise ValueError("pass delay= or at=, not both")
        if not isinstance(at, datetime):
            raise TypeError(f"at must be an aware datetime, got {at!r}")
        check_aware(at)
        return at.timestamp(), None
    return None, 0.0 if delay is None else to_delay(delay, "delay")


class Client:
    """Defers registered tasks into a store and looks after the entries stored.

    :class:`~duetime.durable.StoreSession` makes one and opens it with
    the store (:attr:`state`); ``Scheduler.defer`` and friends call it.

    :param store: the store (entered by whoever opens the client)
    :param registry: the tasks this process may defer
    :param worker: this process's worker, woken by what the client writes (or None)
    """

    def __init__(self, store: Store, registry: TaskRegistry, worker: Worker | None = None) -> None:
        self._store = store
        self._registry = registry
        self._worker = worker
        #: ``"new"`` until the store is entered, ``"open"``, then ``"closed"``.
        self.state: Literal["new", "open", "closed"] = "new"
        #: The watcher that wakes this process's awaited entries (set by the session).
        self.watcher_: Watcher | None = None

    def watcher(self) -> Watcher:
        """The session's watcher, for awaiting entries.

        :raises SchedulerClosed: outside the block that opened the store
        """
        self._check_open()
        assert self.watcher_ is not None
        return self.watcher_

    def handle(self, entry: Entry) -> Deferred[Any]:
        """A :class:`~duetime.Deferred` on ``entry`` (as :meth:`defer` returned it)."""
        return Deferred(self, entry.key, entry)

    def handles(self, entries: list[Entry]) -> list[Deferred[Any]]:
        """A :class:`~duetime.Deferred` on each of ``entries``, in order."""
        return [Deferred(self, e.key, e) for e in entries]

    def _check_open(self) -> None:
        if self.state != "open":
            if self.state == "closed":
                raise SchedulerClosed(
                    "the scheduler's durable store is closed: its 'async with' block has ended"
                )
            raise SchedulerClosed(
                "the scheduler has not been entered: use"
                " 'async with Scheduler(store=..., tasks=...) as s:' and defer inside the block"
            )

    # -- deferring ----------------------------------------------------------------------

    def _row(
        self,
        task: str | Callable[..., Any],
        args: Sequence[Any],
        delay: float | timedelta | None,
        at: datetime | None,
        key: str | None,
    ) -> tuple[NewRow, dict[str, tuple[Any, ...]]]:
        """The row of one defer, and its payload's arguments if they need no
        decoding (see :func:`known_payloads`)."""
        t = self._registry.resolve(task)
        self._registry.check_args(t, args)
        due, wait = _when(delay, at)
        payload, exact = encode_args_exact(args)
        k = new_keys(1)[0] if key is None else check_key(key)
        row = new_row(k, t.name, payload, due, wait, t.lease, t.max_deliveries, None)
        row.__post_init__()  # NewRow's checks, without its frozen __init__'s cost
        return row, {} if exact is None else {payload: exact}

    async def _add(
        self,
        rows: list[NewRow],
        on_conflict: OnConflict,
        batch: bool = False,
        known: dict[str, tuple[Any, ...]] | None = None,
    ) -> list[Entry]:
        if on_conflict not in _ON_CONFLICT:
            raise ValueError(f"on_conflict must be one of {_ON_CONFLICT}, got {on_conflict!r}")
        self._check_open()
        probe = probes.durable
        # The entries the store returns carry the arguments just encoded: the
        # store need not decode them (a payload it rewrote is decoded).
        with known_payloads(known or {}):
            if probe is None:
                entries = await self._store.add(rows, on_conflict=on_conflict)
            else:  # instrumented: spans, metrics, the trace context stored with each row
                entries = await probe.send(
                    partial(self._store.add, on_conflict=on_conflict), rows, batch
                )
        if self._worker is not None:
            self._worker.notice(entries)
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
        :raises TypeError: an unregistered function, arguments that do not bind
            to the task's signature, or an argument the codec does not carry
        :raises ValueError: a naive ``at``, a negative delay, both ``delay`` and
            ``at``, an argument the codec refuses, a payload over 64 KiB
        :raises EntryExists: see ``on_conflict``
        :raises SchedulerClosed: outside the block that opened the store
        """
        row, known = self._row(task, args, delay, at, key)
        return (await self._add([row], on_conflict, known=known))[0]

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
        # The checks and the encoding of defer, done once per batch where they can
        # be (the task, the time), and per row only where they must (arguments, keys).
        registry = self._registry
        t = registry.resolve(task)
        due, wait = _when(delay, at)
        sets = list(argsets)
        low, high = registry.arity_bounds(t)
        for args in sets:
            if type(args) is not tuple and (
                isinstance(args, str | bytes) or not isinstance(args, Sequence)
            ):
                raise TypeError(f"each item of argsets must be a tuple or list, got {args!r}")
            if not low <= len(args) <= high:
                registry.check_args(t, args)  # raises, naming the task
        n = len(sets)
        if keys is None:
            key_list = new_keys(n)
        else:
            given = list(keys)
            if len(given) != n:
                raise ValueError(f"got {len(given)} keys for {n} argument sets")
            fresh = iter(new_keys(sum(1 for k in given if k is None)))
            key_list = [next(fresh) if k is None else check_key(k) for k in given]
            if len(set(key_list)) != n:
                raise ValueError("defer_many got the same key twice")
        if not n:
            self._check_open()
            return []
        payloads, known = encode_args_many(sets)
        name, lease, max_deliveries = t.name, t.lease, t.max_deliveries
        # The first row checks what every row shares (NewRow's own checks); the
        # others differ from it only in a key and a payload checked above.
        rows = [NewRow(key_list[0], name, payloads[0], due, wait, lease, max_deliveries)]
        rows += [
            new_row(k, name, p, due, wait, lease, max_deliveries, None)
            for k, p in zip(key_list[1:], payloads[1:], strict=True)
        ]
        return await self._add(rows, on_conflict, batch=True, known=known)

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
        self._registry.check_args(t, args)
        check_key(key)
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

    async def cancel_deferred(self, key: str, *, abort: bool = False) -> bool:
        """Delete a PENDING or FAILED entry (or series); with ``abort=True``, also
        abort a RUNNING one (:meth:`Store.abort <duetime.durable.Store.abort>`: the
        worker holding it cancels its run, and it ends CANCELLED).  Aborting an
        ``overlap="allow"`` series also aborts its occurrences running or
        waiting to run as entries of their own (``"{key}@{k}"``).

        :return: True if deleted (or its abort requested); False if absent or
            finished, or running and ``abort`` is False
        :raises TypeError: ``abort`` is not a bool
        """
        if type(abort) is not bool:
            raise TypeError(f"abort must be a bool, not {type(abort).__name__}")
        self._check_open()
        key = lookup_key(key)
        if not abort:
            return await self._store.cancel(key)
        return await abort_with_occurrences(self._store, key)

    async def deferred(self, key: str) -> Entry | None:
        """The entry stored under ``key`` (finished ones while kept), or None."""
        self._check_open()
        return await self._store.get(lookup_key(key))

    async def entries(self, *, status: Status | None = None, limit: int = 1000) -> list[Entry]:
        """Stored entries by due time, optionally only those with ``status``.

        :raises ValueError: a ``status`` that is not a :class:`~duetime.Status`
            (or its name), or a negative ``limit``
        :raises TypeError: a ``limit`` that is not an int
        """
        if status is not None:
            status = Status(status)  # every store alike, whatever it checks itself
        self._check_open()
        return await self._store.entries(status=status, limit=limit)

    async def dead_letters(self, *, limit: int = 1000) -> list[Entry]:
        """FAILED entries (retries exhausted, unknown task, bad payload, poison)."""
        return await self.entries(status=Status.FAILED, limit=limit)

    async def retry_deferred(self, key: str) -> bool:
        """Make a FAILED entry PENDING again, due now, attempt 1; False if not FAILED."""
        self._check_open()
        ok = await self._store.retry(lookup_key(key))
        if ok and self._worker is not None:
            self._worker.poke()
        return ok

    async def delete_deferred(self, key: str) -> bool:
        """Delete an entry that is not running (dead letters and finished ones too)."""
        self._check_open()
        return await self._store.delete(lookup_key(key))
