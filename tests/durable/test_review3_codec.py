"""Hostile review of the codec's fast path for plain scalar arguments: it must
write what the general encoder writes, and give back what decoding gives."""

from __future__ import annotations

import json
import math
import sys
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from duetime.durable._codec import _ENCODER, decode_args, encode_args, encode_args_exact

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**300), max_value=10**300),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(),
    st.text(alphabet=st.characters(max_codepoint=0x1F)),  # control characters
    st.text(alphabet=st.characters(min_codepoint=0x10000)),  # non-BMP
)


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    """Equal, and of the same types (1 is not True, -0.0 is not 0.0)."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if type(x) is not type(y) or x != y:
            return False
        if type(x) is float and math.copysign(1, x) != math.copysign(1, y):
            return False
    return True


@settings(max_examples=500, deadline=None)
@given(st.lists(_scalars, max_size=8))
def test_the_fast_path_writes_what_the_encoder_writes(args: list[Any]) -> None:
    text, kept = encode_args_exact(args)
    assert text == _ENCODER.encode(args)
    assert text == json.dumps(args, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    assert kept is not None
    assert _same(kept, decode_args(text))
    assert _same(kept, tuple(args))


@pytest.mark.parametrize(
    "value",
    [-0.0, 0.0, 1e308, -1e308, 5e-324, -5e-324, 2.2250738585072014e-308, sys.float_info.max],
)
def test_floats_at_the_edges(value: float) -> None:
    text, kept = encode_args_exact([value])
    assert kept is not None
    assert _same(decode_args(text), (value,))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_nan_and_infinities_are_refused(value: float) -> None:
    with pytest.raises(ValueError, match="NaN and infinities"):
        encode_args([1, value])


def test_bool_stays_bool_and_int_stays_int() -> None:
    assert encode_args([True, 1, False, 0]) == "[true,1,false,0]"
    assert _same(decode_args(encode_args([True, 1, False, 0])), (True, 1, False, 0))


def test_an_int_too_long_to_write_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="cannot be written as JSON"):
        encode_args([10 ** (sys.get_int_max_str_digits() + 1)])


def test_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(ValueError, match="lone surrogate"):
        encode_args(["ok", "\udc80"])


def test_subclasses_take_the_general_path() -> None:
    class Int(int):
        pass

    class Str(str):
        pass

    with pytest.raises(TypeError, match=r"has type .*Int \(pass the plain value"):
        encode_args([Int(3)])
    with pytest.raises(TypeError, match=r"has type .*Str \(pass the plain value"):
        encode_args([Str("x")])
