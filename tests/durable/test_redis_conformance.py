"""RedisStore passes the store conformance suite, on asyncio and trio, on a real server.

The wiring (real waits, the server clock moved by ``RedisStore.advance_clock``,
a test-only offset added to ``TIME`` in every script): tests/durable/_on_server.py.
"""

from __future__ import annotations

import math
from typing import ClassVar

import anyio
import pytest

from duetime.durable import Store
from duetime.durable.conformance import row

from ._on_server import OnServerConformance

pytestmark = pytest.mark.anyio


class TestRedisStore(OnServerConformance):
    store_fixture: ClassVar[str] = "redis_store"

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
