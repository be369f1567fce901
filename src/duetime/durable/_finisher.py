"""Group finishes: the fenced finishes of one worker process, sent to the store in batches.

A claim's runs tend to end together (a no-op or short task ends within one loop
tick of its siblings).  Each run hands its outcome to the :class:`Finisher` and
waits for its own result; the finisher sends whatever has queued as one
``Store.finish_many`` call (one Redis script, one SQLite transaction), so a
worker pays one round trip per batch instead of one per entry.  Fencing stays per
row: each item gets its own True/False.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

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
    __slots__ = ("key", "outcome", "result", "token")

    def __init__(self, key: str, token: int, outcome: Outcome) -> None:
        self.key = key
        self.token = token
        self.outcome = outcome
        self.result: bool | None = None  # None until the batch is sent (False on failure)


class Finisher:
    """Sends the finishes of one process to ``store`` in groups.

    :param store: the store the finishes go to
    :param timeout: the longest one ``finish_many`` call may take before it counts
        as a failed attempt
    """

    def __init__(self, store: Store, timeout: float) -> None:
        self._store = store
        self._timeout = timeout
        self._queue: list[_Item] = []
        self._flushing: anyio.Event | None = None

    async def finish(self, key: str, token: int, outcome: Outcome) -> bool:
        """Record ``outcome`` for ``(key, token)`` with the finishes queued beside it.

        Cancellation-safe once queued: the item is sent even if this caller is
        cancelled (the batch is sent under a shield).

        :return: True if recorded; False if the token was no longer current, or
            the store failed :data:`ATTEMPTS` times (logged; the entry runs again
            when its lease lapses)
        """
        item = _Item(key, token, outcome)
        self._queue.append(item)
        while item.result is None:
            flushing = self._flushing
            if flushing is not None:
                await flushing.wait()
                continue
            done = self._flushing = anyio.Event()
            try:
                with CancelScope(shield=True):
                    # Let the runs that end in this tick queue theirs first: one
                    # call for all, not one for the first and one for the rest.
                    await anyio.lowlevel.cancel_shielded_checkpoint()
                    batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
                    results = await self._send(batch)
                    for it, ok in zip(batch, results, strict=True):
                        it.result = ok
            finally:
                self._flushing = None
                done.set()
        return item.result

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
