"""duetime.Cron: fire times (with Debian cron's DST rules), min_gap, specs, bad input.

Pure computation on the trigger: no scheduler, no sleeps.
"""

from __future__ import annotations

import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from itertools import pairwise
from zoneinfo import ZoneInfo

import pytest

from duetime._cron import Cron

PARIS = ZoneInfo("Europe/Paris")
HOUR = 3600.0


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def utc_on(d: date, hour: int) -> datetime:
    return datetime(d.year, d.month, d.day, hour, tzinfo=UTC)


def fires(cron: Cron, start: datetime, end: datetime) -> list[datetime]:
    """Every fire time in [start, end), chained as a series would chain them."""
    out: list[datetime] = []
    t = cron.next_at_or_after(start)
    while t is not None and t < end:
        out.append(t)
        t = cron.next_after(t)
    return out


def daily_0200_paris(year: int) -> list[datetime]:
    """02:00 Paris every day; on the spring-forward day 02:00 does not exist."""
    out = []
    d = date(year, 1, 1)
    while d.year == year:
        local = datetime(d.year, d.month, d.day, 2, tzinfo=PARIS)  # fold=0: first pass
        if local != local.astimezone(UTC).astimezone(PARIS):  # imaginary
            local = datetime(d.year, d.month, d.day, 3, tzinfo=PARIS)
        out.append(local.astimezone(UTC))
        d += timedelta(days=1)
    return out


# --- a year of "0 2 * * *" in Europe/Paris ----------------------------------


@pytest.mark.parametrize(
    ("year", "count", "spring", "fall"),
    [
        (2024, 366, date(2024, 3, 31), date(2024, 10, 27)),
        (2025, 365, date(2025, 3, 30), date(2025, 10, 26)),
    ],
)
def test_a_year_of_0200_in_paris(year: int, count: int, spring: date, fall: date) -> None:
    cron = Cron("0 2 * * *", tz="Europe/Paris")
    got = fires(cron, datetime(year, 1, 1, tzinfo=PARIS), datetime(year + 1, 1, 1, tzinfo=PARIS))
    assert len(got) == count
    assert got == daily_0200_paris(year)
    assert all(t.tzinfo is UTC for t in got)
    by_day = {t.astimezone(PARIS).date(): t for t in got}
    assert len(by_day) == count  # once a day, every day
    one_day = timedelta(days=1)
    # Spring forward (02:00+01:00 -> 03:00+02:00): the day before at 02:00+01:00,
    # the day itself at 03:00+02:00 (the first instant after the gap), then 02:00+02:00.
    assert by_day[spring - one_day] == utc_on(spring - one_day, 1)
    assert by_day[spring] == utc_on(spring, 1)
    assert by_day[spring].astimezone(PARIS).isoformat() == f"{spring}T03:00:00+02:00"
    assert by_day[spring + one_day] == utc_on(spring + one_day, 0)
    # Fall back (03:00+02:00 -> 02:00+01:00): 02:00 happens twice, the job runs
    # once, in the first pass (+02:00); the next day at 02:00+01:00.
    assert by_day[fall - one_day] == utc_on(fall - one_day, 0)
    assert by_day[fall] == utc_on(fall, 0)
    assert by_day[fall].astimezone(PARIS).isoformat() == f"{fall}T02:00:00+02:00"
    assert by_day[fall + one_day] == utc_on(fall + one_day, 1)
    # Real gaps: 24 h, except 23 h after the spring-forward day and 25 h across fall back.
    gaps = {(b - a).total_seconds() / HOUR for a, b in pairwise(got)}
    assert gaps == {23.0, 24.0, 25.0}


# --- fixed times inside a skipped or a repeated hour -------------------------


def test_spring_forward_0230_runs_once_at_0300() -> None:
    cron = Cron("30 2 * * *", tz="Europe/Paris")
    got = fires(
        cron, datetime(2024, 3, 30, 12, tzinfo=PARIS), datetime(2024, 4, 1, 12, tzinfo=PARIS)
    )
    assert [t.astimezone(PARIS).isoformat() for t in got] == [
        "2024-03-31T03:00:00+02:00",
        "2024-04-01T02:30:00+02:00",
    ]
    # Other zones, other gap times: New York skips 02:00-03:00 on 2024-03-10.
    ny = Cron("30 2 * * *", tz="America/New_York")
    assert ny.next_after(utc(2024, 3, 10, 0)) == utc(2024, 3, 10, 7, 0)  # 03:00 EDT


def test_fall_back_0230_runs_once() -> None:
    cron = Cron("30 2 * * *", tz="Europe/Paris")
    got = fires(
        cron, datetime(2024, 10, 26, 12, tzinfo=PARIS), datetime(2024, 10, 28, 12, tzinfo=PARIS)
    )
    assert got == [utc(2024, 10, 27, 0, 30), utc(2024, 10, 28, 1, 30)]
    assert got[0].astimezone(PARIS).isoformat() == "2024-10-27T02:30:00+02:00"


def test_a_start_in_the_second_pass_does_not_fire_in_the_past() -> None:
    # 02:15+01:00 is after 02:30+02:00 (the day's one run, already passed).
    cron = Cron("30 2 * * *", tz="Europe/Paris")
    second_pass = utc(2024, 10, 27, 1, 15)
    assert second_pass.astimezone(PARIS).fold == 1
    assert cron.next_at_or_after(second_pass) == utc(2024, 10, 28, 1, 30)
    assert cron.next_after(second_pass) == utc(2024, 10, 28, 1, 30)


def test_several_fixed_times_in_the_gap_run_once() -> None:
    cron = Cron("0,30 2 * * *", tz="Europe/Paris")
    got = fires(cron, utc(2024, 3, 30, 12), utc(2024, 3, 31, 12))
    assert got == [utc(2024, 3, 31, 1, 0)]  # 02:00 and 02:30 both run at 03:00+02:00, once


# --- wildcard expressions follow real time ----------------------------------


def test_every_5_minutes_over_a_day() -> None:
    cron = Cron("*/5 * * * *")
    got = fires(cron, utc(2024, 6, 1), utc(2024, 6, 2))
    assert len(got) == 288
    assert got[0] == utc(2024, 6, 1, 0, 0)
    assert got[-1] == utc(2024, 6, 1, 23, 55)
    assert {(b - a).total_seconds() for a, b in pairwise(got)} == {300.0}


def test_every_5_minutes_over_a_day_in_paris_and_across_dst() -> None:
    cron = Cron("*/5 * * * *", tz="Europe/Paris")

    def local_day(d: date) -> list[datetime]:
        nxt = d + timedelta(days=1)
        return fires(
            cron,
            datetime(d.year, d.month, d.day, tzinfo=PARIS),
            datetime(nxt.year, nxt.month, nxt.day, tzinfo=PARIS),
        )

    assert len(local_day(date(2024, 6, 1))) == 288
    # Every 5 real minutes, whatever the wall clock does: 23 h and 25 h days.
    for d, count in [(date(2024, 3, 31), 276), (date(2024, 10, 27), 300)]:
        got = local_day(d)
        assert len(got) == count
        assert {(b - a).total_seconds() for a, b in pairwise(got)} == {300.0}


def test_a_minute_step_runs_in_both_passes_of_the_repeated_hour() -> None:
    cron = Cron("*/15 * * * *", tz="Europe/Paris")
    # 2024-10-27 00:00Z-02:00Z is 02:00-02:59 local twice (+02:00, then +01:00).
    got = fires(cron, utc(2024, 10, 27, 0, 0), utc(2024, 10, 27, 2, 0))
    assert [t.astimezone(PARIS).isoformat()[11:] for t in got] == [
        "02:00:00+02:00",
        "02:15:00+02:00",
        "02:30:00+02:00",
        "02:45:00+02:00",
        "02:00:00+01:00",
        "02:15:00+01:00",
        "02:30:00+01:00",
        "02:45:00+01:00",
    ]
    # And nothing is caught up in a skipped hour: 01:45+01:00, then 03:00+02:00.
    spring = Cron("*/15 * * * *", tz="Europe/Paris")
    assert spring.next_after(utc(2024, 3, 31, 0, 45)) == utc(2024, 3, 31, 1, 0)


def test_hourly_is_a_wildcard_and_runs_in_both_passes() -> None:
    for expr in ("0 * * * *", "@hourly"):
        got = fires(
            Cron(expr, tz="Europe/Paris"), utc(2024, 10, 26, 23, 30), utc(2024, 10, 27, 2, 30)
        )
        assert got == [utc(2024, 10, 27, 0, 0), utc(2024, 10, 27, 1, 0), utc(2024, 10, 27, 2, 0)]


# --- next_after / next_at_or_after -------------------------------------------


def test_next_after_is_strict_and_next_at_or_after_is_not() -> None:
    cron = Cron("0 2 * * *", tz="Europe/Paris")
    fire = utc(2024, 6, 1, 0, 0)  # 02:00+02:00
    assert cron.next_at_or_after(fire) == fire
    assert cron.next_after(fire) == utc(2024, 6, 2, 0, 0)
    assert cron.next_at_or_after(fire + timedelta(microseconds=1)) == utc(2024, 6, 2, 0, 0)
    assert cron.next_at_or_after(fire - timedelta(microseconds=1)) == fire
    assert cron.next_after(fire - timedelta(microseconds=1)) == fire
    # Any zone in, UTC out.
    assert cron.next_at_or_after(fire.astimezone(ZoneInfo("Asia/Tokyo"))) == fire
    assert cron.next_after(utc(2024, 6, 1, 0, 0, 30)) == utc(2024, 6, 2, 0, 0)


def test_no_fire_time_left_is_none() -> None:
    cron = Cron("0 0 1 1 *")
    assert cron.next_after(datetime(9999, 6, 1, tzinfo=UTC)) is None
    assert cron.next_at_or_after(datetime.min.replace(tzinfo=UTC)) is None


def test_next_after_rejects_naive_and_non_datetimes() -> None:
    cron = Cron("0 2 * * *")
    with pytest.raises(ValueError, match="naive datetime"):
        cron.next_after(datetime(2024, 1, 1))
    with pytest.raises(ValueError, match="naive datetime"):
        cron.next_at_or_after(datetime(2024, 1, 1))
    with pytest.raises(TypeError, match="aware datetime"):
        cron.next_after(1.5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="aware datetime"):
        cron.next_at_or_after(date(2024, 1, 1))  # type: ignore[arg-type]


# --- min_gap ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "tz", "gap"),
    [
        ("* * * * *", "UTC", 60.0),
        ("*/5 * * * *", "UTC", 300.0),
        ("*/5 * * * *", "Europe/Paris", 300.0),
        ("*/25 * * * *", "UTC", 600.0),  # :50 -> :00
        ("0 * * * *", "Europe/Paris", HOUR),
        ("0 2 * * *", "UTC", 24 * HOUR),
        ("0 2 * * *", "Europe/Paris", 23 * HOUR),  # 03:00+02:00 (spring day) -> 02:00+02:00
        ("30 2 * * *", "Europe/Paris", 23.5 * HOUR),  # 02:30+01:00 -> 03:00+02:00
        ("0 9,17 * * *", "UTC", 8 * HOUR),
        ("0 9,17 * * *", "Europe/Paris", 8 * HOUR),
        ("59 1,2 * * *", "Europe/Paris", 60.0),  # 01:59+01:00 -> 02:59 skipped, run at 03:00
        ("0 1,3 * * *", "Europe/Paris", HOUR),  # 01:00+01:00 -> 03:00+02:00 on spring day
        ("0 0 * * MON", "Europe/Paris", 23 * HOUR),  # a lower bound: computed as if daily
        ("@daily", "America/New_York", 23 * HOUR),
        ("30 2 * * *", "Australia/Lord_Howe", 23.5 * HOUR),  # a 30-minute DST shift
        ("0 2 * * *", "Asia/Tokyo", 24 * HOUR),  # no DST
    ],
)
def test_min_gap(expr: str, tz: str, gap: float) -> None:
    cron = Cron(expr, tz=tz)
    assert cron.min_gap == gap
    assert cron.min_gap == gap  # cached, same answer


def test_min_gap_is_never_more_than_a_real_gap() -> None:
    # Every real gap over two years of a few expressions is >= min_gap.
    for expr in ("0 1,3 * * *", "59 1,2 * * *", "0,40 2 * * *", "*/25 * * * *"):
        cron = Cron(expr, tz="Europe/Paris")
        got = fires(cron, utc(2024, 3, 29), utc(2024, 4, 2)) + fires(
            cron, utc(2024, 10, 25), utc(2024, 10, 29)
        )
        gaps = [(b - a).total_seconds() for a, b in pairwise(got) if b - a < timedelta(days=2)]
        assert min(gaps) >= cron.min_gap
        assert min(gaps) == cron.min_gap


# --- identity and specs ------------------------------------------------------


def test_attributes_repr_eq_hash() -> None:
    cron = Cron("0  2 * * *", tz=PARIS)
    assert cron.expr == "0 2 * * *"
    assert cron.tz == PARIS
    assert isinstance(cron.tz, ZoneInfo)
    assert repr(cron) == "Cron('0 2 * * *', tz='Europe/Paris')"
    same = Cron("0 2 * * *", tz="Europe/Paris")
    assert cron == same
    assert hash(cron) == hash(same)
    assert cron != Cron("0 2 * * *")
    assert cron != Cron("0 3 * * *", tz="Europe/Paris")
    assert cron != "0 2 * * *"
    assert len({cron, same}) == 1
    assert Cron("0 2 * * *").tz == ZoneInfo("UTC")
    with pytest.raises(AttributeError):
        cron.expr = "x"  # type: ignore[misc]
    with pytest.raises(AttributeError, match="immutable"):
        cron._tz = PARIS


def test_spec_round_trip() -> None:
    import json

    for cron in (
        Cron("0 2 * * *", tz="Europe/Paris"),
        Cron("*/5 * * * *"),
        Cron("@daily", "Asia/Tokyo"),
    ):
        spec = cron.to_spec()
        assert spec == {"kind": "cron", "expr": cron.expr, "tz": cron.tz.key}
        back = Cron.from_spec(json.loads(json.dumps(spec)))
        assert back == cron
        assert back.next_after(utc(2024, 3, 30)) == cron.next_after(utc(2024, 3, 30))


def test_bad_specs() -> None:
    with pytest.raises(TypeError, match="must be a dict"):
        Cron.from_spec("0 2 * * *")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not a cron spec"):
        Cron.from_spec({"kind": "interval", "expr": "0 2 * * *", "tz": "UTC"})
    with pytest.raises(ValueError, match="not a cron spec"):
        Cron.from_spec({"kind": "cron", "expr": "0 2 * * *"})
    with pytest.raises(ValueError, match="bad hour field '24'"):
        Cron.from_spec({"kind": "cron", "expr": "0 24 * * *", "tz": "UTC"})
    with pytest.raises(TypeError, match="must be a str"):
        Cron.from_spec({"kind": "cron", "expr": 5, "tz": "UTC"})


# --- bad input --------------------------------------------------------------


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("61 2 * * *", "bad minute field '61'"),
        ("0 24 * * *", "bad hour field '24'"),
        ("0 2 32 * *", "bad day-of-month field '32'"),
        ("0 2 30 2 *", "bad day-of-month field '30'"),  # never in February
        ("0 2 * 13 *", "bad month field '13'"),
        ("0 2 * * 8", "bad day-of-week field '8'"),
        ("0 2 * * FRY", "bad day-of-week field 'FRY'"),
        ("*/0 2 * * *", "bad minute field '\\*/0'"),
        ("0 2 * *", "expected 5 fields .* got 4"),
        ("0 0 2 * * *", "expected 5 fields .* got 6"),  # no seconds field
        ("", "expected 5 fields .* got 0"),
        ("@reboot", "unknown nickname '@reboot'"),
    ],
)
def test_invalid_expressions_quote_the_field(expr: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as info:
        Cron(expr)
    assert repr(expr) in str(info.value)


def test_bad_zones_and_types() -> None:
    with pytest.raises(ValueError, match="unknown time zone 'Europe/Pariss'"):
        Cron("0 2 * * *", tz="Europe/Pariss")
    with pytest.raises(ValueError, match="unknown time zone"):
        Cron("0 2 * * *", tz="../etc/passwd")
    with pytest.raises(ValueError, match="unknown time zone"):
        Cron("0 2 * * *", tz="")
    with pytest.raises(TypeError, match="tz must be"):
        Cron("0 2 * * *", tz=UTC)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cron expression must be a str"):
        Cron(["0", "2", "*", "*", "*"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cron expression must be a str"):
        Cron(None)  # type: ignore[arg-type]


def test_nicknames_are_case_insensitive() -> None:
    assert Cron("@DAILY").next_after(utc(2024, 1, 1, 12)) == utc(2024, 1, 2)
    assert Cron("@weekly").next_after(utc(2024, 1, 1)) == utc(2024, 1, 7)  # Sunday
    assert Cron("@monthly").next_after(utc(2024, 1, 1)) == utc(2024, 2, 1)
    assert Cron("@yearly") != Cron("@annually")  # equality is textual


# --- without the extra -------------------------------------------------------


def test_without_the_extra_cron_raises_an_import_error_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "cronsim", None)  # "import cronsim" now fails
    with pytest.raises(ImportError, match=r"pip install 'duetime\[cron\]'"):
        Cron("0 2 * * *")
    with pytest.raises(ImportError, match=r"duetime\[cron\]"):
        Cron("not even valid")  # the missing extra is reported first


def test_import_duetime_does_not_need_the_extra() -> None:
    code = (
        "import sys; sys.modules['cronsim'] = None\n"
        "import duetime, duetime._cron\n"
        "try:\n"
        "    duetime._cron.Cron('0 2 * * *')\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    )
    assert "pip install 'duetime[cron]'" in out.stdout
