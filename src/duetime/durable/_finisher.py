"""Group finishes: the fenced finishes of one worker process, sent to the store in batches.

A claim's runs tend to end together (a no-op or short task ends within one loop
tick of its siblings).  Each run hands its outcome to the :class:`Finisher`
without waiting; one task sends whatever has queued as one ``Store.finish_many``
call (one Redis script, one SQLite transaction) and then calls each item's
completion callback, so a worker pays one round trip per batch instead of one
per entry, and a run pays no await for it.  Fencing stays per row: each item
gets its own True/False.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from functools import partial

import anyio
import anyio.lowlevel
from anyio import CancelScope

from ._store import Outcome, Store

__all__ = ["Finisher"]

logger = logging.getLogger("duetime.durable")

#: Store errors tolerated per batch before its items are given up (their
#: entries run again when their leases lapse).
ATTEMPTS = 4
#: At most this many finishes per store call.
MAX_BATCH = 500


class _Item:
    __slots__ = ("key", "outcome", "then", "token")

    def __init__(
        self, key: str, token: int, outcome: Outcome, then: Callable[[bool], object] | None
    ) -> None:
        self.key = key
        self.token = token
        self.outcome = outcome
        self.then = then


class Finisher:
    """Sends the finishes of one process to ``store`` in groups, from one task.

    :meth:`serve` is that task (the runner starts it with its claim loop);
    :meth:`put` queues a finish without waiting, :meth:`finish` waits for it.

    :param store: the store the finishes go to
    :param timeout: the longest one ``finish_many`` call may take before it counts
        as a failed attempt
    """

    def __init__(self, store: Store, timeout: float) -> None:
        self._store = store
        self._timeout = timeout
        self._queue: list[_Item] = []
        self._wake: anyio.Event | None = None

    def put(
        self, key: str, token: int, outcome: Outcome, then: Callable[[bool], object] | None = None
    ) -> None:
        """Queue a finish for the next group; ``then(recorded)`` is called once it
        was sent (``recorded`` is False if the token was no longer current, or the
        store failed :data:`ATTEMPTS` times: logged, and the entry runs again when
        its lease lapses).  Never blocks, so a run needs no shield to record its
        outcome, even when it is being cancelled."""
        self._queue.append(_Item(key, token, outcome, then))
        if self._wake is not None:
            self._wake.set()

    async def finish(self, key: str, token: int, outcome: Outcome) -> bool:
        """:meth:`put`, then wait until it was sent; True if recorded.  Needs
        :meth:`serve` running.  If this caller is cancelled the finish is sent all
        the same."""
        sent = anyio.Event()
        box: list[bool] = []

        def then(ok: bool) -> None:
            box.append(ok)
            sent.set()

        self.put(key, token, outcome, then)
        await sent.wait()
        return box[0]

    async def finish_all(self, items: Sequence[tuple[str, int, Outcome]]) -> list[bool]:
        """:meth:`finish` for several items (sent together); their results in order."""
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
            self.put(key, token, outcome, partial(then, i))
        if left:
            await sent.wait()
        return [bool(ok) for ok in results]

    async def serve(self) -> None:
        """Send queued finishes in groups until cancelled (the runner's last step)."""
        while True:
            if not self._queue:
                self._wake = anyio.Event()
                await self._wake.wait()
            # Let the runs that end in this tick queue theirs first: one call for
            # all, not one for the first and one for the rest.
            await anyio.lowlevel.cancel_shielded_checkpoint()
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            with CancelScope(shield=True):
                results = await self._send(batch)
            for item, ok in zip(batch, results, strict=True):
                if item.then is not None:
                    try:
                        item.then(ok)
                    except Exception:  # a bug in a callback must not stop the finishes
                        logger.exception("durable finish: a completion callback failed")

    async def _send(self, batch: Sequence[_Item]) -> list[bool]:
        items = [(it.key, it.token, it.outcome) for it in batch]
        pause = 0.1
        for attempt in range(ATTEMPTS):
            try:
                with anyio.fail_after(self._timeout):
                    results = await self._store.finish_many(items)
            except Exception:
                if attempt == ATTEMPTS - 1:
                    logger.exception(
                        "durable finish: could not record %d outcome(s) (%s...); their "
                        "entries run again when their leases lapse",
                        len(items),
                        ", ".join(repr(k) for k, _t, _o in items[:3]),
                    )
                    return [False] * len(items)
                await anyio.sleep(pause)
                pause *= 2
                continue
            for (key, _token, outcome), ok in zip(items, results, strict=True):
                if not ok:
                    logger.warning(
                        "durable entry %r: lease lost before %s was recorded (another "
                        "worker holds it now)",
                        key,
                        type(outcome).__name__,
                    )
            return list(results)
        raise AssertionError("unreachable")  # pragma: no cover
