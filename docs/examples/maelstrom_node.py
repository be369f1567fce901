"""A Maelstrom node whose RPC callbacks can never leak: the callback reaper.

Run it as ``python docs/examples/maelstrom_node.py``: it speaks Maelstrom's JSON
lines on stdin and stdout, and logs to stderr.

Each RPC the node sends registers its callback in a :class:`duetime.PendingReplies`
with a 2 s timeout.  There is no reaper thread and no periodic scan: every pending
entry is an entry in the scheduler's heap that expires at its own deadline, and
the callback is then invoked with a :exc:`TimeoutError` (logged to stderr).
Replies are routed by ``in_reply_to``; a reply that comes after its entry was
reaped is ignored.

Messages handled: ``init``, ``echo``, ``pending_count`` and ``send_fire_forget``
(send ``payload`` to ``target`` expecting a reply that may never come).

No input line can stop the node or make it write anything but JSON: a line it
cannot use (not UTF-8, not strict JSON, nested too deeply, NaN or infinite
numbers, a ``msg_id`` or ``in_reply_to`` that is not an integer) is answered
with a Maelstrom ``error`` (code 12, malformed-request) if its sender and
``msg_id`` can be read, and is otherwise skipped with a line on stderr.  A
request whose handling fails gets an ``error`` reply as well (code 12 for bad
fields, 13 for anything else).

The core, :class:`Node`, takes its input line by line and writes through plain
callables, so it can be driven in-process on virtual time (see
``tests/test_maelstrom.py``).
"""

# docs-example: not run by tests/test_docs_examples.py (it serves stdin until EOF);
# tests/test_maelstrom.py drives it with sample sessions instead.

from __future__ import annotations

import json
import math
import sys
from collections.abc import AsyncIterable, Callable
from functools import partial
from typing import Any

import anyio

import duetime

Body = dict[str, Any]
RpcCallback = Callable[[Body | None, BaseException | None], object]

#: Seconds an RPC waits for its reply before its callback is reaped.
RPC_TIMEOUT = 2.0

#: Maelstrom error codes used here.
MALFORMED_REQUEST = 12
CRASH = 13


class Malformed(ValueError):
    """An input line the node cannot use."""


def _reject_constant(name: str) -> Any:
    raise Malformed(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if value in (math.inf, -math.inf):
        raise Malformed(f"{text} is out of range for a float")
    return value


def _parse_strict(line: str) -> Any:
    """Standard JSON only: no NaN/Infinity, no number that overflows a float."""
    return json.loads(line, parse_constant=_reject_constant, parse_float=_finite_float)


def _is_int(value: object) -> bool:
    """A JSON integer: an ``int``, not a ``bool`` (``True == 1`` in Python)."""
    return type(value) is int


def _dumps(obj: object) -> str:
    """One JSON line, or an exception: never ``NaN``/``Infinity`` (``allow_nan=False``).

    ``ensure_ascii`` (the default) keeps the line ASCII whatever strings it holds.
    """
    return json.dumps(obj, allow_nan=False)


class Node:
    """The node's logic: parse a line, act, write JSON lines.

    :param scheduler: an entered :class:`duetime.Scheduler`
    :param write: called with each output line (no newline)
    :param log: called with each diagnostic line (for stderr)
    """

    def __init__(
        self,
        scheduler: duetime.Scheduler,
        write: Callable[[str], object],
        log: Callable[[str], object],
        rpc_timeout: float = RPC_TIMEOUT,
    ) -> None:
        self.scheduler = scheduler
        self.write = write
        self.log = log
        self.node_id: str | None = None
        self.node_ids: list[str] = []
        self.next_msg_id = 0
        self._addressed_as = ""  # our name before init: the dest we were sent to
        self.replies: duetime.PendingReplies[Body] = duetime.PendingReplies(
            scheduler, timeout=rpc_timeout
        )

    # -- output ----------------------------------------------------------------

    def send(self, dest: str, body: Body) -> int:
        """Send ``body`` (plus a fresh ``msg_id``, counting from 0) to ``dest``.

        :raises ValueError: if the message cannot be written as standard JSON
        :raises RecursionError: if it is nested too deeply to be written
        """
        msg_id = self.next_msg_id
        src = self.node_id if self.node_id is not None else self._addressed_as
        line = _dumps({"src": src, "dest": dest, "body": {**body, "msg_id": msg_id}})
        self.next_msg_id += 1  # only once the line is sure to be written
        self.write(line)
        return msg_id

    def reply(self, request: dict[str, Any], body: Body) -> None:
        body = {**body, "in_reply_to": request["body"].get("msg_id")}
        self.send(request["src"], body)

    # --8<-- [start:rpc]
    def rpc(self, dest: str, body: Body, callback: RpcCallback) -> int:
        """Send ``body`` to ``dest``; ``callback(reply, error)`` runs exactly once:
        with the reply, or with a TimeoutError once the entry is reaped."""
        msg_id = self.send(dest, body)
        handle = self.replies.expect(msg_id)
        handle.add_done_callback(partial(self._rpc_done, dest, msg_id, callback))
        return msg_id

    def _rpc_done(
        self, dest: str, msg_id: int, callback: RpcCallback, handle: duetime.Handle[Body]
    ) -> None:
        if handle.status is duetime.Status.CANCELLED:
            return  # the node is shutting down
        exc = handle.exception
        if isinstance(exc, TimeoutError):
            self.log(
                f"reaped callback for msg {msg_id} to {dest}: no reply within "
                f"{self.replies.timeout} s (TimeoutError)"
            )
        callback(None if exc is not None else handle.return_value, exc)

    # --8<-- [end:rpc]

    # -- input -----------------------------------------------------------------

    def handle_line(self, line: str | bytes) -> None:
        """Handle one input line (text, or bytes that must be UTF-8).

        Nothing in a line can make this raise or write anything but JSON: a
        malformed line gets an error reply if its ``src`` and ``msg_id`` can be
        read, and is logged and skipped otherwise.
        """
        if isinstance(line, bytes):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                # Read it once more, leniently, only to find whom to tell.
                lenient = line.decode("utf-8", "replace").strip()
                self._malformed(lenient, f"invalid UTF-8 ({exc.reason})")
                return
        else:
            text = line
        text = text.strip()
        if not text:
            return
        try:
            msg = _parse_strict(text)
            if not isinstance(msg, dict):
                raise Malformed("not a JSON object")
            body = msg.get("body")
            if not isinstance(body, dict) or not isinstance(body.get("type"), str):
                raise Malformed("body must be an object with a string 'type'")
            if not isinstance(msg.get("src"), str):
                raise Malformed("src must be a string")
            for field in ("msg_id", "in_reply_to"):
                if field in body and not _is_int(body[field]):
                    raise Malformed(f"{field} must be an integer, got {body[field]!r:.50}")
        except Exception as exc:  # ValueError, RecursionError: any parse failure
            self._malformed(text, _describe(exc))
            return
        try:
            self.handle(msg)
        except Exception as exc:  # one bad message must not stop the node
            self.log(f"error: handling {text[:200]} failed: {_describe(exc)}")
            code = (
                MALFORMED_REQUEST if isinstance(exc, ValueError | KeyError | TypeError) else CRASH
            )
            self._error_reply(msg["src"], body.get("msg_id"), code, _describe(exc))

    def _malformed(self, text: str, why: str) -> None:
        """Log a line that could not be used, and answer it if its sender can be read."""
        self.log(f"error: malformed input ({why}): {text[:200]!r}")
        try:
            # Lenient on purpose (NaN, 1e999 accepted): it only looks for src and
            # msg_id, which must themselves be clean to be used.
            msg = json.loads(text)
            src, msg_id = msg["src"], msg["body"]["msg_id"]
        except Exception:
            return
        if isinstance(src, str) and src.isprintable() and "\ufffd" not in src:
            self._error_reply(src, msg_id, MALFORMED_REQUEST, f"malformed request: {why}")

    def _error_reply(self, dest: str, msg_id: object, code: int, text: str) -> None:
        """Send a Maelstrom error to ``dest`` for request ``msg_id``, if it has one."""
        if not _is_int(msg_id):
            return  # not a request (or no usable id): nobody waits for an answer
        try:
            self.send(dest, {"type": "error", "code": code, "text": text, "in_reply_to": msg_id})
        except Exception as exc:
            self.log(f"error: could not send the error reply to {dest!r:.50}: {_describe(exc)}")

    def handle(self, msg: dict[str, Any]) -> None:
        body: Body = msg["body"]
        if self.node_id is None and isinstance(msg.get("dest"), str):
            self._addressed_as = msg["dest"]
        if "in_reply_to" in body and body["type"] not in _REQUESTS:
            if not self.replies.resolve(body["in_reply_to"], body):
                self.log(f"late or unknown reply ignored: in_reply_to={body['in_reply_to']}")
            return
        kind = body["type"]
        if kind == "init":
            self.node_id = str(body["node_id"])
            self.node_ids = [str(n) for n in body.get("node_ids", [])]
            self.reply(msg, {"type": "init_ok"})
        elif kind == "echo":
            self.reply(msg, {"type": "echo_ok", "echo": body.get("echo")})
        elif kind == "pending_count":
            self.reply(msg, {"type": "pending_count_ok", "count": self.replies.pending_count})
        elif kind == "send_fire_forget":
            payload = body["payload"]
            if not isinstance(payload, dict):
                raise ValueError("payload must be an object")
            self.rpc(str(body["target"]), payload, self._fire_forget_done)
            self.reply(msg, {"type": "send_fire_forget_ok", "pending": self.replies.pending_count})
        else:
            self.log(f"error: unsupported message type {kind!r}")
            if "msg_id" in body:
                self.reply(msg, {"type": "error", "code": 10, "text": f"unsupported: {kind}"})

    def _fire_forget_done(self, reply: Body | None, error: BaseException | None) -> None:
        if reply is not None:
            self.log(f"fire-and-forget got a reply after all: {reply.get('type')}")


_REQUESTS = frozenset({"init", "echo", "pending_count", "send_fire_forget"})


def _describe(exc: BaseException) -> str:
    """``repr(exc)``, short enough for a log line or an error reply."""
    text = repr(exc)
    return text if len(text) <= 200 else text[:197] + "..."


async def serve(
    lines: AsyncIterable[str] | AsyncIterable[bytes],
    write: Callable[[str], object],
    log: Callable[[str], object],
) -> Node:
    """Run a node over ``lines`` until they end (EOF), then shut down cleanly."""
    async with duetime.Scheduler() as scheduler:
        node = Node(scheduler, write, log)
        async for line in lines:
            node.handle_line(line)
        if node.replies.pending_count:
            log(f"EOF: dropping {node.replies.pending_count} pending callback(s)")
    return node


def _write_stdout(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _log_stderr(line: str) -> None:
    sys.stderr.write(line + "\n")
    sys.stderr.flush()


async def main() -> None:
    # Bytes, decoded line by line in handle_line: a text stdin would raise
    # UnicodeDecodeError in the iterator itself, outside any per-line handling.
    await serve(anyio.wrap_file(sys.stdin.buffer), _write_stdout, _log_stderr)


if __name__ == "__main__":
    anyio.run(main)
