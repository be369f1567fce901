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

The core, :class:`Node`, takes its input line by line and writes through plain
callables, so it can be driven in-process on virtual time (see
``tests/test_maelstrom.py``).
"""

# docs-example: not run by tests/test_docs_examples.py (it serves stdin until EOF);
# tests/test_maelstrom.py drives it with sample sessions instead.

from __future__ import annotations

import json
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
        """Send ``body`` (plus a fresh ``msg_id``, counting from 0) to ``dest``."""
        msg_id = self.next_msg_id
        self.next_msg_id += 1
        src = self.node_id if self.node_id is not None else self._addressed_as
        out = {"src": src, "dest": dest, "body": {**body, "msg_id": msg_id}}
        self.write(json.dumps(out))
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

    def handle_line(self, line: str) -> None:
        """Handle one input line.  Malformed input is logged and skipped."""
        line = line.strip()
        if not line:
            return
        try:
            msg = json.loads(line)
            if not isinstance(msg, dict):
                raise ValueError("not a JSON object")
            body = msg["body"]
            if not isinstance(body, dict) or not isinstance(body.get("type"), str):
                raise ValueError("body must be an object with a string 'type'")
            if not isinstance(msg["src"], str):
                raise ValueError("src must be a string")
        except (ValueError, KeyError) as exc:
            self.log(f"error: malformed input ignored ({exc!r}): {line[:200]}")
            return
        try:
            self.handle(msg)
        except Exception as exc:  # one bad message must not stop the node
            self.log(f"error: handling {line[:200]} failed: {exc!r}")

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


async def serve(
    lines: AsyncIterable[str],
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
    await serve(anyio.wrap_file(sys.stdin), _write_stdout, _log_stderr)


if __name__ == "__main__":
    anyio.run(main)
