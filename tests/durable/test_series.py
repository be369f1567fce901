"""The series grid: drift-free interval points, the cron seam, misfire and overlap."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

# Unit tests of the series grid (the arithmetic behind defer_every), below the front.
from duetime.durable._series import (
    CronGrid,
    IntervalGrid,
    Series,
    parse_schedule,
    trigger_grid,
)


class EveryQuarterHour:
    """A stand-in for duetime.Cron: next_after() and to_spec() are the whole seam."""

    def next_after(self, when: datetime) -> datetime:
        base = when.replace(minute=(when.minute // 15) * 15, second=0, microsecond=0)
        return base + timedelta(minutes=15)

    def to_spec(self) -> str:
        return "*/15 * * * *"


def test_interval_points_are_multiplied_not_added() -> None:
    start = 1_700_000_000.123
    grid = IntervalGrid(start, 0.1)
    t = start
    for k in range(1, 10_001):
        t = grid.after(t)
        assert t == start + k * 0.1  # no accumulated float error
    assert grid.after(start - 5) == start
    assert grid.first(start - 5) == start
    assert grid.first(start + 0.05) == pytest.approx(start + 0.1)
    assert grid.latest(start + 1.05, start) == pytest.approx(start + 1.0)
    assert grid.latest(start + 1.0, start) == start + 10 * 0.1


def test_cron_grid_uses_next_after_only() -> None:
    grid = CronGrid(EveryQuarterHour())
    t0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC).timestamp()
    assert grid.first(t0) == t0  # at or after start
    assert grid.after(t0) == t0 + 900
    assert grid.latest(t0 + 3700, t0) == t0 + 3600
    assert grid.spec() == {"cron": "*/15 * * * *"}
    assert isinstance(trigger_grid(EveryQuarterHour(), t0), CronGrid)


def test_trigger_grid_accepts_intervals_only_or_cron_objects() -> None:
    assert trigger_grid(timedelta(minutes=1), 5.0) == IntervalGrid(5.0, 60.0)
    for bad in ("10", None, True, object()):
        with pytest.raises(TypeError, match="trigger"):
            trigger_grid(bad, 0.0)
    for bad_num in (0, -1, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="interval"):
            trigger_grid(bad_num, 0.0)


@pytest.mark.parametrize(
    ("misfire", "now", "expected"),
    [
        ("coalesce", 5.0, 0.0),  # on time
        ("coalesce", 35.0, 30.0),  # late by three points: once, for the latest
        ("skip", 35.0, None),
        ("catch_up", 35.0, 0.0),
    ],
)
def test_stands_for(misfire: str, now: float, expected: float | None) -> None:
    s = Series(IntervalGrid(0.0, 10.0), misfire, "skip")  # type: ignore[arg-type]
    assert s.stands_for(0.0, now, retried=False) == expected
    assert s.stands_for(3.0, now, retried=True) == 3.0


@pytest.mark.parametrize(
    ("misfire", "overlap", "expected"),
    [
        ("coalesce", "skip", 30.0),  # points 10, 20 came while it ran: skipped
        ("coalesce", "wait", 10.0),  # the first of them runs next
        ("catch_up", "skip", 10.0),  # every one of them runs
        ("coalesce", "allow", 10.0),
    ],
)
def test_next_due_after_a_long_run(misfire: str, overlap: str, expected: float) -> None:
    s = Series(IntervalGrid(0.0, 10.0), misfire, overlap)  # type: ignore[arg-type]
    assert s.next_due(0.0, 25.0) == expected
    assert s.next_due(0.0, 5.0) == 10.0


def test_schedule_text_round_trips_and_bad_text_is_refused() -> None:
    s = Series(IntervalGrid(100.0, 60.0), "skip", "wait")
    back = parse_schedule(s.dump(100.0))
    assert back == s
    good = json.loads(s.dump(100.0))
    for bad in (
        "nope",
        "{}",
        json.dumps({**good, "v": 2}),
        json.dumps({**good, "misfire": "later"}),
        json.dumps({**good, "trigger": {"every": 0}}),
        json.dumps({**good, "trigger": {"every": True}}),
        json.dumps({**good, "trigger": {"module": "os", "name": "system"}}),
    ):
        with pytest.raises(ValueError, match="schedule"):
            parse_schedule(bad)


def test_a_real_cron_round_trips_through_the_schedule_text() -> None:
    from duetime import Cron

    cron = Cron("0 2 * * *", tz="Europe/Paris")
    text = Series(CronGrid(cron), "coalesce", "skip").dump(0.0)
    back = parse_schedule(text)
    assert isinstance(back.grid, CronGrid)
    assert back.grid.cron == cron
    # 2026-03-29 is the spring-forward day in Paris: 02:00 is skipped, run at 03:00.
    t = datetime(2026, 3, 28, 12, tzinfo=UTC).timestamp()
    nxt = back.grid.after(t)
    assert nxt is not None
    assert datetime.fromtimestamp(nxt, UTC) == datetime(2026, 3, 29, 1, tzinfo=UTC)


def test_a_bad_cron_spec_is_refused() -> None:
    with pytest.raises(ValueError, match="cron spec"):
        parse_schedule(Series(CronGrid(EveryQuarterHour()), "coalesce", "skip").dump(0.0))
