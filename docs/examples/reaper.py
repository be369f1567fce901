"""The reaper for RPC callbacks whose replies never arrive.

The code of docs/guide-reaper.md.  Run it with ``python docs/examples/reaper.py``;
tests/test_docs_examples.py runs it on virtual time on asyncio and on trio.
"""

from __future__ import annotations

from functools import partial

import anyio

from duetime import Handle, PendingReplies, Scheduler, Status
from duetime.testing import VirtualTimeLoop


async def main() -> None:
    # --8<-- [start:reaper]
    async with Scheduler() as scheduler:
        replies: PendingReplies[dict[str, str]] = PendingReplies(scheduler, timeout=2.0)
        outcomes: dict[int, str] = {}

        def on_reply(msg_id: int, h: Handle[dict[str, str]]) -> None:
            # The RPC callback: runs once, with the reply or with TimeoutError.
            outcomes[msg_id] = "ok" if h.status is Status.COMPLETED else repr(h.exception)

        for msg_id in range(3):  # send three requests
            replies.expect(msg_id).add_done_callback(partial(on_reply, msg_id))
        assert replies.pending_count == 3

        await anyio.sleep(0.5)
        replies.resolve(1, {"type": "echo_ok"})  # only one reply comes back
        await anyio.sleep(2)  # each other entry expires at its own deadline
        assert outcomes[1] == "ok"
        assert outcomes[0].startswith("TimeoutError")
        assert (replies.pending_count, replies.reaped_count) == (0, 2)

        assert replies.resolve(0, {"type": "echo_ok"}) is False  # too late: ignored
        assert replies.late_count == 1
        assert scheduler.statistics().pending == 0  # nothing left behind in the heap
    # --8<-- [end:reaper]
    print("reaper example passed")


if __name__ == "__main__":
    # Virtual time: instant, and every time above is exact.  Drop backend_options
    # to watch it in real time (then times are only approximately on the grid).
    anyio.run(main, backend_options={"loop_factory": VirtualTimeLoop})
