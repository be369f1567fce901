"""The worker on a store that offers ``finish_and_claim``: a group of finishes
carries the claim of the slots it frees, the concurrency bound holds, every
entry runs once, and a claim that comes back during shutdown is released.
MemoryStore, virtual time, asyncio and trio."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from duetime import Status
from duetime.durable import MemoryStore, StoreSession, TaskRegistry, current_entry
from duetime.durable._store import Claim, Outcome
from duetime.durable.conformance import row

pytestmark = pytest.mark.anyio


class Counting(MemoryStore):
    """A MemoryStore that counts the worker's calls; ``gate`` (when set) holds
    ``finish_and_claim`` until opened."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.calls: Counter[str] = Counter()
        self.gate: anyio.Event | None = None
        self.entered = anyio.Event()
        self.held: list[str] = []  # the keys the held call claimed

    async def claim(self, owner: str, limit: int) -> list[Claim]:
        self.calls["claim"] += 1
        return await super().claim(owner, limit)

    async def finish_many(self, items: Sequence[tuple[str, int, Outcome]]) -> list[bool]:
        self.calls["finish_many"] += 1
        return await super().finish_many(items)

    async def finish_and_claim(
        self, items: Sequence[tuple[str, int, Outcome]], owner: str, limit: int
    ) -> tuple[list[bool], list[Claim]]:
        self.calls["finish_and_claim"] += 1
        got = await super().finish_and_claim(items, owner, limit)
        if self.gate is not None and got[1] and not self.entered.is_set():
            self.held = [c.entry.key for c in got[1]]
            self.entered.set()
            await self.gate.wait()  # the rows are claimed; the reply waits
        return got


async def _all_done(store: MemoryStore, n: int) -> None:
    with anyio.fail_after(3600):
        while len(await store.entries(status=Status.COMPLETED, limit=n + 1)) < n:
            await anyio.sleep(0.5)


async def test_finishes_carry_the_next_claim_and_the_bound_holds() -> None:
    tasks = TaskRegistry()
    ran: Counter[str] = Counter()
    running = most = 0

    @tasks.task("t")
    async def work(i: int) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        ran[current_entry().key] += 1
        await anyio.sleep(0.01 * (i % 3))  # runs end apart: groups of several sizes
        running -= 1

    store = Counting()
    n = 600
    await store.__aenter__()
    await store.add([row(f"k{i}", i) for i in range(n)])
    async with StoreSession(store, tasks, worker=True, concurrency=20):
        await _all_done(store, n)
    await store.__aexit__(None, None, None)
    assert len(ran) == n
    assert set(ran.values()) == {1}
    assert most <= 20
    # Most claims rode with finishes: far fewer separate claims than batches.
    assert store.calls["finish_and_claim"] >= n // 20
    assert store.calls["claim"] < store.calls["finish_and_claim"] / 4


async def test_no_claim_rides_once_the_store_is_drained() -> None:
    tasks = TaskRegistry()

    @tasks.task("t")
    async def work(i: int) -> None:
        await anyio.sleep(1)

    store = Counting()
    await store.__aenter__()
    async with StoreSession(store, tasks, worker=True, concurrency=20):
        for i in range(10):  # one at a time: the claims come back short
            await store.add([row(f"k{i}", i)])
            await anyio.sleep(5)
        await _all_done(store, 10)
    await store.__aexit__(None, None, None)
    assert store.calls["finish_and_claim"] == 0
    assert store.calls["finish_many"] == 10


async def test_a_claim_that_returns_during_shutdown_is_released() -> None:
    tasks = TaskRegistry()

    ran: set[str] = set()

    @tasks.task("t")
    async def work(i: int) -> None:
        ran.add(current_entry().key)

    store = Counting()
    store.gate = anyio.Event()
    await store.__aenter__()
    await store.add([row(f"k{i}", i) for i in range(30)])

    async def open_later() -> None:
        await anyio.sleep(1)  # shutdown has begun by then
        assert store.gate is not None
        store.gate.set()

    async with (
        anyio.create_task_group() as tg,
        StoreSession(store, tasks, worker=True, concurrency=5, grace=0),
    ):
        with anyio.fail_after(600):
            await store.entered.wait()  # rows claimed with finishes, reply held
        tg.start_soon(open_later)
    entries = await store.entries(limit=100)
    await store.__aexit__(None, None, None)
    assert not [e.key for e in entries if e.status is Status.RUNNING]
    # What the held call claimed went back unrun, its claim not counted.
    assert store.held
    assert not ran & set(store.held)
    back = {e.key: e for e in entries if e.key in store.held}
    assert {e.status for e in back.values()} == {Status.PENDING}
    assert {e.deliveries for e in back.values()} == {0}


class Faulty(MemoryStore):
    """A fault-injecting store as a user writes one: it overrides ``finish_many``
    only, and sees every finish."""

    def __init__(self) -> None:
        super().__init__()
        self.finished: Counter[str] = Counter()

    async def finish_many(self, items: Sequence[tuple[str, int, Outcome]]) -> list[bool]:
        self.finished.update(key for key, _token, _outcome in items)
        return await super().finish_many(items)


async def test_a_subclass_that_overrides_finish_many_sees_every_finish() -> None:
    tasks = TaskRegistry()

    @tasks.task("t")
    async def work(i: int) -> None:
        await anyio.sleep(0.01 * (i % 3))

    store = Faulty()
    n = 300
    await store.__aenter__()
    await store.add([row(f"k{i}", i) for i in range(n)])
    async with StoreSession(store, tasks, worker=True, concurrency=10):
        await _all_done(store, n)
    await store.__aexit__(None, None, None)
    assert store.finished == Counter({f"k{i}": 1 for i in range(n)})
