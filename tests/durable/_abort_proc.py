"""Tasks for the abort tests with real processes (imported by a ``python -m
duetime worker`` process and by the test; not collected).

Each task appends lines to the file named by its first argument, one
``write()`` each: ``start KEY`` when it starts, ``cancelled KEY`` when its run
is cancelled (the cancellation goes on), ``end KEY`` when it returns.
"""

from __future__ import annotations

import anyio

from duetime.durable import TaskRegistry, current_entry

tasks = TaskRegistry()


def note(out: str, line: str) -> None:
    with open(out, "a", buffering=1) as f:
        f.write(line + "\n")


@tasks.task("abort.hang", lease=30.0)
async def hang(out: str) -> str:
    """Runs for an hour unless aborted."""
    return await _run(out, 3600.0)


@tasks.task("abort.brief", lease=30.0)
async def brief(out: str, work: float) -> str:
    """Runs ``work`` seconds and returns its key."""
    return await _run(out, work)


async def _run(out: str, work: float) -> str:
    key = current_entry().key
    note(out, f"start {key}")
    try:
        await anyio.sleep(work)
    except anyio.get_cancelled_exc_class():
        note(out, f"cancelled {key}")
        raise
    note(out, f"end {key}")
    return key
