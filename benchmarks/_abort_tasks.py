"""The task ``bench_abort`` aborts, for a ``python -m duetime worker`` process (not a scenario).

``bench.hang(out)`` appends ``start KEY T`` to the file ``out``, sleeps for an
hour, and when its run is cancelled appends ``cancel KEY T`` (T: ``time.time()``)
before the cancellation goes on.  Each line is one ``write()``.
"""

from __future__ import annotations

import time

import anyio

from duetime.durable import TaskRegistry, current_entry

tasks = TaskRegistry()


def note(out: str, line: str) -> None:
    with open(out, "a", buffering=1) as f:
        f.write(line + "\n")


@tasks.task("bench.hang", lease=60.0)
async def hang(out: str) -> None:
    key = current_entry().key
    note(out, f"start {key} {time.time()!r}")
    try:
        await anyio.sleep(3600)
    except anyio.get_cancelled_exc_class():
        note(out, f"cancel {key} {time.time()!r}")
        raise
