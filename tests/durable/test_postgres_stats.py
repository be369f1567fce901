"""PostgresStore's inspection on a store an older duetime created (no activity ring): a
writer adds it when it opens; a reader reports an empty activity."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from duetime import Status
from duetime.durable import Done, PostgresStore
from duetime.durable.conformance import row
from duetime.testing import hold_autojump

from .postgres_server import admin

pytestmark = pytest.mark.anyio


async def test_a_store_without_the_ring_gets_it_when_opened_for_writing(
    anyio_backend: Any,
    postgres_url: str,
    postgres_schema: str,
    postgres_store: Callable[..., PostgresStore],
) -> None:
    with hold_autojump():
        async with postgres_store() as store:
            await store.add([row("a", task="x"), row("b", task="x")])
        s = postgres_schema
        admin(postgres_url, f"DROP TABLE {s}.minutes")
        # Read-only: nothing is created, and the activity is empty (not an error).
        async with postgres_store(read_only=True) as reader:
            assert sum(m.started for m in await reader.activity(5)) == 0
            assert (await reader.counts()).by_task == {"x": {Status.PENDING: 2}}
        async with postgres_store() as store:
            [c] = await store.claim("w", 1)
            assert await store.finish_many([(c.entry.key, c.token, Done())]) == [True]
            [m] = await store.activity(1)
            assert (m.started, m.completed) == (1, 1)
        async with postgres_store(read_only=True) as reader:
            [m] = await reader.activity(1)
            assert (m.started, m.completed) == (1, 1)
