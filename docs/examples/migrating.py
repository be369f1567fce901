"""Migrating to duetime: the duetime side of docs/migrating.md.

Run it with ``python docs/examples/migrating.py``; tests/test_docs_examples.py
runs it on virtual time on asyncio and on trio.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import anyio

from duetime import Scheduler, Status, ThreadedScheduler


def add(a: int, b: int) -> int:
    return a + b


async def fetch(url: str) -> str:
    await anyio.sleep(0.1)
    return f"<body of {url}>"


async def send_reminder(user: str) -> str:
    return f"reminded {user}"


async def from_call_later() -> None:
    # --8<-- [start:asyncio]
    async with Scheduler() as scheduler:
        # A result, or the callback's exception, without a hand-made Future.
        assert await scheduler.call_later(0.5, add, 1, 2) == 3

        doomed = scheduler.call_later(60, print, "never")
        assert doomed.cancel()  # True; the entry is dropped, not kept until its time

        # Async callbacks are scheduled like sync ones; the scheduler owns the task.
        page = scheduler.call_later(1, fetch, "https://example.org")
        assert await page == "<body of https://example.org>"
    # Leaving the block cancels what has not started: no timer outlives it.
    # --8<-- [end:asyncio]


async def from_apscheduler() -> None:
    # --8<-- [start:apscheduler]
    async with Scheduler() as scheduler:
        # One-shot at a wall-clock time: the aware datetime itself.
        run_at = datetime.now(UTC) + timedelta(seconds=1)
        reminder = scheduler.call_at(run_at, send_reminder, "ana")
        # Every handle has its result: await it.
        assert await scheduler.call_soon(send_reminder, "bob") == "reminded bob"
        assert reminder.cancel()  # cancel, by handle
    # --8<-- [end:apscheduler]


def greet(name: str) -> None:
    print(f"Hello, {name}!")


def from_thread_and_heap() -> None:
    # --8<-- [start:threadheap]
    with ThreadedScheduler() as scheduler:
        hello = scheduler.call_later(0.2, greet, "Alice")
        goodbye = scheduler.call_later(0.5, greet, "Bob")
        assert goodbye.cancel()  # O(1), not a scan and a re-heapify
        hello.result(timeout=5)  # wait for it, instead of time.sleep(6)
        assert hello.status is Status.COMPLETED
    # Leaving the block shuts down: pending jobs cancelled, running ones finished.
    # --8<-- [end:threadheap]


async def main() -> None:
    await from_call_later()
    await from_apscheduler()


if __name__ == "__main__":
    anyio.run(main)
    start = time.monotonic()
    from_thread_and_heap()  # synchronous: no event loop in this thread
    assert time.monotonic() - start < 5
    print("all migration examples passed")
