"""What a WorkerPool measures: its counters' snapshot and an item's expected duration."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Estimate", "PoolStatistics"]

# Weight of the newest sample in the duration estimate once past the first few:
# the first 1/_EWMA_ALPHA samples are a plain running mean, then an EWMA, so the
# estimate settles fast and still follows a drift in item cost.
_EWMA_ALPHA = 0.2


@dataclass(frozen=True, slots=True)
class PoolStatistics:
    """A snapshot of a :class:`WorkerPool`'s counters.

    ``queued + running + completed + failed + cancelled + expired == submitted``
    at every moment: each submitted item is in exactly one of those states.

    :ivar submitted: items accepted by ``submit``/``submit_nowait``
    :ivar queued: accepted, not started
    :ivar running: started, not finished
    :ivar completed: the handler returned
    :ivar failed: the handler raised, was cut off by ``item_timeout``
        (``TimeoutError``) or by the deadline (:exc:`DeadlineExpired`)
    :ivar cancelled: cancelled before or while running
    :ivar expired: never started, because they could not finish before the deadline
    :ivar restarts: workers that crashed outside a handler and were replaced
    :ivar estimate: the running estimate of one item's duration, in seconds
    """

    submitted: int
    queued: int
    running: int
    completed: int
    failed: int
    cancelled: int
    expired: int
    restarts: int
    estimate: float


class Estimate:
    """The running estimate of one item's duration, and what an item needs to start.

    :param min_time: an item is not started unless at least this many seconds,
        and at least the estimate, remain before the deadline
    """

    __slots__ = ("_min_time", "_samples", "value")

    def __init__(self, min_time: float) -> None:
        self._min_time = min_time
        self._samples = 0
        #: Seconds, from the items that completed so far (0 before the first).
        self.value = 0.0

    def needed(self) -> float:
        """Seconds an item needs to be worth starting."""
        est = self.value
        return est if est > self._min_time else self._min_time

    def learn(self, seconds: float) -> None:
        """Fold in the duration of one item that completed."""
        self._samples += 1
        alpha = max(1.0 / self._samples, _EWMA_ALPHA)
        self.value += alpha * (seconds - self.value)
