"""Deferred callbacks and awaiting their results: the code of docs/guide-deferred.md.

Run it with ``python docs/examples/deferred.py``; tests/test_docs_examples.py runs
``main()`` on virtual time on asyncio and on trio.
"""

# mypy: disable-error-code="comparison-overlap"
# (a status asserted before and after awaiting: mypy would narrow the property)

from __future__ import annotations

import functools

import anyio

import duetime
from duetime import CallbackCancelled, Handle, Scheduler, Status

# For tests/test_docs_examples.py: trio's MockClock must not jump past the
# in_thread=True callback below while its timeout is pending (docs/testing.md).
TRIO_AUTOJUMP_THRESHOLD = 0.05


def add(a: int, b: int) -> int:
    return a + b


async def fetch(url: str, delay: float = 0.2) -> str:
    await anyio.sleep(delay)
    return f"<body of {url}>"


def divide(a: int, b: int) -> float:
    return a / b


async def basics() -> None:
    # --8<-- [start:basics]
    async with Scheduler() as scheduler:
        handle = scheduler.call_later(0.5, add, 1, 2)  # Handle[int], returned at once
        print(handle)  # <Handle id=1 name='add' status=PENDING when=...>
        assert handle.status is Status.PENDING
        assert await handle == 3  # waits until it has run, then gives its result
        assert handle.status is Status.COMPLETED
        assert handle.return_value == 3  # the same, without awaiting again
    # --8<-- [end:basics]


async def concurrent_results() -> None:
    # --8<-- [start:concurrent]
    async with Scheduler() as scheduler:
        start = anyio.current_time()
        # Keyword arguments for the callback go through functools.partial.
        pages = [
            scheduler.call_soon(functools.partial(fetch, f"https://example.org/{i}", delay=1.0))
            for i in range(3)
        ]
        bodies = [await page for page in pages]  # all three ran concurrently
        assert bodies[0] == "<body of https://example.org/0>"
        assert anyio.current_time() - start < 1.5  # about 1 s, not 3
    # --8<-- [end:concurrent]


async def cancelling() -> None:
    # --8<-- [start:cancel]
    async with Scheduler() as scheduler:
        doomed = scheduler.call_later(60, add, 0, 0, name="never-runs")
        assert doomed.cancel() is True  # O(1): nothing is searched or re-sorted
        assert doomed.cancel() is False  # already final: safe to call twice
        assert doomed.status is Status.CANCELLED
        try:
            await doomed
        except CallbackCancelled:
            print("awaiting a cancelled handle raises CallbackCancelled")

        slow = scheduler.call_soon(fetch, "https://slow.example.org", 10)
        await anyio.sleep(1)
        assert slow.status is Status.RUNNING
        assert slow.cancel() is True  # a running async callback is cancelled too
        await slow.wait()  # wait() never raises the outcome
        assert slow.status is Status.CANCELLED
    # --8<-- [end:cancel]


async def errors() -> None:
    # --8<-- [start:errors]
    unobserved: list[str] = []

    def on_error(handle: Handle[object], exc: BaseException) -> None:
        unobserved.append(f"{handle.name}: {exc!r}")

    async with Scheduler(on_error=on_error) as scheduler:
        bad = scheduler.call_later(0.1, divide, 1, 0)
        try:
            await bad  # the callback's own exception, with its traceback
        except ZeroDivisionError as exc:
            print(f"{bad.name} failed: {exc!r}")
        assert bad.status is Status.FAILED
        assert isinstance(bad.exception, ZeroDivisionError)

        # Nobody awaits this one and it has no done-callback: on_error gets it
        # (the default logs it at ERROR on the "duetime" logger).
        scheduler.call_soon(divide, 2, 0, name="fire-and-forget")
        await anyio.sleep(0.1)
        assert unobserved == ["fire-and-forget: ZeroDivisionError('division by zero')"]

        # A done-callback counts as observing the outcome.
        outcomes: list[Status] = []
        watched = scheduler.call_soon(divide, 3, 0)
        watched.add_done_callback(lambda h: outcomes.append(h.status))
        await watched.wait()
        assert outcomes == [Status.FAILED]
        assert len(unobserved) == 1
    # --8<-- [end:errors]


async def timeouts() -> None:
    # --8<-- [start:timeout]
    async with Scheduler() as scheduler:
        slow = scheduler.call_soon(fetch, "https://slow.example.org", 10, timeout=0.5)
        await slow.wait()
        assert slow.status is Status.FAILED
        assert isinstance(slow.exception, TimeoutError)

        # An inline sync callback cannot be interrupted, so timeout= needs a thread.
        try:
            scheduler.call_soon(add, 1, 2, timeout=0.5)
        except ValueError as exc:
            print(exc)
        threaded = scheduler.call_soon(add, 1, 2, timeout=0.5, in_thread=True)
        assert await threaded == 3
    # --8<-- [end:timeout]


async def leaving_the_block() -> None:
    # --8<-- [start:exit]
    ran: list[str] = []
    async with Scheduler() as scheduler:  # on_exit="cancel", the default
        left_behind = scheduler.call_later(1, ran.append, "cancel mode")
    assert left_behind.status is Status.CANCELLED

    async with Scheduler(on_exit="drain") as scheduler:
        drained = scheduler.call_later(1, ran.append, "drain mode")
    # The block waited for it to run at its due time.
    assert drained.status is Status.COMPLETED
    assert ran == ["drain mode"]
    # --8<-- [end:exit]


async def deadlines() -> None:
    # --8<-- [start:deadline]
    async with Scheduler() as scheduler:
        with anyio.move_on_after(2):  # say, the deadline of the request being served
            too_late = scheduler.call_later(5, add, 1, 1, inherit_deadline=True)
            in_time = scheduler.call_later(1, fetch, "https://x.org", inherit_deadline=True)
        # Due after the deadline: never started, at once.
        assert too_late.status is Status.EXPIRED
        # Due before the deadline: it runs, bounded by it (done at t=1.2 < 2).
        assert await in_time == "<body of https://x.org>"

        with anyio.move_on_after(2):
            cut = scheduler.call_later(1, fetch, "https://y.org", 5, inherit_deadline=True)
        await cut.wait()
        assert cut.status is Status.FAILED  # started, then cut off by the deadline
        assert isinstance(cut.exception, duetime.DeadlineExpired)
    # --8<-- [end:deadline]


async def run_info() -> None:
    # --8<-- [start:current_run]
    def report() -> float:
        run = duetime.current_run()
        return run.started - run.scheduled  # lateness of this run, in seconds

    async with Scheduler() as scheduler:
        lateness = await scheduler.call_later(1, report)
        assert 0 <= lateness < 0.1
    # --8<-- [end:current_run]


async def main() -> None:
    await basics()
    await concurrent_results()
    await cancelling()
    await errors()
    await timeouts()
    await leaving_the_block()
    await deadlines()
    await run_info()
    print("all deferred examples passed")


if __name__ == "__main__":
    anyio.run(main)  # or anyio.run(main, backend="trio")
