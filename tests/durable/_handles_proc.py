"""Processes for the durable-handle crash test (run as a module, not collected).

``waiter STORE OUT BACKEND KEY``: defers ``h.report`` under KEY, writes
``waiting``, awaits the entry and writes ``result <json>`` (or ``error <type>``).

``worker STORE OUT BACKEND``: runs tasks; ``h.report`` writes ``started
<deliveries>`` and, on the first delivery, hangs (the test kills the process
with SIGKILL); on a later delivery it returns a value naming the delivery.

STORE is a SQLite path or a redis:// URL (open_store).  Lines are written one
``write()`` each, line-buffered: a SIGKILL tears at most the last one.
"""

from __future__ import annotations

import json
import sys

import anyio

from duetime import Scheduler
from duetime.durable import SQLiteStore, Store, TaskRegistry, current_entry, open_store

tasks = TaskRegistry()
_out: list[str] = []


def note(line: str) -> None:
    with open(_out[0], "a", buffering=1) as f:
        f.write(line + "\n")


@tasks.task("h.report", lease=1.0, max_deliveries=5)
async def report(n: int) -> dict[str, object]:
    deliveries = current_entry().deliveries
    note(f"started {deliveries}")
    if deliveries == 1:
        await anyio.sleep(3600)  # killed here
    return {"report": n, "delivery": deliveries}


def store_for(where: str) -> Store:
    if where.startswith("redis"):
        return open_store(where, prefix="handles", poll=0.2)
    return SQLiteStore(where, poll=0.05)


async def waiter(where: str, key: str) -> None:
    async with Scheduler(store=store_for(where), tasks=tasks, worker=False) as s:
        d = await s.defer(report, 7, key=key)
        note("waiting")
        try:
            value = await d.result(timeout=120)
        except Exception as exc:
            note(f"error {type(exc).__name__}")
            return
        note("result " + json.dumps(value, sort_keys=True))


async def worker(where: str) -> None:
    async with Scheduler(store=store_for(where), tasks=tasks, worker=True):
        await anyio.sleep_forever()


if __name__ == "__main__":
    role, where, out, backend = sys.argv[1:5]
    _out.append(out)
    if role == "waiter":
        anyio.run(waiter, where, sys.argv[5], backend=backend)
    else:
        anyio.run(worker, where, backend=backend)
