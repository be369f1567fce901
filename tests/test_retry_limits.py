"""Retry at its limits: thousands of attempts, huge factors, and the default cap.

Overflow and limits: no arithmetic on user numbers may raise
inside the timer loop; a Retry with factor 2 and thousands of attempts caps at
max_backoff.
"""

from __future__ import annotations

import itertools
import math
import sys

import anyio
import pytest
from hypothesis import given
from hypothesis import strategies as st

import duetime
from duetime import Retry, Scheduler


@pytest.mark.anyio
async def test_thousands_of_attempts_cap_at_max_backoff_and_others_fire_on_time() -> None:
    """Attempt 1025 used to overflow ``2.0 ** 1024`` and crash the scheduler."""
    attempts: list[tuple[int, float]] = []

    def flaky() -> str:
        info = duetime.current_run()
        attempts.append((info.attempt, anyio.current_time()))
        if info.attempt < 2000:
            raise ConnectionError("still down")
        return "up"

    fired: list[float] = []
    retry = Retry(attempts=10_000, backoff=0.01, factor=2.0, max_backoff=1.0, jitter=0)
    async with Scheduler() as s:
        start = anyio.current_time()
        h = s.call_soon(flaky, retry=retry)
        # Due well after attempt 1025, when the pause would have overflowed.
        bystander = s.call_later(1500.0, lambda: fired.append(anyio.current_time()))
        assert await h == "up"
        await bystander
    assert len(attempts) == 2000
    assert [a for a, _ in attempts] == list(range(1, 2001))
    pauses = [b - a for (_, a), (_, b) in itertools.pairwise(attempts)]
    # 0.01, 0.02, ... 0.64, then the cap from the 8th pause on.
    assert pauses[:7] == pytest.approx([0.01 * 2**k for k in range(7)], abs=1e-6)
    assert pauses[7:] == pytest.approx([1.0] * (len(pauses) - 7), abs=1e-6)
    assert fired == [pytest.approx(start + 1500.0, abs=1e-6)]
    stats = s.statistics()
    assert (stats.completed, stats.failed, stats.cancelled) == (2, 0, 0)


@pytest.mark.parametrize(
    "attempt", [1025, 1100, 10**6, 10**400], ids=["1025", "1100", "1e6", "1e400"]
)
def test_pause_of_a_late_attempt_is_the_cap(attempt: int) -> None:
    r = Retry(attempts=10**500, backoff=0.01, factor=2.0, max_backoff=1.0, jitter=0)
    assert r.pause(attempt) == 1.0


finite = st.floats(min_value=0, max_value=sys.float_info.max, allow_nan=False)


@given(
    backoff=finite,
    factor=st.floats(min_value=1, max_value=sys.float_info.max),
    extra=finite,
    jitter=st.floats(min_value=0, max_value=0.999),
    attempt=st.one_of(st.integers(1, 5000), st.integers(1, 10**400)),
)
def test_pause_never_raises_and_stays_in_range(
    backoff: float, factor: float, extra: float, jitter: float, attempt: int
) -> None:
    max_backoff = min(backoff + extra, sys.float_info.max)
    r = Retry(
        attempts=10**500, backoff=backoff, factor=factor, max_backoff=max_backoff, jitter=jitter
    )
    pause = r.pause(attempt)
    assert math.isfinite(pause)
    assert 0 <= pause <= max_backoff * (1 + jitter)


def test_pause_values_below_the_cap_are_exact() -> None:
    r = Retry(attempts=10, backoff=1, factor=3, max_backoff=20, jitter=0)
    assert [r.pause(n) for n in range(1, 6)] == [1, 3, 9, 20, 20]
    # A tiny backoff and a huge factor: factor ** k alone overflows, the product does not.
    tiny = Retry(attempts=100, backoff=1e-300, factor=1e200, max_backoff=1e300, jitter=0)
    assert tiny.pause(2) == pytest.approx(1e-100)
    assert tiny.pause(3) == pytest.approx(1e100)
    assert tiny.pause(4) == 1e300


def test_backoff_above_the_default_cap_says_so() -> None:
    with pytest.raises(ValueError, match=r"max_backoff=30\.0 \(the default is 30\.0\)"):
        Retry(backoff=60)
    assert Retry(backoff=60, max_backoff=600).pause(1) == pytest.approx(60, rel=0.11)
