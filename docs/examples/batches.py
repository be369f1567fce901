"""Worker pools and deadline-bounded batches: the code of docs/batches.md.

Run it with ``python docs/examples/batches.py``; tests/test_docs_examples.py runs
it on virtual time on asyncio and on trio.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import anyio

import duetime
from duetime.testing import VirtualTimeLoop


async def pool_basics() -> None:
    # --8<-- [start:pool]
    async def resize(image: str) -> str:  # async or sync, one argument
        await anyio.sleep(0.2)
        return f"{image} (small)"

    async with duetime.WorkerPool(resize, workers=4, maxsize=8) as pool:
        handles = [await pool.submit(f"img{i}.png") for i in range(20)]  # backpressure
        try:
            pool.submit_nowait("one-more.png")
        except anyio.WouldBlock:
            print("queue full: try later")  # the non-blocking way to learn it
    # leaving the block = aclose() + wait until every queued item has run
    assert [h.return_value for h in handles[:2]] == ["img0.png (small)", "img1.png (small)"]
    stats = pool.statistics()
    assert stats.submitted == stats.completed  # every item accounted for
    # --8<-- [end:pool]


async def priorities() -> None:
    # --8<-- [start:priority]
    order: list[str] = []

    async def job(name: str) -> None:
        order.append(name)
        await anyio.sleep(0.1)

    async with duetime.WorkerPool(job, workers=1, priority=True) as pool:
        # One worker, busy with the first item while the others queue up.
        for name, prio in [("first", 0), ("routine", 5), ("urgent", 0), ("later", 9)]:
            await pool.submit(name, priority=prio)  # lower runs first; FIFO among equals
    assert order == ["first", "urgent", "routine", "later"]
    # --8<-- [end:priority]


async def partial_results() -> None:
    # --8<-- [start:partial]
    async def send_notification(user: int) -> str:
        await anyio.sleep(0.1)
        return f"sent to {user}"

    report = None
    with anyio.move_on_after(1.0):  # the job's time budget
        report = await duetime.process_batch(range(20), send_notification)
    assert report is not None  # returned before the deadline, not cancelled
    print(len(report.completed), "sent;", len(report.skipped), "left for the next run")
    assert (len(report.completed), len(report.skipped)) == (9, 11)
    assert report.wasted == 0  # the 10th item could not finish, so it never started
    # --8<-- [end:partial]


async def resume(directory: Path) -> None:
    # --8<-- [start:checkpoint]
    async def ship(order_id: int) -> str:
        await anyio.sleep(0.1)
        return f"order {order_id} shipped"

    checkpoint = directory / "ship.sqlite"
    orders = list(range(30))
    with anyio.move_on_after(1.0):  # tonight's window closes early
        first = await duetime.process_batch(orders, ship, checkpoint=checkpoint, key=str)
    second = await duetime.process_batch(orders, ship, checkpoint=checkpoint, key=str)
    assert len(first.completed) == 9
    assert len(second.checkpointed) == 9  # done last time: not run again
    assert len(second.completed) == 21
    # --8<-- [end:checkpoint]


async def main() -> None:
    await pool_basics()
    await priorities()
    await partial_results()
    with tempfile.TemporaryDirectory() as tmp:
        await resume(Path(tmp))
    print("batches examples passed")


if __name__ == "__main__":
    # Virtual time: instant, and every figure above is exact.  Drop backend_options
    # to watch it in real time.
    anyio.run(main, backend_options={"loop_factory": VirtualTimeLoop})
