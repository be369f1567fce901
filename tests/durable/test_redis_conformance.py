"""RedisStore passes the store conformance suite, on asyncio and trio, on a real server.

Redis answers over real sockets, so each test holds the virtual clock's autojump
(time flows at the real rate while the server replies).  The suite's
:meth:`advance` moves the stores' view of the server clock instead
(``RedisStore.advance_clock``, a test-only offset added to ``TIME`` in every
script), so leases and tombstones lapse without waiting.  The two tests that
wait on the loop clock itself are re-stated here with real waits under 1 s.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from duetime.durable import RedisStore, Store
from duetime.durable.conformance import StoreConformance, row
from duetime.testing import hold_autojump

pytestmark = pytest.mark.anyio


class TestRedisStore(StoreConformance):
    stores: list[RedisStore]
    factory: Callable[..., RedisStore]

    @pytest.fixture(autouse=True)
    async def _real_server(
        self, anyio_backend: Any, redis_store: Callable[..., RedisStore]
    ) -> AsyncIterator[None]:
        self.factory = redis_store
        self.stores = []
        with hold_autojump():
            yield

    def make_store(self, tmp_path: Path, **options: Any) -> Store:
        store = self.factory(poll=0.2, **options)
        self.stores.append(store)
        return store

    async def advance(self, seconds: float) -> None:
        for store in self.stores:
            store.advance_clock(seconds)

    async def test_wait_changed_times_out(self, store: Store) -> None:
        t0 = anyio.current_time()
        await store.wait_changed(0.5)  # two safety polls see the same head: no early return
        assert 0.5 <= anyio.current_time() - t0 < 1.5

    async def test_wait_changed_wakes_on_an_earlier_entry(self, store: Store) -> None:
        now = await store.time()
        await store.add([row("late", due=now + 1000)])
        await store.wait_changed(0.5)  # that add's own wake-up
        woke = math.inf

        async def waiter() -> None:
            nonlocal woke
            await store.wait_changed(600.0)
            woke = anyio.current_time()

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(0.1)
            t_add = anyio.current_time()
            await store.add([row("soon", delay=10)])
        assert t_add <= woke <= t_add + 0.1  # the pub/sub message, not the 0.2 s poll
