"""RedisStore and a stored payload over the codec's limit: set aside, never run.

A row written by another program may hold a payload far larger than
``encode_args`` ever writes; a worker must not decode and run it (SQLiteStore
dead-letters the same row as malformed).
"""

from __future__ import annotations

import json
from collections.abc import Callable

import pytest

from duetime import Status
from duetime.durable import NewRow, RedisStore

Factory = Callable[..., RedisStore]


pytestmark = [pytest.mark.anyio, pytest.mark.usefixtures("real_time")]


def _row(key: str, payload: str) -> bytes:
    row = {"k": key, "t": "t", "p": payload, "d": "1000.5", "s": "PENDING", "a": 1, "o": 0}
    row |= {"dl": 0, "l": "30", "md": 5}
    return json.dumps(row).encode()


async def test_a_payload_over_the_limit_is_set_aside_not_claimed(redis_store: Factory) -> None:
    big = '["' + "x" * 70_000 + '"]'
    at_limit = '["' + "é" * ((64 * 1024 - 4) // 2) + '"]'  # 65536 bytes as UTF-8
    async with redis_store() as store:
        client = store._client
        assert client is not None
        prefix = "{" + store.prefix + "}"
        now = await store.time()
        for key, payload in (("big", big), ("at-limit", at_limit)):
            await client.hset(f"{prefix}:rows", {key: _row(key, payload)})
            await client.zadd(f"{prefix}:q", {key: now - 10})
            await client.zadd(f"{prefix}:all", {key: now - 10})
        await store.add([NewRow("good", "t", "[1]", delay=0.0)])

        claimed = sorted(c.entry.key for c in await store.claim("w", 10))
        assert claimed == ["at-limit", "good"]
        dead = await store.get("big")
        assert dead is not None
        assert dead.status is Status.FAILED
        assert dead.last_error == "malformed row set aside: payload is over 64 KiB"
        assert dead.deliveries == 0
        assert not await store.retry("big")
        assert await store.delete("big")
