"""A ring of per-minute counters kept in process memory (MemoryStore's and the
third-party test store's :meth:`~duetime.durable.Store.activity`)."""

from __future__ import annotations

from dataclasses import dataclass

from ._stats import ACTIVITY_MINUTES, Minute, check_minutes, minutes_window

__all__ = ["ActivityRing"]


@dataclass(slots=True)
class _Slot:
    minute: int = -1
    started: int = 0
    completed: int = 0
    failed: int = 0
    retried: int = 0
    late_total: float = 0.0
    late_max: float = 0.0


class ActivityRing:
    """The last :data:`ACTIVITY_MINUTES` (plus a few) minutes of claims and finishes."""

    __slots__ = ("_slots",)

    _SIZE = ACTIVITY_MINUTES + 4

    def __init__(self) -> None:
        self._slots = [_Slot() for _ in range(self._SIZE)]

    def _slot(self, now: float) -> _Slot:
        minute = int(now // 60)
        slot = self._slots[minute % self._SIZE]
        if slot.minute != minute:
            slot.__init__()  # type: ignore[misc]
            slot.minute = minute
        return slot

    def claimed(self, now: float, dues: list[float]) -> None:
        """Record claims at ``now`` of rows due at ``dues``."""
        if not dues:
            return
        slot = self._slot(now)
        late = [max(0.0, now - d) for d in dues]
        slot.started += len(dues)
        slot.late_total += sum(late)
        slot.late_max = max(slot.late_max, *late)

    def finished(
        self, now: float, *, completed: int = 0, failed: int = 0, retried: int = 0
    ) -> None:
        """Record finishes at ``now``."""
        if completed or failed or retried:
            slot = self._slot(now)
            slot.completed += completed
            slot.failed += failed
            slot.retried += retried

    def window(self, now: float, minutes: int) -> list[Minute]:
        """The last ``minutes`` minutes, oldest first.

        :raises TypeError: minutes that is not an int
        :raises ValueError: minutes outside 1 to :data:`ACTIVITY_MINUTES`
        """
        check_minutes(minutes)
        out = []
        for minute in minutes_window(now, minutes):
            s = self._slots[minute % self._SIZE]
            if s.minute != minute:
                out.append(Minute(minute * 60.0))
            else:
                out.append(
                    Minute(
                        minute * 60.0,
                        s.started,
                        s.completed,
                        s.failed,
                        s.retried,
                        s.late_total,
                        s.late_max,
                    )
                )
        return out
