"""A run that ends while the store does not answer still records its outcome.

A failed attempt (and a series' occurrence) needs the store's time to place
what comes next; when the store's clock call fails, the worker estimates it
from the claim instead of dropping the outcome (which would re-run the attempt
once its lease lapsed, and log a traceback per run).
"""

from __future__ import annotations

import anyio
import pytest

from duetime import Retry, Status
from duetime.durable import MemoryStore, StoreSession, TaskRegistry, current_entry

pytestmark = pytest.mark.anyio


class ClockOutageStore(MemoryStore):
    """A MemoryStore whose ``time()`` fails while ``down`` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    async def time(self) -> float:
        if self.down:
            raise OSError("connection refused")
        return await super().time()


async def test_a_failed_attempt_is_recorded_when_the_store_clock_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = TaskRegistry()
    attempts: list[int] = []
    store = ClockOutageStore()

    @tasks.task("flaky", retry=Retry(attempts=3, backoff=10, jitter=0))
    async def flaky() -> None:
        attempts.append(current_entry().attempt)
        store.down = True  # the store's clock stops answering as the attempt fails
        raise ValueError("boom")

    async with StoreSession(store, tasks, worker=True) as r:
        await r.client.defer(flaky, key="f")
        await anyio.sleep(1)
        store.down = False
        e = await r.client.deferred("f")
        assert e is not None
        assert (e.status, e.attempt, e.last_error) == (Status.PENDING, 2, "ValueError: boom")
        retry_at = e.due.timestamp()
        assert retry_at - await store.time() == pytest.approx(9.0, abs=0.5)
    assert attempts == [1]
    assert not any("failed around its run" in m for m in caplog.messages)
