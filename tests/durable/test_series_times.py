"""series_times: a series' next due times from its stored schedule."""

from __future__ import annotations

import pytest

from duetime.durable import series_times, utc

SPEC = '{"v":1,"trigger":{"every":60.0},"start":%r,"misfire":"coalesce","overlap":"skip"}'


def test_the_due_time_then_the_grid() -> None:
    start = 1704067200.0
    assert series_times(SPEC % start, start + 120, 4) == [
        start + 120, start + 180, start + 240, start + 300,
    ]  # fmt: skip


def test_a_due_time_read_back_as_a_datetime_is_not_repeated() -> None:
    start = 1765025749.3217263  # not a whole number of microseconds
    due = utc(start).timestamp()
    assert due != start
    times = series_times(SPEC % start, due, 3)
    assert times[0] == due
    assert times[1:] == [start + 60, start + 120]


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="schedule"):
        series_times("{}", 0.0)
    with pytest.raises(ValueError, match="count"):
        series_times(SPEC % 0.0, 0.0, 0)
