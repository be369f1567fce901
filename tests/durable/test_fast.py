"""The producer's cheap paths give what the plain ones give: entries and rows
made without their dataclass ``__init__``, batch encoding, arity bounds."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
from dataclasses import FrozenInstanceError, dataclass
from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from duetime import Status
from duetime.durable import Entry, NewRow, TaskRegistry
from duetime.durable._codec import encode_args_exact, encode_args_many
from duetime.durable._fast import _same_fields, new_entry, new_row
from duetime.durable._keys import new_keys

NOW = datetime(2026, 12, 6, 12, 0, 0, 123456, tzinfo=UTC)

texts = st.text(max_size=8)
entries = st.tuples(
    texts,
    texts,
    st.tuples(st.integers(), texts),
    st.sampled_from(list(Status)),
    st.integers(min_value=1, max_value=9),
    st.none() | texts,
    st.integers(min_value=0, max_value=9),
    st.none() | texts,
    st.integers(min_value=0, max_value=9),
    st.booleans(),
)


@given(entries)
def test_new_entry_is_the_entry_the_constructor_makes(values: tuple[Any, ...]) -> None:
    key, task, args, status, attempt, error, occurrence, schedule, deliveries, ab = values
    made = new_entry(
        key, task, args, NOW, status, attempt, error, occurrence, schedule, deliveries, ab
    )
    plain = Entry(
        key, task, args, NOW, status, attempt, error, occurrence, schedule, deliveries,
        abort_requested=ab,
    )  # fmt: skip
    assert type(made) is Entry
    assert made == plain
    assert hash(made) == hash(plain)
    assert repr(made) == repr(plain)
    assert [getattr(made, f.name) for f in dataclasses.fields(Entry)] == [
        getattr(plain, f.name) for f in dataclasses.fields(Entry)
    ]


def test_a_new_entry_is_frozen_and_copies_like_any_entry() -> None:
    made = new_entry("k", "t", (1, "a"), NOW, Status.PENDING, 1, None, 0, None, 0, False)
    with pytest.raises(FrozenInstanceError):
        made.key = "other"  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        del made.task
    assert pickle.loads(pickle.dumps(made)) == made
    assert copy.copy(made) == made
    assert dataclasses.replace(made, status=Status.RUNNING).status is Status.RUNNING
    assert made.idempotency_key == "k"


@given(
    texts.filter(bool),
    texts.filter(bool),
    texts,
    st.none() | st.floats(min_value=0, max_value=1e9),
    st.none() | st.floats(min_value=0.1, max_value=1e3),
    st.integers(min_value=1, max_value=9),
    st.none() | texts,
)
def test_new_row_is_the_row_the_constructor_makes(
    key: str,
    task: str,
    payload: str,
    due: float | None,
    lease: float | None,
    max_deliveries: int,
    schedule: str | None,
) -> None:
    delay = 5.0 if due is None else None
    made = new_row(key, task, payload, due, delay, lease, max_deliveries, schedule)
    plain = NewRow(key, task, payload, due, delay, lease, max_deliveries, schedule)
    assert type(made) is NewRow
    assert made == plain
    assert repr(made) == repr(plain)
    with pytest.raises(FrozenInstanceError):
        made.key = "other"  # type: ignore[misc]


def test_the_twins_must_match_the_dataclass_fields() -> None:
    # A field added to Entry or NewRow (or one reordered) stops the import,
    # instead of making values with an unset slot.
    @dataclass(frozen=True, slots=True)
    class Grown:
        key: str
        task: str
        extra: int = 0

    def make(key: str, task: str) -> Grown:
        return Grown(key, task)

    with pytest.raises(RuntimeError, match="out of date with Grown"):
        _same_fields(Grown, make, ())  # type: ignore[arg-type]
    _same_fields(Grown, make, ("extra",))  # type: ignore[arg-type]


argsets = st.lists(
    st.lists(
        st.none()
        | st.booleans()
        | st.integers()
        | st.floats(allow_nan=False, allow_infinity=False)
        | st.text(max_size=6)
        | st.dates()
        | st.lists(st.integers(), max_size=2),
        max_size=3,
    ),
    max_size=5,
)


@given(argsets)
def test_encode_args_many_is_encode_args_exact_of_each(sets: list[list[Any]]) -> None:
    try:
        expected = [encode_args_exact(s) for s in sets]
    except ValueError:  # a lone surrogate in st.text()
        with pytest.raises(ValueError, match="lone surrogate"):
            encode_args_many(sets)
        return
    payloads, known = encode_args_many(sets)
    assert payloads == [text for text, _ in expected]
    assert known == {text: exact for text, exact in expected if exact is not None}


def test_encode_args_many_raises_what_encode_args_raises() -> None:
    with pytest.raises(TypeError, match=r"argument 1 has type set"):
        encode_args_many([(1,), (2, {3})])
    with pytest.raises(ValueError, match=r"argument 0\[1\] is a naive datetime"):
        encode_args_many([([date(2026, 1, 1), datetime(2026, 1, 1)],)])
    with pytest.raises(ValueError, match="lone surrogate"):
        encode_args_many([("ok",), ("\ud800",)])


def test_arity_bounds_agree_with_check_args() -> None:
    tasks = TaskRegistry()

    @tasks.task("two")
    def two(a: int, b: int = 0) -> None: ...

    @tasks.task("many")
    def many(a: int, *rest: int) -> None: ...

    @tasks.task("never")
    def never(a: int, *, b: int) -> None: ...

    tasks.task("unsigned")(max)  # no signature to check against: any count passes

    assert tasks.arity_bounds(tasks["unsigned"]) == (0, float("inf"))
    for name in ("two", "many", "never"):
        t = tasks[name]
        low, high = tasks.arity_bounds(t)
        for n in range(5):
            args = (1,) * n
            try:
                tasks.check_args(t, args)
            except TypeError:
                assert not low <= n <= high, (name, n)
            else:
                assert low <= n <= high, (name, n)


@pytest.mark.parametrize("n", [0, 1, 2, 1023, 1024, 1025, 3000])
def test_new_keys_count_within_a_batch(n: int) -> None:
    keys = new_keys(n)
    assert len(keys) == n
    if n > 1:  # one head (time and random bits), then a counter per key
        assert len({k[:-6] for k in keys}) == 1
        assert [int(k[-6:], 16) for k in keys] == list(range(n))
        assert all(len(k) == 38 for k in keys)
    elif n == 1:
        assert len(keys[0]) == 32


@pytest.mark.parametrize(
    ("values", "literal"),
    [
        ([3600.0] * 3, "{3600.0,3600.0,3600.0}"),
        ([5] * 3, "{5,5,5}"),
        ([None] * 3, "{NULL,NULL,NULL}"),
        ([0.0, -0.0], "{0.0,-0.0}"),  # equal, but not one literal
        ([-0.0, 0.0], "{-0.0,0.0}"),
        ([1, 1.0], "{1,1.0}"),  # equal, of two types
        ([1.0, 1], "{1.0,1}"),
        ([2.5, 2.5, 3.0], "{2.5,2.5,3.0}"),
        ([None, 1.5], "{NULL,1.5}"),
        ([None, "a"], '{NULL,"a"}'),
        (['a"b', "a\\b"], '{"a\\"b","a\\\\b"}'),
    ],
)
def test_a_uniform_array_column_is_written_as_any_other(values: list[Any], literal: str) -> None:
    pytest.importorskip("psycopg")
    from duetime.durable._postgres_conn import array

    assert array(values) == literal.encode()


def _old_add_args(rows: list[NewRow], default_lease: float) -> list[bytes]:
    """The ADD arguments as RedisStore.add wrote them with json.dumps."""
    from duetime.durable._redis_rows import arg, timestr

    out: list[Any] = []
    for row in rows:
        fields: dict[str, Any] = {
            "t": row.task,
            "p": row.payload,
            "l": timestr(default_lease if row.lease is None else row.lease),
            "md": row.max_deliveries,
        }
        if row.schedule is not None:
            fields["sch"] = row.schedule
        out += [
            row.key,
            json.dumps(fields),
            "" if row.due is None else timestr(row.due),
            "" if row.delay is None else timestr(row.delay),
        ]
    return [arg(a) for a in out]


new_rows = st.builds(
    NewRow,
    key=st.text(min_size=1, max_size=4),
    task=st.sampled_from(["t", 't{}"é', "other"]),
    payload=st.text(max_size=6).filter(lambda p: not any(0xD800 <= ord(c) < 0xE000 for c in p)),
    due=st.none(),
    delay=st.sampled_from([0, 0.0, 5.0, 1e-7, 3600.0]),
    lease=st.sampled_from([None, 1.5, 30.0]),
    max_deliveries=st.sampled_from([1, 5]),
    schedule=st.sampled_from([None, '{"every": 1}']),
) | st.builds(
    NewRow,
    key=st.text(min_size=1, max_size=4),
    task=st.just("t"),
    payload=st.just("[]"),
    due=st.floats(min_value=0, max_value=1e10),
    lease=st.none(),
)


@settings(deadline=None)  # the first example imports coredis
@given(st.lists(new_rows, max_size=6))
def test_redis_add_args_are_what_json_dumps_wrote(rows: list[NewRow]) -> None:
    pytest.importorskip("coredis")
    from duetime.durable._redis_rows import add_args

    assert add_args(rows, 30.0) == _old_add_args(rows, 30.0)


redis_rows = st.fixed_dictionaries(
    {
        "k": st.just("k") | st.integers(),
        "t": st.just("t"),
        "p": st.sampled_from(["[1]", "not json", 7]),
        "d": st.sampled_from(["1796000000.5", "1e400", "nan", "x", 1796000000, 1e300]),
        "s": st.sampled_from(["PENDING", "RUNNING", "LOST", 3]),
        "a": st.sampled_from([1, 2.0, 1.5, True, "1"]),
        "o": st.just(0),
        "dl": st.sampled_from([0, None]),
    },
    optional={
        "e": st.sampled_from([None, "boom", 5]),
        "sch": st.sampled_from([None, '{"every": 1}', []]),
        "ab": st.sampled_from([1, 2, True, None]),
    },
)


@settings(deadline=None)
@given(redis_rows)
def test_redis_rows_read_as_the_checked_way_reads_them(fields: dict[str, Any]) -> None:
    pytest.importorskip("coredis")
    from duetime.durable._redis_rows import _int, number, read, string, unreadable
    from duetime.durable._store import entry_args, utc

    def checked(row: dict[str, Any]) -> Entry:
        statuses = {s.value: s for s in Status}
        try:
            status = statuses.get(row.get("s"))  # type: ignore[arg-type]
            if status is None:
                raise ValueError("field 's' is not a status")
            abort = row.get("ab")
            if abort is not None and (
                type(abort) is not int or abort != 1 or status is not Status.RUNNING
            ):
                raise ValueError("field 'ab' is not an abort request (1, on a RUNNING row)")
            return Entry(
                key=string(row, "k"),
                task=string(row, "t"),
                args=entry_args(string(row, "p")),
                due=utc(number(row, "d")),
                status=status,
                attempt=_int(row, "a"),
                last_error=string(row, "e", optional=True),
                occurrence=_int(row, "o"),
                schedule=string(row, "sch", optional=True),
                deliveries=_int(row, "dl"),
                abort_requested=abort == 1,
            )
        except (ValueError, TypeError, OverflowError) as exc:
            return unreadable("key", exc)

    assert read("key", json.dumps(fields)) == checked(fields)
