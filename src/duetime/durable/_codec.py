"""The argument codec: strict JSON plus a closed set of tagged types.

A durable entry's positional arguments are stored as one JSON array.  Besides
JSON's own values (``None``, ``bool``, ``int``, finite ``float``, ``str``,
``list``/``tuple`` and ``dict`` with ``str`` keys) five types are carried by a
tag: aware :class:`~datetime.datetime`, :class:`~datetime.date`,
:class:`~uuid.UUID`, :class:`~decimal.Decimal` and ``bytes``.  Nothing else is
accepted: no pickle, no class looked up by name.

Tagging is unambiguous.  A tagged value is a JSON object with exactly one key,
one of the tag names below (``{"$date": "2026-12-01"}``).  A user ``dict`` that
has any key starting with ``$`` is itself wrapped, as ``{"$dict": {...}}``, so a
user dict never reads as a tag, whatever its keys.  Decoding treats any object
with a ``$`` key as a tag and rejects tags it does not know.

Round trips are exact except that a ``tuple`` comes back as a ``list`` and a
datetime's ``tzinfo`` comes back as a fixed UTC offset (the same instant).

A payload may end with one more element that is no argument: the trace context
of the call that deferred it, ``{"$trace": {"traceparent": ...}}`` (the W3C
Trace Context headers, written by :func:`with_trace` when tracing is on).
:func:`decode_args` drops it; :func:`trace_carrier` reads it.  A user dict
never reads as it (its ``$`` keys are wrapped), and a payload without it is
what every earlier version wrote.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Any
from uuid import UUID

__all__ = ["MAX_DEPTH", "MAX_PAYLOAD", "PayloadError", "decode_args", "encode_args"]
__all__ += ["TRACE_TAG", "decode_result", "encode_result", "trace_carrier", "trace_id"]
__all__ += ["encode_args_exact", "encode_args_many", "known_args", "known_map", "known_payloads"]
__all__ += ["with_trace"]

#: The tag of the trace-context element a payload may end with.
TRACE_TAG = "$trace"

#: Largest encoded payload, in bytes of UTF-8.
MAX_PAYLOAD = 64 * 1024
#: Deepest nesting of lists and dicts inside one argument.
MAX_DEPTH = 64

_ALLOWED = (
    "arguments are JSON values (None, bool, int, finite float, str, list, tuple, "
    "dict with str keys) or an aware datetime, date, UUID, Decimal or bytes"
)


class PayloadError(ValueError):
    """A stored payload that is not a valid argument array (written elsewhere)."""


def _where(path: list[str]) -> str:
    return "argument " + "".join(path) if path else "arguments"


def _encode(value: Any, path: list[str], depth: int) -> Any:
    t = type(value)
    if value is None or t is bool or t is int or t is str:
        return value
    if t is float:
        if not math.isfinite(value):
            raise ValueError(f"{_where(path)} is {value!r}: NaN and infinities are not JSON")
        return value
    if t is list or t is tuple:
        if depth >= MAX_DEPTH:
            raise ValueError(f"{_where(path)} is nested deeper than {MAX_DEPTH} levels")
        out: list[Any] = []
        for i, item in enumerate(value):
            path.append(f"[{i}]")
            out.append(_encode(item, path, depth + 1))
            path.pop()
        return out
    if t is dict:
        if depth >= MAX_DEPTH:
            raise ValueError(f"{_where(path)} is nested deeper than {MAX_DEPTH} levels")
        obj: dict[str, Any] = {}
        escape = False
        for k, v in value.items():
            if type(k) is not str:
                raise TypeError(f"{_where(path)} has a key {k!r}: dict keys must be str")
            escape = escape or k.startswith("$")
            path.append(f"[{k!r}]")
            obj[k] = _encode(v, path, depth + 1)
            path.pop()
        return {"$dict": obj} if escape else obj
    # The tagged types.  datetime is a date subclass: test it first.
    if isinstance(value, datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError(
                f"{_where(path)} is a naive datetime {value!r}: pass an aware one "
                "(e.g. tzinfo=timezone.utc)"
            )
        return {"$datetime": value.isoformat()}
    if isinstance(value, date):
        return {"$date": value.isoformat()}
    if isinstance(value, UUID):
        return {"$uuid": str(value)}
    if isinstance(value, Decimal):
        return {"$decimal": str(value)}
    if t is bytes:
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    hint = ""
    if isinstance(value, set | frozenset):
        hint = " (pass a sorted list)"
    elif isinstance(value, bytearray | memoryview):
        hint = " (pass bytes(...))"
    elif isinstance(value, str | int | float):
        hint = " (pass the plain value, e.g. an enum's .value)"
    raise TypeError(f"{_where(path)} has type {t.__qualname__}{hint}: {_ALLOWED}")


def encode_args(args: Sequence[Any]) -> str:
    """Encode positional arguments as the JSON text a store keeps.

    :raises TypeError: for a value of a type the codec does not carry (a set,
        an arbitrary object, a non-str dict key, an enum)
    :raises ValueError: for a naive datetime, NaN or an infinity, nesting deeper
        than :data:`MAX_DEPTH`, a str that is not valid Unicode, an int too large
        to write, or a payload over :data:`MAX_PAYLOAD` bytes
    """
    return encode_args_exact(args)[0]


def _plain_json(args: Sequence[Any]) -> str | None:
    """The JSON text of ``args`` if every one is a str, int, bool, None or finite
    float (JSON carries each as it is, and decoding gives back an equal value of
    the same type), written as the module's encoder writes it; else None.

    :raises ValueError: an int too large to write
    """
    parts = []
    for a in args:
        t = type(a)
        if t is str:
            parts.append(_string(a))
        elif t is int:
            try:
                parts.append(int.__repr__(a))
            except ValueError as exc:  # beyond sys.get_int_max_str_digits()
                raise ValueError(f"arguments cannot be written as JSON: {exc}") from None
        elif a is None:
            parts.append("null")
        elif t is bool:
            parts.append("true" if a else "false")
        elif t is float and a - a == 0.0:  # finite
            parts.append(float.__repr__(a))
        else:
            return None
    return "[" + ",".join(parts) + "]"


def encode_args_exact(args: Sequence[Any]) -> tuple[str, tuple[Any, ...] | None]:
    """:func:`encode_args`, and the arguments as :func:`decode_args` gives them
    back from that text when they are plain scalars (str, int, bool, None,
    finite float: a caller that keeps them need not decode what it just
    encoded), else None.

    :raises TypeError: as :func:`encode_args`
    :raises ValueError: as :func:`encode_args`
    """
    text = _plain_json(args)  # nothing to walk, tag or check
    if text is not None:
        return _checked(text), tuple(args)
    encoded = [_encode(arg, [str(i)], 0) for i, arg in enumerate(args)]
    return _checked(_dump(encoded)), None


def encode_args_many(
    argsets: Sequence[Sequence[Any]],
) -> tuple[list[str], dict[str, tuple[Any, ...]]]:
    """:func:`encode_args` of each argument set, and for each payload of plain
    scalars the arguments :func:`decode_args` gives back from it (as
    :func:`encode_args_exact` says), keyed by payload text.

    :raises TypeError: as :func:`encode_args`, for the first set that fails
    :raises ValueError: as :func:`encode_args`, for the first set that fails
    """
    payloads: list[str] = []
    known: dict[str, tuple[Any, ...]] = {}
    for args in argsets:
        text = _plain_json(args)
        if text is None:
            payloads.append(_checked(_dump([_encode(a, [str(i)], 0) for i, a in enumerate(args)])))
        else:
            payloads.append(text := _checked(text))
            known[text] = tuple(args)
    return payloads, known


def _dump(encoded: list[Any]) -> str:
    try:
        text = _ENCODER.encode(encoded)
    except ValueError as exc:  # an int beyond sys.get_int_max_str_digits()
        raise ValueError(f"arguments cannot be written as JSON: {exc}") from None
    return text


def _checked(text: str) -> str:
    if text.isascii():
        size = len(text)
    else:
        try:
            size = len(text.encode("utf-8"))
        except UnicodeEncodeError:
            raise ValueError(
                "arguments hold a str with a lone surrogate (not valid Unicode)"
            ) from None
    if size > MAX_PAYLOAD:
        raise ValueError(
            f"arguments are {size} bytes as JSON, over the {MAX_PAYLOAD} byte limit: "
            "store large data elsewhere and pass its id"
        )
    return text


def _bad_constant(name: str) -> Any:
    raise PayloadError(f"payload holds {name}")


# One encoder and one decoder for the module: json.dumps/json.loads with options
# build a new one per call (a measurable share of a defer's cost).
_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_DECODER = json.JSONDecoder(parse_constant=_bad_constant)
#: How that encoder writes a str (ensure_ascii=False).
_string = json.encoder.encode_basestring


def _decode_tag(tag: str, raw: Any, depth: int) -> Any:
    if tag == "$dict":
        if type(raw) is not dict:
            raise PayloadError("a $dict tag must hold an object")
        return {k: _decode(v, depth + 1) for k, v in raw.items()}
    if type(raw) is not str:
        raise PayloadError(f"a {tag} tag must hold a string")
    try:
        if tag == "$datetime":
            dt = datetime.fromisoformat(raw)
            if dt.tzinfo is None:
                raise PayloadError("a $datetime tag holds a naive datetime")
            return dt
        if tag == "$date":
            return date.fromisoformat(raw)
        if tag == "$uuid":
            return UUID(raw)
        if tag == "$decimal":
            return Decimal(raw)
        if tag == "$bytes":
            return base64.b64decode(raw.encode("ascii"), validate=True)
    except (ValueError, InvalidOperation, binascii.Error, UnicodeEncodeError) as exc:
        raise PayloadError(f"bad {tag} value {raw[:40]!r}: {exc}") from None
    raise PayloadError(f"unknown tag {tag!r}")


def _decode(value: Any, depth: int) -> Any:
    t = type(value)
    if t is float:
        if not math.isfinite(value):
            raise PayloadError("payload holds a number out of range")
        return value
    if t is list:
        if depth >= MAX_DEPTH:
            raise PayloadError(f"payload is nested deeper than {MAX_DEPTH} levels")
        return [_decode(v, depth + 1) for v in value]
    if t is dict:
        if depth >= MAX_DEPTH:
            raise PayloadError(f"payload is nested deeper than {MAX_DEPTH} levels")
        tags = [k for k in value if k.startswith("$")]
        if tags:
            if len(value) != 1:
                raise PayloadError(f"an object with a tag {tags[0]!r} has other keys")
            return _decode_tag(tags[0], value[tags[0]], depth)
        return {k: _decode(v, depth + 1) for k, v in value.items()}
    return value


#: Payload texts this task just encoded, and the arguments decoding each gives
#: back (see :func:`known_payloads`).
_KNOWN: ContextVar[Mapping[str, tuple[Any, ...]] | None] = ContextVar(
    "duetime_known_payloads", default=None
)


class known_payloads:
    """Within the ``with`` block (in this task), :func:`known_args` of a payload
    in ``known`` is its value there: the client passes what
    :func:`encode_args_exact` returned for the rows it hands to a store, so
    building the entries the store returns does not decode them again.  (A
    class, not a generator function: it is entered once per ``defer``.)

    :param known: payload text -> the arguments :func:`decode_args` gives for it
    """

    __slots__ = ("_known", "_token")

    def __init__(self, known: Mapping[str, tuple[Any, ...]]) -> None:
        self._known = known

    def __enter__(self) -> None:
        self._token = _KNOWN.set(self._known)

    def __exit__(self, *exc_info: object) -> None:
        _KNOWN.reset(self._token)


def known_map() -> Mapping[str, tuple[Any, ...]]:
    """What the enclosing :func:`known_payloads` block knows (payload text ->
    arguments), or an empty mapping: for a store that reads many rows at once
    (per row, :func:`known_args` of a str payload is ``known_map().get(payload)``)."""
    return _KNOWN.get() or _NOTHING


_NOTHING: Mapping[str, tuple[Any, ...]] = MappingProxyType({})


def known_args(payload: str) -> tuple[Any, ...] | None:
    """The arguments of ``payload`` if the enclosing :func:`known_payloads`
    block knows them, else None (decode it)."""
    known = _KNOWN.get()
    return None if known is None or type(payload) is not str else known.get(payload)


def decode_args(payload: str) -> tuple[Any, ...]:
    """Decode a stored payload into positional arguments.

    :raises PayloadError: (a ValueError) if the payload is not what
        :func:`encode_args` writes: not JSON, not an array, too deep, an unknown
        or malformed tag
    """
    if not isinstance(payload, str):
        raise PayloadError(f"payload must be str, got {type(payload).__name__}")
    try:
        value = _DECODER.decode(payload)
    except PayloadError:
        raise
    except RecursionError:
        raise PayloadError("payload is nested too deeply") from None
    except ValueError as exc:
        raise PayloadError(f"payload is not valid JSON: {exc}") from None
    if type(value) is not list:
        raise PayloadError("payload is not a JSON array of arguments")
    if value and type(last := value[-1]) is dict and len(last) == 1 and TRACE_TAG in last:
        del value[-1]  # the deferring call's trace context, not an argument
    try:
        # Plain scalars (the common arguments) need no walk.
        return tuple(
            v if (t := type(v)) is str or t is int or t is bool or v is None else _decode(v, 0)
            for v in value
        )
    except RecursionError:  # pragma: no cover - MAX_DEPTH comes first
        raise PayloadError("payload is nested too deeply") from None


def encode_result(value: Any) -> str:
    """Encode a task's return value as the text a store keeps with a COMPLETED
    entry: the codec's JSON of the one-element array ``[value]``.

    :raises TypeError: for a value of a type the codec does not carry
    :raises ValueError: for a value the codec refuses (see :func:`encode_args`),
        or over :data:`MAX_PAYLOAD` bytes encoded
    """
    try:
        return encode_args([value])
    except TypeError as exc:
        raise TypeError(f"the return value cannot be stored: {_as_result(exc)}") from None
    except ValueError as exc:
        raise ValueError(f"the return value cannot be stored: {_as_result(exc)}") from None


def _as_result(exc: Exception) -> str:
    """An :func:`encode_args` message about ``[value]``, reworded for the value."""
    text = str(exc).replace("argument 0", "the value", 1)
    return re.sub(r"\barguments (are )?(?=\d)", "it is ", text).replace(
        "arguments are ", "values are "
    )


def decode_result(text: str) -> Any:
    """The return value :func:`encode_result` encoded as ``text``.

    :raises PayloadError: (a ValueError) if ``text`` is not what it writes
    """
    values = decode_args(text)
    if len(values) != 1:
        raise PayloadError("a stored result is a JSON array of one value")
    return values[0]


def with_trace(payload: str, carrier: dict[str, str]) -> str:
    """``payload`` (as :func:`encode_args` wrote it) with the trace context
    ``carrier`` (W3C Trace Context header names and values) appended as its last
    element; ``payload`` unchanged when the result would exceed
    :data:`MAX_PAYLOAD` (a store refuses such a row) or ``carrier`` is empty."""
    if not carrier:
        return payload
    element = _ENCODER.encode({TRACE_TAG: carrier})
    text = f"[{element}]" if payload == "[]" else f"{payload[:-1]},{element}]"
    if len(text.encode("utf-8")) > MAX_PAYLOAD:
        return payload
    return text


#: Where the trace-context element starts: it follows a "," or the array's "[".
_TRACE_START = '{"' + TRACE_TAG + '":'


def trace_carrier(payload: str) -> dict[str, str] | None:
    """The trace context :func:`with_trace` appended to ``payload``, or None (a
    payload without one, or one another program wrote that does not parse).
    Never raises."""
    if not payload.endswith("}]"):
        return None
    i = payload.rfind(_TRACE_START)
    if i < 1 or payload[i - 1] not in ",[":
        return None
    try:
        value = _DECODER.decode(payload[i:-1])
    except ValueError:
        return None
    if type(value) is not dict or len(value) != 1:
        return None
    carrier = value[TRACE_TAG]
    if type(carrier) is not dict:
        return None
    return {k: v for k, v in carrier.items() if type(v) is str}


_HEX = frozenset("0123456789abcdef")


def trace_id(payload: str) -> str | None:
    """The trace id (32 lower-case hex digits) of the W3C ``traceparent`` that
    :func:`with_trace` appended to ``payload``, or None: none stored, or one
    that is not a valid version-00 traceparent (an all-zero id included).
    Never raises."""
    carrier = trace_carrier(payload)
    parent = "" if carrier is None else carrier.get("traceparent", "")
    if len(parent) != 55 or parent[:3] != "00-" or parent[35] != "-" or parent[52] != "-":
        return None
    found = parent[3:35]
    if not _HEX.issuperset(parent[3:35] + parent[36:52] + parent[53:]):
        return None
    if found == "0" * 32 or parent[36:52] == "0" * 16:
        return None
    return found
