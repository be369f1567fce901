"""Aborting durable runs: the code of docs/guide-durable.md, "Aborting a run".

An async task is cancelled where it awaits; a sync task, in a thread that
cannot be interrupted, checks ``current_entry().abort_requested`` between
steps.  An operator's process, which has only the keys, aborts both; the
process that deferred them gets ``CallbackCancelled`` when it awaits them.
tests/test_docs_examples.py runs it on virtual time on both backends.
"""

from __future__ import annotations

import time

import anyio

from duetime import CallbackCancelled, Scheduler, Status, TaskRegistry, current_entry
from duetime.testing import MemoryStore

store = MemoryStore()  # in production: SQLiteStore("jobs.db") or open_store(url)
tasks = TaskRegistry()
written: list[int] = []


def add_up(i: int) -> int:
    time.sleep(0.001)  # a slow, blocking step (a query, a file)
    return i


# --8<-- [start:tasks]
@tasks.task("exports.build")
async def build_export(export_id: int) -> str:
    # Async: nothing to do. An abort cancels the task where it awaits;
    # clean up in `finally` (or `except anyio.get_cancelled_exc_class()`).
    for part in range(100):
        await anyio.sleep(1)  # fetch and write one part
        written.append(part)
    return f"s3://exports/{export_id}.csv"


@tasks.task("exports.crunch")
def crunch(rows: int) -> int:
    # Sync: a thread cannot be interrupted. Check between steps, and return
    # early: the entry ends CANCELLED and the value returned is discarded.
    total = 0
    for i in range(rows):
        if current_entry().abort_requested:
            return total
        total += add_up(i)
    return total
    # --8<-- [end:tasks]


async def main() -> None:
    async with Scheduler(store=store, tasks=tasks) as web:  # defers, and runs a worker
        export = await web.defer(build_export, 7, key="export-7")
        sums = await web.defer(crunch, 100_000, key="sums-2026")
        await anyio.sleep(2.5)
        # --8<-- [start:operator]
        # Another process (an admin endpoint, a script): it has the keys.
        async with Scheduler(store=store, tasks=tasks, worker=False) as ops:
            for key in ("export-7", "sums-2026"):
                entry = await ops.deferred(key)
                assert entry is not None
                assert entry.status is Status.RUNNING
                assert await ops.cancel_deferred(key, abort=True)
        # --8<-- [end:operator]
        # --8<-- [start:awaiter]
        try:
            await export
        except CallbackCancelled as exc:
            print(exc)  # durable entry 'export-7' was aborted while it ran
        # --8<-- [end:awaiter]
        try:
            await sums
            raise AssertionError("an aborted entry has no value")
        except CallbackCancelled:
            pass
        for key in ("export-7", "sums-2026"):
            entry = await web.deferred(key)
            assert entry is not None
            assert (entry.status, entry.last_error) == (Status.CANCELLED, "aborted")
        await anyio.sleep(60)  # nothing retries them
    assert written == [0, 1]
    print("durable abort example passed")


if __name__ == "__main__":
    anyio.run(main)
