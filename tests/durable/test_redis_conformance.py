"""RedisStore passes the store conformance suite, on asyncio and trio, on a real server.

The wiring (real waits, the server clock moved by ``RedisStore.advance_clock``,
a test-only offset added to ``TIME`` in every script): tests/durable/_on_server.py.
"""

from __future__ import annotations

from typing import ClassVar

import pytest

from duetime.durable import Store
from duetime.durable._conformance_kit import wake_delay
from duetime.durable.conformance import row

from ._on_server import OnServerConformance

pytestmark = pytest.mark.anyio


class TestRedisStore(OnServerConformance):
    store_fixture: ClassVar[str] = "redis_store"

    async def test_wait_changed_wakes_on_an_earlier_entry(self, store: Store) -> None:
        now = await store.time()
        await store.add([row("late", due=now + 1000)])
        await store.wait_changed(0.5)  # that add's own wake-up

        async def add() -> None:
            await store.add([row("soon", delay=10)])

        # the pub/sub message, not the 0.2 s poll
        assert await wake_delay(store.wait_changed, add, settle=0.1) <= 0.1
