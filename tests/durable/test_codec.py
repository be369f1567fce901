"""The argument codec: strict JSON plus unambiguous tags, hostile payloads."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from enum import Enum
from typing import Any
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

# Unit and property tests of the argument codec, below the front (defer uses it).
from duetime.durable._codec import (
    MAX_DEPTH,
    MAX_PAYLOAD,
    PayloadError,
    decode_args,
    encode_args,
    encode_args_exact,
    known_args,
    known_payloads,
)
from duetime.durable._store import entry_args


def roundtrip(*args: Any) -> tuple[Any, ...]:
    return decode_args(encode_args(args))


def test_tagged_types_round_trip() -> None:
    args = (
        datetime(2026, 12, 1, 9, 30, 1, 123456, tzinfo=UTC),
        datetime(2026, 3, 29, 2, 30, tzinfo=timezone(timedelta(hours=2))),
        date(2026, 2, 28),
        UUID("12345678-1234-5678-1234-567812345678"),
        Decimal("1.10"),
        Decimal("-0E+3"),
        b"\x00\xff binary",
        b"",
    )
    out = roundtrip(*args)
    assert out == args
    assert [type(x) for x in out] == [type(x) for x in args]
    assert str(out[4]) == "1.10"  # Decimal keeps its exponent
    assert out[1].utcoffset() == timedelta(hours=2)


def test_json_values_round_trip_and_tuples_become_lists() -> None:
    args: tuple[Any, ...] = (
        None,
        True,
        False,
        0,
        -(2**200),
        1.5,
        "é ✓ \x00",
        [1, [2]],
        {"a": {"b": []}},
        (1, 2),
    )
    assert roundtrip(*args) == (*args[:-1], [1, 2])


@pytest.mark.parametrize(
    "value",
    [
        {"$date": "2026-01-01"},
        {"$dict": {"a": 1}},
        {"$datetime": 5, "other": 1},
        {"$": None},
        {"$unknown": "x"},
        {"a": {"$bytes": "AA=="}},
        [{"$uuid": "not a uuid"}],
    ],
)
def test_tag_lookalike_user_dicts_round_trip_as_dicts(value: Any) -> None:
    assert roundtrip(value) == (value,)


def test_encoded_form_is_plain_json() -> None:
    text = encode_args((date(2026, 1, 2), {"$x": 1}))
    assert json.loads(text) == [{"$date": "2026-01-02"}, {"$dict": {"$x": 1}}]


@pytest.mark.parametrize(
    ("value", "exc", "match"),
    [
        (datetime(2026, 1, 1), ValueError, "naive datetime"),
        (float("nan"), ValueError, "NaN"),
        (float("inf"), ValueError, "NaN and infinities"),
        ({1: "a"}, TypeError, "keys must be str"),
        ({"a": {2, 3}}, TypeError, r"argument 0\['a'\] has type set"),
        (object(), TypeError, "type object"),
        (bytearray(b"x"), TypeError, "bytes"),
        (Enum("E", "A").A, TypeError, "type E"),  # type: ignore[attr-defined]
        ("\ud800", ValueError, "surrogate"),
    ],
    ids=str,
)
def test_refused_at_the_call_site(value: Any, exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        encode_args((value,))


def test_an_int_too_large_to_write_is_refused() -> None:
    with pytest.raises(ValueError, match="JSON"):
        encode_args((10**5000,))


def test_size_and_depth_limits() -> None:
    encode_args(("x" * (MAX_PAYLOAD - 10),))
    with pytest.raises(ValueError, match="byte limit"):
        encode_args(("x" * MAX_PAYLOAD,))
    deep: Any = []
    for _ in range(MAX_DEPTH):
        deep = [deep]
    with pytest.raises(ValueError, match="nested deeper"):
        encode_args((deep,))
    ok: Any = 1
    for _ in range(MAX_DEPTH):
        ok = [ok]
    assert roundtrip(ok) == (ok,)
    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(ValueError, match="nested deeper"):
        encode_args((loop,))


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        "{}",
        '"a string"',
        "[NaN]",
        "[Infinity]",
        "[1e999]",
        "[" * 100_000 + "]" * 100_000,
        '[{"$pickle": "gASV"}]',
        '[{"$date": "2026-13-45"}]',
        '[{"$datetime": "2026-01-01T00:00:00"}]',
        '[{"$bytes": "!!"}]',
        '[{"$uuid": 5}]',
        '[{"$dict": 5}]',
        '[{"$decimal": "abc"}]',
        '[{"$date": "2026-01-01", "x": 1}]',
        "[" + "9" * 5000 + "]",
    ],
    ids=lambda p: p[:20],
)
def test_hostile_payloads_are_payload_errors(payload: str) -> None:
    with pytest.raises(PayloadError):
        decode_args(payload)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
    | st.binary()
    | st.dates()
    | st.datetimes(timezones=st.just(UTC))
    | st.uuids()
    | st.decimals(allow_nan=False),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.text(max_size=5) | st.sampled_from(["$date", "$dict", "$"]), children)
    ),
    max_leaves=20,
)


@given(st.lists(json_values, max_size=4))
def test_round_trip_property(args: list[Any]) -> None:
    try:
        text = encode_args(tuple(args))
    except ValueError:  # a lone surrogate in st.text(): refused, never mangled
        return
    assert decode_args(text) == tuple(args)


@given(st.lists(json_values, max_size=4))
def test_exact_arguments_are_what_decoding_gives_back(args: list[Any]) -> None:
    try:
        text, exact = encode_args_exact(args)
    except ValueError:  # a lone surrogate in st.text(): refused, never mangled
        return
    assert text == encode_args(args)
    plain = all(type(a) in (str, int, float, bool, type(None)) for a in args)
    assert (exact is not None) == plain
    if plain:  # written as the JSON encoder writes it
        assert text == json.dumps(args, ensure_ascii=False, separators=(",", ":"))
    if exact is not None:
        decoded = decode_args(text)
        assert exact == decoded
        assert [type(a) for a in exact] == [type(a) for a in decoded]


def test_exact_arguments_refuse_what_encode_args_refuses() -> None:
    bad: list[tuple[list[Any], str]] = [
        ([float("nan")], "NaN and infinities"),
        ([float("inf")], "NaN and infinities"),
        ([1 << 100_000], "cannot be written as JSON"),
        (["\ud800"], "lone surrogate"),
        (["x" * MAX_PAYLOAD], "byte limit"),
    ]
    for args, match in bad:
        with pytest.raises(ValueError, match=match):
            encode_args_exact(args)
    with pytest.raises(TypeError):
        encode_args_exact([{1, 2}])


def test_entry_args_takes_known_payloads_without_decoding() -> None:
    text, exact = encode_args_exact((1, "a", None, 2.5, True))
    assert exact is not None
    assert entry_args(text) is not exact  # decoded: no block knows it
    with known_payloads({text: exact}):
        assert known_args(text) is exact
        assert entry_args(text) is exact
        assert entry_args('["other"]') == ("other",)  # a payload the block does not know
    assert known_args(text) is None
    assert entry_args(text) == exact
