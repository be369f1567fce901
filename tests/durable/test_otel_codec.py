"""The trace-context element a payload may end with: written, read, and never an argument."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

# Unit and property tests below the front: duetime.otel writes and reads the element.
from duetime.durable._codec import (
    MAX_PAYLOAD,
    decode_args,
    decode_result,
    encode_args,
    encode_result,
    trace_carrier,
    with_trace,
)

CARRIER = {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(st.lists(json_values, max_size=4))
def test_any_arguments_decode_the_same_with_a_trace_context(args: list[Any]) -> None:
    payload = encode_args(args)
    stamped = with_trace(payload, CARRIER)
    assert decode_args(stamped) == decode_args(payload)
    assert trace_carrier(stamped) == CARRIER
    assert trace_carrier(payload) is None


def test_no_arguments_and_the_exact_text() -> None:
    assert with_trace("[]", CARRIER) == '[{{"$trace":{{"traceparent":"{}"}}}}]'.format(
        CARRIER["traceparent"]
    )
    assert decode_args(with_trace("[]", CARRIER)) == ()
    assert with_trace("[1]", {}) == "[1]"  # nothing to store (tracing has no SDK)


def test_a_user_dict_with_a_trace_key_is_an_argument_not_a_context() -> None:
    # A user's dict with $-keys is wrapped ({"$dict": ...}): it never reads as the element.
    for args in ([{"$trace": CARRIER}], [1, {"$trace": "x"}], [[{"$trace": CARRIER}]]):
        payload = encode_args(args)
        assert trace_carrier(payload) is None
        assert list(decode_args(payload)) == args
        stamped = with_trace(payload, CARRIER)
        assert list(decode_args(stamped)) == args
        assert trace_carrier(stamped) == CARRIER


def test_a_string_that_looks_like_the_element_is_an_argument() -> None:
    text = '{"$trace":{"traceparent":"x"}}'
    payload = encode_args([text])
    assert trace_carrier(payload) is None
    assert decode_args(payload) == (text,)


def test_no_context_when_it_would_push_the_payload_over_the_limit() -> None:
    payload = encode_args(["x" * (MAX_PAYLOAD - 10)])
    assert with_trace(payload, CARRIER) == payload


def test_a_foreign_or_broken_element_is_no_context_and_never_raises() -> None:
    for payload in (
        '[1,{"$trace":"not a dict"}]',
        '[1,{"$trace":{"traceparent":5}}]',
        '[1,{"$trace":{"a":1},"b":2}]',
        '[1,{"$trace":{',
        "",
        "}]",
        '{"$trace":{}}]',
    ):
        carrier = trace_carrier(payload)
        assert carrier is None or carrier == {}


def test_a_stored_result_is_read_past_a_trace_element() -> None:
    assert decode_result(with_trace(encode_result({"a": 1}), CARRIER)) == {"a": 1}
