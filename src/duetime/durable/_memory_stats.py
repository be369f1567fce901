"""MemoryStore's inspection queries (:meth:`~duetime.durable.Store.counts` and
the others): a scan of its dict, which is all a store for tests needs, and a
ring of per-minute counters its claim and finish paths bump."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import anyio.lowlevel

from .._vocab import Status
from ._activity import ActivityRing
from ._stats import Counts, EntryQuery, Minute
from ._store import Dead, Done, EntryDetail, NextOccurrence, Outcome, Page, RetryAt, page_from

if TYPE_CHECKING:
    from ._store import Entry

__all__ = ["MemoryInspection"]


class MemoryInspection:
    """The inspection half of MemoryStore (a mixin: it reads the store's rows)."""

    _rows: dict[str, Any]
    _activity: ActivityRing

    def _now(self) -> float:
        raise NotImplementedError

    def _purge(self, now: float) -> None:
        raise NotImplementedError

    def _live(self, key: str, now: float) -> Any:
        raise NotImplementedError

    def _record_finishes(self, items: Sequence[tuple[str, int, Outcome]], done: list[bool]) -> None:
        """Count the applied finishes (``done``: each item's result) in the
        activity ring, by outcome."""
        completed = failed = retried = 0
        for (key, _token, outcome), ok in zip(items, done, strict=True):
            row = self._rows.get(key)
            if not ok or row is None or row.status is Status.CANCELLED:
                continue  # a run an abort ended counts in none of the columns
            if isinstance(outcome, Done) or (
                isinstance(outcome, NextOccurrence) and outcome.error is None
            ):
                completed += 1
            elif isinstance(outcome, Dead | NextOccurrence):
                failed += 1
            elif isinstance(outcome, RetryAt):
                retried += 1
        self._activity.finished(self._now(), completed=completed, failed=failed, retried=retried)

    async def counts(self) -> Counts:
        """How many entries, per task and status (expired tombstones not counted)."""
        await anyio.lowlevel.checkpoint()
        self._purge(self._now())
        return Counts.of((r.task, r.status, 1) for r in self._rows.values())

    async def page(self, query: EntryQuery) -> Page:
        """One page of the entries ``query`` matches, in ``(due, key)`` order.

        :raises TypeError: a query that is not an EntryQuery
        """
        if not isinstance(query, EntryQuery):
            raise TypeError(f"page() takes an EntryQuery, not {type(query).__name__}")
        await anyio.lowlevel.checkpoint()
        self._purge(self._now())
        rows = sorted(
            (
                r
                for r in self._rows.values()
                if query.matches(r.task, r.status, r.key, r.due, r.schedule)
            ),
            key=lambda r: (r.due, r.key),
        )
        pairs: list[tuple[float, Entry]] = [(r.due, r.entry()) for r in rows[: query.limit + 1]]
        return page_from(pairs, query.limit)

    async def activity(self, minutes: int = 60) -> list[Minute]:
        """The last ``minutes`` minutes of claims and finishes, oldest first.

        :raises TypeError: minutes that is not an int
        :raises ValueError: minutes outside 1 to 60
        """
        await anyio.lowlevel.checkpoint()
        return self._activity.window(self._now(), minutes)

    async def inspect(self, key: str) -> EntryDetail | None:
        """Everything the store knows of ``key``, or None."""
        await anyio.lowlevel.checkpoint()
        now = self._now()
        row = self._live(key, now)
        if row is None:
            return None
        running = row.status.value == "RUNNING"
        return EntryDetail(
            entry=row.full_entry(now),
            payload=row.payload,
            owner=row.owner if running else None,
            lease_until=row.lease_until if running and math.isfinite(row.lease_until) else None,
            token=row.token,
            lease=row.lease,
            max_deliveries=row.max_deliveries,
            expires_at=row.expires_at if math.isfinite(row.expires_at) else None,
        )
