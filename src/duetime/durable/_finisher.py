"""Group finishes: the fenced finishes of one worker process, sent to the store in batches.

A claim's runs tend to end together (a no-op or short task ends within one loop
tick of its siblings).  Each run hands its outcome to the :class:`Finisher`
without waiting; one task sends whatever has queued as one ``Store.finish_many``
call (one Redis script, one SQLite transaction) and then calls each item's
completion callback, so a worker pays one round trip per batch instead of one
per entry, and a run pays no await for it.  Fencing stays per row: each item
gets its own True/False.

A store error does not give a finish up: it is sent again, with backoff, for as
long as its lease holds (the ``until`` it was queued with), so a short outage
does not turn a finished run into a re-run.  Once the worker stops
(:meth:`Finisher.drain`), a finish gets a fixed time instead, counted from the
drain's start or from when it is queued, whichever is later: a store call still
unanswered then is cut short (where the store can be interrupted), what is not
recorded by then is given up, logged once (:meth:`Finisher.report_left`) and
left to its lease, so a store that does not answer cannot hold the exit until
the leases end.

When the store offers ``finish_and_claim`` (:class:`~._store.FinishAndClaim`)
and the worker wants more rows (:class:`Refill`), a group goes with a claim
for the slots it frees, in one call: on a database, one commit (one WAL
flush) instead of a finish's and then a claim's.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial
from typing import Protocol

import anyio
import anyio.lowlevel
from anyio import CancelScope

from ._log import StoreHealth, short, worker_log
from ._store import Claim, FinishAndClaim, Outcome, Store

__all__ = ["Finisher", "Refill"]

#: At most this many finishes per store call.
MAX_BATCH = 500
#: The first pause after a failed store call, doubled per failure up to _MAX_PAUSE.
_FIRST_PAUSE = 0.05
_MAX_PAUSE = 1.0
#: The shortest time a store call is given, even when a lease ends sooner.
_MIN_CALL = 0.1


class _Item:
    __slots__ = ("key", "outcome", "then", "token", "until")

    def __init__(
        self,
        key: str,
        token: int,
        outcome: Outcome,
        then: Callable[[bool], object] | None,
        until: float,
    ) -> None:
        self.key = key
        self.token = token
        self.outcome = outcome
        self.then = then
        self.until = until


class Refill(Protocol):
    """What a finisher asks its worker before and after a group that carries a claim."""

    owner: str

    def room(self, finishing: int) -> int:
        """How many rows to claim with a group of ``finishing`` finishes (0: none);
        that many slots stay reserved until :meth:`took`."""

    def took(self, claims: list[Claim], reserved: int, sent: float) -> None:
        """The group's claim returned ``claims`` (empty if it failed): run them
        and free the ``reserved`` slots (called after the group's callbacks)."""


class Finisher:
    """Sends the finishes of one process to ``store`` in groups, from one task.

    :meth:`serve` is that task (the worker starts it with its claim loop);
    :meth:`put` queues a finish without waiting, :meth:`finish_all` waits for a group.

    :param store: the store the finishes go to
    :param timeout: the longest one ``finish_many`` call may take before it counts
        as failed (shorter when every lease in the batch ends sooner)
    :param health: told of each call's success or failure (outage logging)
    :param refill: the worker whose claims may ride with the groups (used only
        if the store offers ``finish_and_claim``)
    """

    def __init__(
        self,
        store: Store,
        timeout: float,
        health: StoreHealth | None = None,
        refill: Refill | None = None,
    ) -> None:
        self._store = store
        self._both = _offered_both(store)
        self._refill = refill if self._both is not None else None
        self._claimed: tuple[list[Claim], int, float] | None = None
        self._timeout = timeout
        self._health = health if health is not None else StoreHealth()
        self._queue: list[_Item] = []
        self._wake: anyio.Event | None = None
        # Stopping: each finish gets this long from its queueing (None: until its lease ends).
        self._cap: float | None = None
        self._sending: Sequence[_Item] = ()  # the group in flight
        self._again: list[_Item] = []  # a group the store failed, sent again after a pause
        self._call: CancelScope | None = None  # the deadline of the store call in flight
        self._pause: CancelScope | None = None  # the pause before sending a failed group again
        self._left: list[str] | None = None  # keys given up while stopping, not yet logged

    def put(
        self,
        key: str,
        token: int,
        outcome: Outcome,
        then: Callable[[bool], object] | None = None,
        until: float = math.inf,
    ) -> None:
        """Queue a finish for the next group; ``then(recorded)`` is called once it
        was sent (``recorded`` is False if the token was no longer current, or the
        store failed until ``until``: logged, and the entry runs again when its
        lease lapses).  Never blocks, so a run needs no shield to record its
        outcome, even when it is being cancelled.

        :param until: when the claim's lease ends (``anyio.current_time()``
            clock): a store error is retried until then (after :meth:`drain`,
            at most its ``cap`` seconds from now)
        """
        if self._cap is not None:
            until = min(until, anyio.current_time() + self._cap)
        self._queue.append(_Item(key, token, outcome, then, until))
        if self._wake is not None:
            self._wake.set()

    async def finish_all(
        self, items: Sequence[tuple[str, int, Outcome]], until: float = math.inf
    ) -> list[bool]:
        """Send ``items`` together and wait for them; their results in order."""
        results: list[bool | None] = [None] * len(items)
        left = len(items)
        sent = anyio.Event()

        def then(i: int, ok: bool) -> None:
            nonlocal left
            results[i] = ok
            left -= 1
            if not left:
                sent.set()

        for i, (key, token, outcome) in enumerate(items):
            self.put(key, token, outcome, partial(then, i), until)
        if left:
            await sent.wait()
        return [bool(ok) for ok in results]

    def drain(self, cap: float) -> None:
        """The worker stops: from now on a finish not yet recorded is given up
        ``cap`` seconds after now or after it is queued, whichever is later (or
        when its lease ends, if sooner); the store call in flight is cut short
        then.  What is given up is kept for :meth:`report_left`."""
        if self._cap is not None:
            return
        self._cap = cap
        self._left = []
        end = anyio.current_time() + cap
        for item in (*self._sending, *self._again, *self._queue):
            item.until = min(item.until, end)
        if self._call is not None:
            self._call.deadline = min(self._call.deadline, end)
        if self._pause is not None:
            self._pause.deadline = min(self._pause.deadline, end)

    def report_left(self) -> None:
        """Log, in one WARNING, the finishes given up since :meth:`drain` (if
        any); those given up later are logged as they are."""
        left, self._left = self._left, None
        if left:
            worker_log.warning(
                "durable worker stopping: %d outcome(s) not recorded within %g s (%s): "
                "the store did not take them (a write that timed out may still have "
                "landed); each entry not recorded stays leased and runs again once its "
                "lease lapses",
                len(left),
                self._cap,
                _some(left),
            )

    async def serve(self) -> None:
        """Send queued finishes in groups until cancelled (the worker's last step)."""
        pause = _FIRST_PAUSE
        while True:
            if not self._queue and not self._again:
                self._wake = anyio.Event()
                await self._wake.wait()
            # Let the runs that end in this tick queue theirs first: one call for
            # all, not one for the first and one for the rest.
            await anyio.lowlevel.cancel_shielded_checkpoint()
            again = self._again
            room = MAX_BATCH - len(again)
            batch, self._queue = again + self._queue[:room], self._queue[room:]
            self._again = []
            self._sending = batch
            try:
                with CancelScope(shield=True):
                    results = await self._send(batch)
            finally:
                self._sending = ()
            if results is None:
                now = anyio.current_time()
                self._again = [it for it in batch if it.until > now]
                self._give_up([it for it in batch if it.until <= now])
                if self._again:
                    # Not shielded: the worker's stop may cut it short.
                    wait = min(pause, min(it.until for it in self._again) - now)
                    with CancelScope(deadline=now + wait) as self._pause:
                        await anyio.sleep_forever()
                    self._pause = None
                    pause = min(pause * 2, _MAX_PAUSE)
                continue
            pause = _FIRST_PAUSE
            self._done(batch, results)
            self._hand_over()

    def _hand_over(self) -> None:
        """Give the claim that rode with the last group to the worker (its
        finishes' callbacks have freed their slots by now)."""
        claimed, self._claimed = self._claimed, None
        if claimed is not None and self._refill is not None:
            self._refill.took(*claimed)

    def _done(self, batch: Sequence[_Item], results: Sequence[bool]) -> None:
        for item, ok in zip(batch, results, strict=True):
            if item.then is not None:
                try:
                    item.then(ok)
                except Exception:  # a bug in a callback must not stop the finishes
                    worker_log.exception("durable finish: a completion callback failed")

    def _give_up(self, items: Sequence[_Item]) -> None:
        if not items:
            return
        if self._left is not None:  # stopping: one line for all, at the end
            self._left.extend(it.key for it in items)
        else:
            worker_log.warning(
                "durable finish: could not record %d outcome(s) (%s) before their leases "
                "ended (a write that timed out may still have landed); any not recorded "
                "run again",
                len(items),
                _some([it.key for it in items]),
            )
        self._done(items, [False] * len(items))

    async def _send(self, batch: Sequence[_Item]) -> list[bool] | None:
        """Send one group; its results, or None if the store failed."""
        items = [(it.key, it.token, it.outcome) for it in batch]
        sent = anyio.current_time()
        limit = max(it.until for it in batch) - sent
        refill = self._refill
        room = 0 if refill is None else refill.room(len(batch))
        try:
            with anyio.fail_after(max(_MIN_CALL, min(self._timeout, limit))) as self._call:
                if room and refill is not None and self._both is not None:
                    # Its claim's rows may be taken even if the reply is lost:
                    # they then wait out their lease, as after a failed claim.
                    self._claimed = ([], room, sent)
                    results, claims = await self._both.finish_and_claim(items, refill.owner, room)
                    self._claimed = (claims, room, sent)
                else:
                    results = await self._store.finish_many(items)
        except Exception as exc:
            self._health.failed(exc, "finish")
            self._hand_over()  # frees the reserved slots
            return None
        finally:
            self._call = None
        self._health.ok()
        for (key, _token, outcome), ok in zip(items, results, strict=True):
            if not ok:
                worker_log.warning(
                    "durable entry %r: lease lost before %s was recorded (another "
                    "worker holds it now)",
                    short(key),
                    type(outcome).__name__,
                    extra={"key": key},
                )
        return list(results)


def _some(keys: Sequence[str]) -> str:
    """The first three of ``keys`` for a log line (each cut short), then ``...``."""
    return ", ".join(repr(short(k)) for k in keys[:3]) + (", ..." if len(keys) > 3 else "")


def _offered_both(store: Store) -> FinishAndClaim | None:
    """The store, if the worker may call its ``finish_and_claim``: the store
    has it, and no class below the one that defines it overrides
    ``finish_many`` or ``claim`` (a subclass that injects faults into those,
    say, must see every finish and claim); else None."""
    if not isinstance(store, FinishAndClaim):
        return None
    mro = type(store).__mro__

    def depth(name: str) -> int:
        return next((i for i, c in enumerate(mro) if name in vars(c)), len(mro))

    both = depth("finish_and_claim")
    return store if both <= depth("finish_many") and both <= depth("claim") else None
