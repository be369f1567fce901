"""Where an instrumentation (``duetime.otel``) plugs into duetime.

One slot, :data:`probes.durable`, None while instrumentation is off: each hook
in the durable wing is one attribute read of it and a test for None, so an
uninstrumented program pays nothing more and imports nothing.  ``duetime.otel``
fills it with an object that has the methods of :class:`DurableProbe`.

Nothing here imports OpenTelemetry, or the durable wing (its values are typed
``Any`` to keep the layers apart).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol

__all__ = ["DurableProbe", "Probes", "probes"]


class DurableProbe(Protocol):
    """What the durable wing tells an instrumentation, one call per event."""

    async def send(
        self,
        add: Callable[[Sequence[Any]], Awaitable[list[Any]]],
        rows: Sequence[Any],
        batch: bool,
    ) -> list[Any]:
        """Store ``rows`` (``NewRow`` values) through ``add`` and return its entries;
        ``batch``: they come from ``defer_many``."""

    async def process(
        self,
        execute: Callable[[Any, Any], Awaitable[Any]],
        claim: Any,
        run: Any,
    ) -> Any:
        """Run ``execute(claim, run)`` (one claimed entry) and return its outcome."""

    def failed(self, error: BaseException) -> None:
        """The task of the run in progress (in this task) raised ``error``."""

    def finished(self, task: str, outcome: Any, recorded: bool, lost: bool) -> None:
        """A run of ``task`` ended: ``outcome`` (None: nothing to record) was
        ``recorded`` by the store or not; ``lost``: its lease was lost meanwhile."""

    def worker_started(self, store: Any, tg: Any) -> None:
        """A worker on ``store`` started in the task group ``tg`` (its entries by
        status may be observed from there until ``tg`` ends)."""


class Probes:
    """The instrumentation slots (one instance: :data:`probes`)."""

    __slots__ = ("durable",)

    def __init__(self) -> None:
        #: The durable wing's probe, or None (instrumentation off).
        self.durable: DurableProbe | None = None


#: The one set of slots every hook reads.
probes = Probes()
