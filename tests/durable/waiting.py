"""Waiting, on virtual time, for a durable entry to reach a status."""

from __future__ import annotations

from typing import Protocol

import anyio

from duetime import Status
from duetime.durable import Entry


class HasDeferred(Protocol):
    async def deferred(self, key: str) -> Entry | None: ...


async def wait_for(source: HasDeferred, key: str, *statuses: Status, limit: float = 600) -> Entry:
    """Step virtual time until the entry ``key`` reaches one of ``statuses``."""
    with anyio.fail_after(limit):
        while True:
            e = await source.deferred(key)
            if e is not None and e.status in statuses:
                return e
            await anyio.sleep(0.05)
