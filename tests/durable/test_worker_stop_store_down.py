"""Leaving a worker whose store does not take its outcomes (finishes that hang
or fail) is bounded: after the grace, what cannot be recorded within STOP_CAP
is given up, logged once, and left to its lease; another worker runs each of
those entries once more after the lease, and nothing is recorded twice.  An
abort request still ends its entry CANCELLED.  MemoryStore on virtual time,
asyncio and trio."""

from __future__ import annotations

from collections import Counter
from typing import Any

import anyio
import pytest

from duetime import Status
from duetime.durable import MemoryStore, Release, StoreSession, TaskRegistry, current_entry

# The bound the worker documents for its stop (a private constant: the tests
# check that leaving keeps to it).
from duetime.durable._worker import STOP_CAP
from tests.durable.waiting import wait_for

pytestmark = pytest.mark.anyio

LEASE = 20.0
KEYS = ["a", "b", "c", "d"]


class Down(MemoryStore):
    """A MemoryStore whose finishes (``finish_many`` and ``finish_and_claim``)
    hang (``mode="hang"``) or raise ConnectionError (``"fail"``) while ``down``;
    the items it did not take are kept in ``held``."""

    def __init__(self, mode: str) -> None:
        super().__init__()
        self.mode = mode
        self.down = False
        self.held: list[tuple[str, int, Any]] = []

    async def _refuse(self, items: Any) -> None:
        self.held.extend(items)
        if self.mode == "hang":
            await anyio.sleep_forever()
        raise ConnectionError("Unable to establish a connection to 127.0.0.1:6379")

    async def finish_many(self, items: Any) -> list[bool]:
        if self.down:
            await self._refuse(items)
        return await super().finish_many(items)

    async def finish_and_claim(self, items: Any, owner: str, limit: int) -> Any:
        if self.down:
            await self._refuse(items)
        return await super().finish_and_claim(items, owner, limit)


def registry(runs: Counter[str], at: list[float] | None = None) -> TaskRegistry:
    tasks = TaskRegistry()

    @tasks.task("t", lease=LEASE)
    async def t() -> None:
        key = current_entry().key
        runs[key] += 1
        if at is not None:
            at.append(anyio.current_time())
        if runs[key] == 1:  # the first attempt runs until it is cancelled
            await anyio.sleep_forever()

    return tasks


@pytest.mark.parametrize("mode", ["hang", "fail"])
async def test_leaving_gives_up_outcomes_the_store_does_not_take(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    runs: Counter[str] = Counter()
    at: list[float] = []
    tasks = registry(runs, at)
    store = Down(mode)
    async with StoreSession(store, tasks, worker=True, grace=0, owner="w1") as w1:
        for key in KEYS:
            await w1.client.defer("t", key=key)
        while len(runs) < len(KEYS):
            await anyio.sleep(0.1)
        store.down = True
        t0 = anyio.current_time()
    # Not until the leases end: within STOP_CAP of the (zero) grace.
    assert anyio.current_time() - t0 <= STOP_CAP + 0.5
    lines = [r for r in caplog.records if "not recorded within" in r.getMessage()]
    assert len(lines) == 1
    assert lines[0].levelname == "WARNING"
    text = lines[0].getMessage()
    assert text.startswith(
        f"durable worker stopping: 4 outcome(s) not recorded within {STOP_CAP:g} s ("
    )
    assert sum(f"'{key}'" in text for key in KEYS) == 3
    assert ", ...): " in text
    assert {key for key, _, outcome in store.held if isinstance(outcome, Release)} == set(KEYS)
    for key in KEYS:  # left to their lease, not lost
        e = await store.get(key)
        assert e is not None
        assert (e.status, e.deliveries) == (Status.RUNNING, 1)

    store.down = False
    async with StoreSession(store, tasks, worker=True, owner="w2") as w2:
        for key in KEYS:
            e = await wait_for(w2.client, key, Status.COMPLETED)
            assert e.deliveries == 2
        await anyio.sleep(3 * LEASE)
    assert runs == dict.fromkeys(KEYS, 2)  # exactly once more each
    # Not before the leases the first worker held (renewed every LEASE/3) lapsed.
    assert min(at[len(KEYS) :]) >= t0 + LEASE / 2
    # The first worker's late writes (a reply lost, the write landing after
    # all) are fenced: nothing is recorded twice.
    assert await store.finish_many(store.held) == [False] * len(store.held)
    for key in KEYS:
        e = await store.get(key)
        assert e is not None
        assert (e.status, e.deliveries) == (Status.COMPLETED, 2)


async def test_a_finish_in_flight_on_the_busy_path_is_cut_at_the_bound() -> None:
    """finish_and_claim (the worker's busy path) hangs with claims riding on it;
    leaving cuts it short, and every entry still runs to completion once."""
    done: Counter[str] = Counter()
    tasks = TaskRegistry()

    @tasks.task("quick", lease=LEASE)
    async def quick() -> None:
        done[current_entry().key] += 1

    store = Down("hang")
    keys = [f"k{i}" for i in range(40)]
    calls = 0
    finish_and_claim = store.finish_and_claim

    async def hang_the_second(items: Any, owner: str, limit: int) -> Any:
        nonlocal calls
        calls += 1
        store.down = calls == 2  # only the first worker's second call
        return await finish_and_claim(items, owner, limit)

    store.finish_and_claim = hang_the_second  # type: ignore[method-assign]
    async with StoreSession(store, tasks, worker=True, concurrency=4, owner="w1") as w1:
        await w1.client.defer_many("quick", [() for _ in keys], keys=keys)
        while calls < 2:
            await anyio.sleep(0.01)
        t0 = anyio.current_time()
    assert anyio.current_time() - t0 <= STOP_CAP + 0.5
    store.down = False
    async with StoreSession(store, tasks, worker=True, owner="w2") as w2:
        for key in keys:
            await wait_for(w2.client, key, Status.COMPLETED)
        await anyio.sleep(3 * LEASE)
    # Those whose Done the hung call held back ran once more; none ran more.
    held = {key for key, _, _ in store.held}
    assert held
    assert {k: n for k, n in done.items() if n != 1} == dict.fromkeys(held, 2)


@pytest.mark.parametrize("mode", ["hang", "fail"])
async def test_an_abort_left_to_the_lease_is_still_honoured(mode: str) -> None:
    runs: Counter[str] = Counter()
    tasks = registry(runs)
    store = Down(mode)
    async with StoreSession(store, tasks, worker=True, grace=0, owner="w1") as w1:
        await w1.client.defer("t", key="a")
        while not runs:
            await anyio.sleep(0.1)
        store.down = True
        assert await w1.client.cancel_deferred("a", abort=True)
        while not store.held:  # its Aborted outcome does not get through
            await anyio.sleep(0.1)
    e = await store.get("a")
    assert e is not None
    assert e.status is Status.RUNNING
    store.down = False
    async with StoreSession(store, tasks, worker=True, owner="w2") as w2:
        e = await wait_for(w2.client, "a", Status.CANCELLED)
        await anyio.sleep(3 * LEASE)
    assert runs == {"a": 1}  # not run again


async def test_leaving_cuts_the_claim_loops_reads_short() -> None:
    """The claim loop's head and time calls hang (a client whose timeout is
    long): leaving does not wait for them."""

    class SlowReads(MemoryStore):
        hang = False

        async def head(self) -> Any:
            if self.hang:
                await anyio.sleep_forever()
            return await super().head()

    store = SlowReads()
    async with StoreSession(store, TaskRegistry(), worker=True) as session:
        store.hang = True
        assert session.worker is not None
        session.worker.poke()  # it claims (nothing), then reads the head: hangs
        await anyio.sleep(1)
        t0 = anyio.current_time()
    assert anyio.current_time() - t0 <= STOP_CAP
