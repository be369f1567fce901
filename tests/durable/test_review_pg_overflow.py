"""A row another program wrote with a counter at its column's top value: the
claim dead-letters it alone.  Handed out, its finish would add one to that
counter, PostgreSQL would refuse the whole finish statement (out of range),
the worker would retry it with the other outcomes of its batch until the
row's lease lapsed, and the row would run again, forever.  Real server,
asyncio and trio."""

from __future__ import annotations

from collections.abc import Callable

import anyio.to_thread
import pytest

from duetime import Status
from duetime.durable import PostgresStore, RetryAt
from duetime.durable.conformance import row

from .postgres_server import admin

pytestmark = pytest.mark.anyio

Factory = Callable[..., PostgresStore]

_TOP = {
    "occurrence at the bigint top": "occurrence = 9223372036854775807",
    "attempt at the integer top": "attempt = 2147483647",
}


@pytest.mark.parametrize("fault", sorted(_TOP))
async def test_a_counter_at_its_top_is_dead_lettered_alone(
    postgres_store: Factory, postgres_url: str, fault: str, real_time: None
) -> None:
    async with postgres_store() as store:
        await store.add([row("good1", 1), row("bad", 2), row("good2", 3)])
        sql = f"UPDATE {store.schema}.entries SET {_TOP[fault]} WHERE key = 'bad'"
        await anyio.to_thread.run_sync(admin, postgres_url, sql)
        claims = []
        for _ in range(3):
            claims += await store.claim("w", 10)
        assert sorted(c.entry.key for c in claims) == ["good1", "good2"]
        bad = await store.get("bad")
        assert bad is not None
        assert bad.status is Status.FAILED
        assert str(bad.last_error).startswith("malformed row: "), bad.last_error
        # the good rows' finishes still land
        now = await store.time()
        outcomes = [(c.entry.key, c.token, RetryAt(now + 60, "again")) for c in claims]
        assert await store.finish_many(outcomes) == [True, True]
