"""Entries by status: the ``duetime.entries`` gauge, read from each worker's store.

A metric collection happens on the collector's thread (a Prometheus scrape, a
periodic exporter), where the store cannot be called: the store is async and
belongs to the worker's event loop.  So the gauge reports the last count, and
a collection asks the worker's loop for a new one: a task in the worker's task
group counts when asked, at most once per ``interval`` seconds, and sleeps
otherwise (no count is taken while nobody collects; the first collection after
a worker starts reports nothing for it yet).

A store is asked ``await store.counts()`` (one query: the Store protocol's
:class:`~duetime.durable.Counts`, or a mapping of status to count); an object
without ``counts`` is counted through ``entries(status=...)``, up to
:data:`CAP` entries per status.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterable, Mapping
from typing import Any

import anyio
import anyio.from_thread
import anyio.lowlevel
from opentelemetry.metrics import CallbackOptions, Meter, Observation

from .._vocab import Status
from ..durable import Counts
from . import _semconv as sc

__all__ = ["CAP", "DURABLE_STATUSES", "StatusCounts"]

#: The most entries of one status counted through ``Store.entries``.
CAP = 10_000
#: The statuses a durable entry can have.
DURABLE_STATUSES = (
    Status.PENDING,
    Status.RUNNING,
    Status.COMPLETED,
    Status.FAILED,
    Status.CANCELLED,
)


async def count(store: Any) -> dict[str, int]:
    """``store``'s entries by status name (at most :data:`CAP` each without ``counts``)."""
    counts = getattr(store, "counts", None)
    if callable(counts):
        got = await counts()
        answer: Mapping[Any, int] = got.by_status if isinstance(got, Counts) else got
        found = {str(Status(k)): int(v) for k, v in answer.items()}
        return {str(s): found.get(str(s), 0) for s in DURABLE_STATUSES}
    result: dict[str, int] = {}
    for status in DURABLE_STATUSES:
        result[str(status)] = len(await store.entries(status=status, limit=CAP))
    return result


class _Watched:
    """One worker's store: its last count, and the task that refreshes it."""

    def __init__(self, store: Any, interval: float) -> None:
        self.store = store
        self.interval = interval
        self.counts: dict[str, int] = {}
        self._wanted = anyio.Event()
        self._asked = False
        self._token = anyio.lowlevel.current_token()
        self._thread = threading.get_ident()
        self.done = False

    def want(self) -> None:
        """Ask for a new count (from any thread); a no-op while one is asked for."""
        if self._asked or self.done:
            return
        self._asked = True
        try:
            if threading.get_ident() == self._thread:
                self._wanted.set()
            else:
                anyio.from_thread.run_sync(self._wanted.set, token=self._token)
        except Exception:  # the loop is gone: nothing more to count
            self.done = True

    async def serve(self) -> None:
        """Count when asked, at most once per interval, until cancelled."""
        try:
            while True:
                await self._wanted.wait()
                self._wanted = anyio.Event()
                # An outage (the worker logs it): keep the last count.
                with contextlib.suppress(Exception):
                    self.counts = await count(self.store)
                self._asked = False
                await anyio.sleep(self.interval)
        finally:
            self.done = True


class StatusCounts:
    """The ``duetime.entries`` gauge over the stores of this process's workers.

    :param meter: where the gauge is made
    :param interval: the least time between two counts of one store (seconds)
    """

    def __init__(self, meter: Meter, interval: float) -> None:
        self._interval = interval
        self._watched: list[_Watched] = []
        meter.create_observable_gauge(
            "duetime.entries",
            callbacks=[self._observe],
            unit="{entry}",
            description="Entries in the store by status (the last count; see the guide).",
        )

    def watch(self, store: Any, tg: Any) -> _Watched:
        """Count ``store``'s entries from a task in ``tg`` while it runs."""
        watched = _Watched(store, self._interval)
        self._watched.append(watched)
        tg.start_soon(watched.serve, name="duetime otel entries by status")
        return watched

    def _observe(self, _options: CallbackOptions) -> Iterable[Observation]:
        self._watched = [w for w in self._watched if not w.done]
        seen: dict[str, int] = {}
        for watched in self._watched:
            watched.want()
            seen.update(watched.counts)  # one store shared by two workers: counted once
        return [
            Observation(n, {sc.SYSTEM: sc.SYSTEM_NAME, sc.STATUS: status})
            for status, n in seen.items()
        ]
