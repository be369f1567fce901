"""The seed-001 Maelstrom node (docs/examples/maelstrom_node.py).

The seed's sample cases run the node as a subprocess and compare its output
exactly; behaviour over time is driven in-process on virtual time.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

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
    assert [m["body"]["type"] for m in out] == ["init_ok", "echo_ok"]
    assert out[1]["body"] == {
        "type": "echo_ok",
        "echo": "still here",
        "in_reply_to": 6,
        "msg_id": 1,
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
        assert len(s) == 0
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
