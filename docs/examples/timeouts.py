"""Timeouts and watchdogs: the code of docs/guide-timeouts.md.

Run it with ``python docs/examples/timeouts.py``; tests/test_docs_examples.py runs
it on virtual time on asyncio and on trio.
"""

from __future__ import annotations

import anyio

from duetime import Scheduler, Timeouts
from duetime.testing import VirtualTimeLoop


async def watchdog() -> None:
    # --8<-- [start:watchdog]
    async with Scheduler() as scheduler:
        timeouts = Timeouts(scheduler)
        restarted: list[str] = []

        def on_stall(worker: str) -> None:
            restarted.append(worker)  # e.g. restart the worker

        for worker in ("w1", "w2"):
            timeouts.set(worker, 5.0, on_stall, worker)  # one timer per key
        for _ in range(3):  # w1 sends a heartbeat every 2 s; w2 has hung
            await anyio.sleep(2)
            timeouts.reset("w1")  # restart its countdown with the original 5 s
        assert restarted == ["w2"]  # fired at t=5 and removed itself
        assert "w1" in timeouts
        assert "w2" not in timeouts
        timeouts.clear("w1")  # shutting down: no more watchdog
        assert len(timeouts) == 0
    # --8<-- [end:watchdog]


async def debounce() -> None:
    # --8<-- [start:debounce]
    async with Scheduler() as scheduler:
        timeouts = Timeouts(scheduler)
        saved: list[str] = []
        for text in ("h", "he", "hel", "hell", "hello"):  # keystrokes 0.1 s apart
            timeouts.set("save", 0.5, saved.append, text)  # replaces the pending one
            await anyio.sleep(0.1)
        await anyio.sleep(1)
        assert saved == ["hello"]  # one save, 0.5 s after the last keystroke
    # --8<-- [end:debounce]


async def per_operation() -> None:
    # --8<-- [start:operation]
    async def fetch(url: str) -> str:
        await anyio.sleep(10)  # a server that never answers
        return "body"

    async with Scheduler() as scheduler:
        handle = scheduler.call_soon(fetch, "https://slow.example", timeout=2.0)
        try:
            await handle
        except TimeoutError:
            print(f"gave up: {handle.status}")  # gave up: FAILED
    # --8<-- [end:operation]


async def main() -> None:
    await watchdog()
    await debounce()
    await per_operation()
    print("timeouts examples passed")


if __name__ == "__main__":
    # Virtual time: instant, and every time above is exact.  Drop backend_options
    # to watch it in real time (then times are only approximately on the grid).
    anyio.run(main, backend_options={"loop_factory": VirtualTimeLoop})
