"""The seed-001 Maelstrom node (docs/examples/maelstrom_node.py).

The seed's sample cases run the node as a subprocess and compare its output
exactly; behaviour over time is driven in-process on virtual time.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from duetime import Scheduler

from .support import duetime_activity

NODE = Path(__file__).resolve().parent.parent / "docs" / "examples" / "maelstrom_node.py"

_spec = importlib.util.spec_from_file_location("maelstrom_node", NODE)
assert _spec is not None
assert _spec.loader is not None
mn: Any = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(mn)

SAMPLE_1_IN = """\
{"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1","node_ids":["n1"]}}
{"src":"c1","dest":"n1","body":{"type":"pending_count","msg_id":2}}
"""
SAMPLE_1_OUT = """\
{"src": "n1", "dest": "c0", "body": {"type": "init_ok", "in_reply_to": 1, "msg_id": 0}}
{"src": "n1", "dest": "c1", "body": {"type": "pending_count_ok", "count": 0, "in_reply_to": 2, "msg_id": 1}}
"""  # noqa: E501
SAMPLE_2_IN = """\
{"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1","node_ids":["n1","n2"]}}
{"src":"c1","dest":"n1","body":{"type":"send_fire_forget","msg_id":2,"target":"n2","payload":{"type":"echo","echo":"lost"}}}
"""
SAMPLE_2_OUT = """\
{"src": "n1", "dest": "c0", "body": {"type": "init_ok", "in_reply_to": 1, "msg_id": 0}}
{"src": "n1", "dest": "n2", "body": {"type": "echo", "echo": "lost", "msg_id": 1}}
{"src": "n1", "dest": "c1", "body": {"type": "send_fire_forget_ok", "pending": 1, "in_reply_to": 2, "msg_id": 2}}
"""  # noqa: E501

INIT = (
    '{"src":"c0","dest":"n1","body":{"type":"init","msg_id":1,"node_id":"n1",'
    '"node_ids":["n1","n2"]}}'
)
FIRE = (
    '{"src":"c1","dest":"n1","body":{"type":"send_fire_forget","msg_id":2,"target":"n2",'
    '"payload":{"type":"echo","echo":"lost"}}}'
)
COUNT = '{"src":"c1","dest":"n1","body":{"type":"pending_count","msg_id":%d}}'


def run_node(stdin: str) -> subprocess.CompletedProcess[str]:
    # The timeout only guards against a hang; nothing here depends on timing.
    return subprocess.run(
        [sys.executable, str(NODE)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


@pytest.mark.parametrize(
    ("stdin", "expected"),
    [(SAMPLE_1_IN, SAMPLE_1_OUT), (SAMPLE_2_IN, SAMPLE_2_OUT)],
    ids=["pending-count-starts-at-zero", "fire-and-forget-increases-pending"],
)
def test_seed_sample_cases_exactly(stdin: str, expected: str) -> None:
    proc = run_node(stdin)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == expected


def test_malformed_input_goes_to_stderr_and_the_node_keeps_running() -> None:
    stdin = "\n".join(
        [
            INIT,
            "this is not json",
            "[1, 2]",
            '{"src":"c1","dest":"n1","body":{"msg_id":5}}',
            '{"src":"c1","dest":"n1","body":{"type":"echo","msg_id":6,"echo":"still here"}}',
        ]
    )  # and EOF without a final newline
    proc = run_node(stdin)
    assert proc.returncode == 0
    out = [json.loads(line) for line in proc.stdout.splitlines()]
    # The line without a type has a readable msg_id: it gets an error reply.
    assert [m["body"]["type"] for m in out] == ["init_ok", "error", "echo_ok"]
    assert out[1]["dest"] == "c1"
    assert out[1]["body"]["code"] == 12
    assert out[1]["body"]["in_reply_to"] == 5
    assert out[2]["body"] == {
        "type": "echo_ok",
        "echo": "still here",
        "in_reply_to": 6,
        "msg_id": 2,
    }
    assert proc.stderr.count("malformed input") == 3


def test_eof_exits_cleanly_with_nothing_read() -> None:
    proc = run_node("")
    assert proc.returncode == 0
    assert proc.stdout == ""
    assert proc.stderr == ""


class Captured:
    def __init__(self) -> None:
        self.out: list[dict[str, Any]] = []
        self.err: list[str] = []

    def write(self, line: str) -> None:
        self.out.append(json.loads(line))

    def log(self, line: str) -> None:
        self.err.append(line)


@pytest.mark.anyio
async def test_leaked_callback_is_reaped_after_two_seconds() -> None:
    cap = Captured()
    async with Scheduler() as s:
        node = mn.Node(s, cap.write, cap.log)
        node.handle_line(INIT)
        node.handle_line(FIRE)
        await anyio.sleep(1.999)
        node.handle_line(COUNT % 3)
        assert cap.out[-1]["body"]["count"] == 1
        assert cap.err == []
        await anyio.sleep(0.002)  # just past the 2 s deadline
        node.handle_line(COUNT % 4)
        assert cap.out[-1]["body"]["count"] == 0
        assert node.replies.reaped_count == 1
        assert len(cap.err) == 1
        assert "reaped callback for msg 1 to n2" in cap.err[0]
        assert "TimeoutError" in cap.err[0]
        # The reply turns up too late: ignored.
        node.handle_line('{"src":"n2","dest":"n1","body":{"type":"echo_ok","in_reply_to":1}}')
        assert node.replies.late_count == 1
        assert "late" in cap.err[-1]
        assert s.statistics().pending == 0
        with duetime_activity() as activity:  # the reaped entry left no timer behind
            await anyio.sleep(100)
        assert activity() == 0


@pytest.mark.anyio
async def test_reply_resolves_a_pending_callback() -> None:
    cap = Captured()
    calls: list[tuple[Any, Any]] = []
    async with Scheduler() as s:
        node = mn.Node(s, cap.write, cap.log)
        node.handle_line(INIT)
        msg_id = node.rpc("n2", {"type": "echo", "echo": "hi"}, lambda r, e: calls.append((r, e)))
        assert cap.out[-1] == {
            "src": "n1",
            "dest": "n2",
            "body": {"type": "echo", "echo": "hi", "msg_id": msg_id},
        }
        await anyio.sleep(1.5)
        reply = {"type": "echo_ok", "echo": "hi", "in_reply_to": msg_id, "msg_id": 0}
        node.handle_line(json.dumps({"src": "n2", "dest": "n1", "body": reply}))
        assert calls == [(reply, None)]
        await anyio.sleep(5)  # no reaping afterwards
        assert calls == [(reply, None)]
        assert node.replies.reaped_count == 0
        assert cap.err == []


@pytest.mark.anyio
async def test_reaped_rpc_callback_gets_a_timeout_error() -> None:
    cap = Captured()
    calls: list[tuple[Any, Any]] = []
    async with Scheduler() as s:
        node = mn.Node(s, cap.write, cap.log)
        node.handle_line(INIT)
        node.rpc("n2", {"type": "read"}, lambda r, e: calls.append((r, e)))
        await anyio.sleep(3)
    assert len(calls) == 1
    assert calls[0][0] is None
    assert isinstance(calls[0][1], TimeoutError)


@pytest.mark.anyio
async def test_serve_handles_eof_and_unknown_types() -> None:
    cap = Captured()

    async def lines() -> AsyncIterator[str]:
        yield INIT + "\n"
        yield '{"src":"c1","dest":"n1","body":{"type":"frobnicate","msg_id":9}}\n'
        yield FIRE + "\n"
        await anyio.sleep(0.5)  # EOF while the RPC is still pending

    node = await mn.serve(lines(), cap.write, cap.log)
    assert [m["body"]["type"] for m in cap.out] == [
        "init_ok",
        "error",
        "echo",
        "send_fire_forget_ok",
    ]
    assert cap.out[1]["body"]["code"] == 10
    assert node.replies.pending_count == 0  # cancelled at exit, not leaked
    assert any("unsupported" in e for e in cap.err)
    assert not any("reaped" in e for e in cap.err)


# ---------------------------------------------------------------- bad lines (issue 12, item 10)

PROBE = '{"src":"c9","dest":"n1","body":{"type":"echo","msg_id":999,"echo":"probe"}}'


def strict_json(line: str) -> Any:
    """Parse ``line`` as standard JSON: NaN, Infinity and overflowing floats fail."""

    def bad(value: str) -> Any:
        raise AssertionError(f"non-JSON number {value} written")

    return json.loads(line, parse_constant=bad)


def check_output_line(msg: Any) -> None:
    """Every line the node writes is a well-formed Maelstrom message."""
    assert isinstance(msg, dict)
    assert isinstance(msg["src"], str)
    assert isinstance(msg["dest"], str)
    body = msg["body"]
    assert isinstance(body["type"], str)
    assert type(body["msg_id"]) is int
    if body["type"] == "error":
        assert body["code"] in (10, 12, 13)
        assert type(body["in_reply_to"]) is int


def test_bad_lines_through_stdin_never_stop_the_node() -> None:
    """The four lines of /work/shared/repro/r6_maelstrom_bad_lines.py, in one run."""
    lines = [
        INIT.encode(),
        b"[" * 100_000 + b"]" * 100_000,  # RecursionError in json.loads
        b'{"src":"c1","dest":"n1","body":{"type":"echo","msg_id":2,"echo":"\xff"}}',
        b'{"src":"c1","dest":"n1","body":{"type":"echo","msg_id":NaN}}',
        b'{"src":"c1","dest":"n1","body":{"type":"echo","msg_id":1e999}}',
        b'{"src":"c1","dest":"n1","body":{"type":"echo","msg_id":3,"echo":Infinity}}',
        b'{"src":"c1","dest":"n1","body":{"type":"send_fire_forget","msg_id":4,"target":"n2",'
        b'"payload":{"type":"read"}}}',
        b'{"src":"n2","dest":"n1","body":{"type":"read_ok","in_reply_to":true}}',
        b'{"src":"n2","dest":"n1","body":{"type":"read_ok","in_reply_to":1.0}}',
        b'{"src":"c1","dest":"n1","body":{"type":"pending_count","msg_id":5}}',
        PROBE.encode(),
    ]
    proc = subprocess.run(
        [sys.executable, str(NODE)],
        input=b"\n".join(lines) + b"\n",
        capture_output=True,
        timeout=30,
        check=False,
        # A strict UTF-8 stdin, as under any UTF-8 locale.
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
    )
    assert proc.returncode == 0, proc.stderr
    out = [strict_json(line) for line in proc.stdout.decode("ascii").splitlines()]
    for msg in out:
        check_output_line(msg)
    replies = {m["body"]["in_reply_to"]: m["body"] for m in out if "in_reply_to" in m["body"]}
    assert replies[2]["type"] == "error"  # invalid UTF-8, msg_id still readable
    assert replies[2]["code"] == 12
    assert replies[3]["type"] == "error"  # Infinity in a field
    assert replies[4]["type"] == "send_fire_forget_ok"
    # in_reply_to: true / 1.0 did not resolve the RPC with msg_id 1.
    assert replies[5] == {"type": "pending_count_ok", "count": 1, "in_reply_to": 5, "msg_id": 5}
    assert replies[999]["type"] == "echo_ok"
    err = proc.stderr.decode()
    assert "RecursionError" in err
    assert err.count("malformed input") == 7


@pytest.mark.anyio
async def test_a_non_integer_in_reply_to_resolves_nothing() -> None:
    cap = Captured()
    calls: list[tuple[Any, Any]] = []
    async with Scheduler() as s:
        node = mn.Node(s, cap.write, cap.log)
        node.handle_line(INIT)
        msg_id = node.rpc("n2", {"type": "read"}, lambda r, e: calls.append((r, e)))
        assert msg_id == 1
        for bad in ("true", "1.0", '"1"', "[1]"):
            node.handle_line(
                '{"src":"n2","dest":"n1","body":{"type":"read_ok","in_reply_to":' + bad + "}}"
            )
        assert node.replies.pending_count == 1
        assert calls == []
        node.handle_line('{"src":"n2","dest":"n1","body":{"type":"read_ok","in_reply_to":1}}')
        assert calls == [({"type": "read_ok", "in_reply_to": 1}, None)]
    assert sum("malformed input" in e for e in cap.err) == 4


@pytest.mark.anyio
async def test_a_request_that_cannot_be_answered_gets_an_error_reply() -> None:
    cap = Captured()
    async with Scheduler() as s:
        node = mn.Node(s, cap.write, cap.log)
        node.handle_line(INIT)
        # As deep as json.loads takes here: close to what json.dumps can write.
        deep = ""
        for depth in range(990, 0, -10):
            deep = "[" * depth + "]" * depth
            try:
                json.loads(deep)
                break
            except RecursionError:
                continue
        node.handle_line(
            '{"src":"c1","dest":"n1","body":{"type":"echo","msg_id":7,"echo":' + deep + "}}"
        )
        node.handle_line('{"src":"c1","dest":"n1","body":{"type":"init","msg_id":8}}')  # no node_id
        node.handle_line(PROBE)
    for msg in cap.out:
        check_output_line(msg)
    by_request = {m["body"]["in_reply_to"]: m["body"] for m in cap.out[1:]}
    # Depending on the stack depth it is echoed whole or refused with an error;
    # never a crash, never half a line.
    assert by_request[7]["type"] in ("echo_ok", "error")
    assert by_request[8]["type"] == "error"
    assert by_request[8]["code"] == 12
    assert by_request[999]["type"] == "echo_ok"


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()  # NaN and infinities included: json.dumps writes them as non-JSON
    | st.text(max_size=5),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
bodies = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["echo", "init", "pending_count", "send_fire_forget", "read_ok"])
        | json_values,
        "msg_id": json_values,
        "in_reply_to": json_values,
        "echo": json_values,
        "node_id": json_values,
        "node_ids": json_values,
        "target": json_values,
        "payload": json_values,
    },
)
messages = st.fixed_dictionaries(
    {},
    optional={
        "src": st.sampled_from(["c1", "n2"]) | json_values,
        "dest": json_values,
        "body": bodies,
    },
)
garbage_lines = st.one_of(
    st.binary(max_size=60),
    st.text(max_size=60),
    messages.map(json.dumps),
    messages.map(lambda m: json.dumps(m).encode("utf-8") + b"\xff"),
    st.integers(1, 3000).map(lambda n: "[" * n + "]" * n),
    st.integers(1, 3000).map(lambda n: '{"a":' * n + "1" + "}" * n),
)


@pytest.mark.anyio
@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(lines=st.lists(garbage_lines, max_size=8))
async def test_garbage_lines_never_stop_the_node_or_corrupt_its_output(
    lines: list[str | bytes],
) -> None:
    out: list[str] = []
    err: list[str] = []
    async with Scheduler() as s:
        node = mn.Node(s, out.append, err.append)
        node.handle_line(INIT)
        for line in lines:
            node.handle_line(line)  # never raises
        node.handle_line(PROBE)
        await anyio.sleep(3)  # let any RPC it was tricked into sending be reaped
    msgs = [strict_json(line) for line in out]
    for msg in msgs:
        check_output_line(msg)
    assert msgs[-1]["body"]["type"] == "echo_ok"
    assert msgs[-1]["body"]["in_reply_to"] == 999
