"""Retries: the code of docs/guide-retries.md.

Run it with ``python docs/examples/retries.py``; tests/test_docs_examples.py runs
``main()`` on virtual time on asyncio and on trio.
"""

# mypy: disable-error-code="comparison-overlap"
# (a status asserted before and after awaiting: mypy would narrow the property)

from __future__ import annotations

import anyio

import duetime
from duetime import Retry, Scheduler, Status


class FlakyService:
    """Fails the first ``failures`` calls with ConnectionError, then answers."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls: list[float] = []

    async def get(self, key: str) -> str:
        self.calls.append(anyio.current_time())
        await anyio.sleep(0.01)
        if len(self.calls) <= self.failures:
            raise ConnectionError(f"attempt {duetime.current_run().attempt} failed")
        return f"value of {key}"


async def basic_retry() -> None:
    # --8<-- [start:basic]
    service = FlakyService(failures=2)
    # Attempt 2 starts 0.5 s after attempt 1 fails, attempt 3 another 1 s later.
    policy = Retry(attempts=3, backoff=0.5, factor=2.0, jitter=0.0)
    async with Scheduler() as scheduler:
        start = anyio.current_time()
        handle = scheduler.call_soon(service.get, "user:42", retry=policy)
        assert await handle == "value of user:42"
        starts = [t - start for t in service.calls]
        print(" ".join(f"{t:.2f}" for t in starts))  # 0.00 0.51 1.52
        # Each pause is counted from the end of the failed attempt (10 ms here).
        assert starts[1] - starts[0] >= 0.5 + 0.01
        assert starts[2] - starts[1] >= 1.0 + 0.01
    # --8<-- [end:basic]


async def gives_up() -> None:
    # --8<-- [start:gives_up]
    service = FlakyService(failures=10)
    async with Scheduler() as scheduler:
        handle = scheduler.call_soon(service.get, "k", retry=Retry(attempts=4, backoff=0.1))
        try:
            await handle
        except ConnectionError as exc:
            print(f"gave up: {exc}")  # gave up: attempt 4 failed
        assert handle.status is Status.FAILED
        assert len(service.calls) == 4
        # A handle is counted once, however many attempts it took.
        assert scheduler.statistics().failed == 1
    # --8<-- [end:gives_up]


async def only_some_errors() -> None:
    # --8<-- [start:on]
    calls = 0

    def parse(text: str) -> int:
        nonlocal calls
        calls += 1
        return int(text)  # ValueError is a bug in the input, not a transient fault

    transient = Retry(attempts=5, backoff=0.2, on=(ConnectionError, TimeoutError))
    async with Scheduler() as scheduler:
        handle = scheduler.call_soon(parse, "not a number", retry=transient)
        await handle.wait()
        assert isinstance(handle.exception, ValueError)
        assert calls == 1  # not retried: ValueError is not in `on`
    # --8<-- [end:on]


async def per_attempt_timeout() -> None:
    # --8<-- [start:timeout]
    calls = 0

    async def sometimes_hangs() -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await anyio.sleep(3600)  # the first attempt hangs
        return "answered"

    async with Scheduler() as scheduler:
        start = anyio.current_time()
        handle = scheduler.call_soon(
            sometimes_hangs, timeout=2.0, retry=Retry(attempts=3, backoff=0.5, jitter=0)
        )
        # timeout= bounds each attempt; TimeoutError is an Exception, so it is retried.
        assert await handle == "answered"
        elapsed = anyio.current_time() - start
        assert 2.49 < elapsed < 2.6  # 2 s timeout + 0.5 s pause
    # --8<-- [end:timeout]


async def cancel_between_attempts() -> None:
    # --8<-- [start:cancel]
    service = FlakyService(failures=10)
    async with Scheduler() as scheduler:
        handle = scheduler.call_soon(service.get, "k", retry=Retry(attempts=10, backoff=5))
        await anyio.sleep(1)  # attempt 1 failed; attempt 2 waits on the heap
        assert handle.status is Status.PENDING
        assert handle.cancel() is True  # no sleeping task to interrupt: O(1)
        assert handle.status is Status.CANCELLED
        assert len(service.calls) == 1
    # --8<-- [end:cancel]


async def retries_within_a_deadline() -> None:
    # --8<-- [start:deadline]
    service = FlakyService(failures=10)
    async with Scheduler() as scheduler:
        with anyio.move_on_after(3):  # the caller's budget
            handle = scheduler.call_soon(
                service.get,
                "k",
                retry=Retry(attempts=10, backoff=1.0, factor=2.0, jitter=0),
                inherit_deadline=True,
            )
        await handle.wait()
        # Attempts at t=0 and t=1.01; the next would start at t=3.02, past the
        # deadline, so the handle fails with the last error instead of retrying.
        assert len(service.calls) == 2
        assert isinstance(handle.exception, ConnectionError)
    # --8<-- [end:deadline]


async def main() -> None:
    await basic_retry()
    await gives_up()
    await only_some_errors()
    await per_attempt_timeout()
    await cancel_between_attempts()
    await retries_within_a_deadline()
    print("all retry examples passed")


if __name__ == "__main__":
    anyio.run(main)
