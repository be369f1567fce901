"""A stored series whose schedule no float can step (a start so large that
adding the period changes nothing): the series page lists what it can and
answers, instead of spinning for ever in the event loop."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import pytest

from duetime.durable import NewRow, Store

pytestmark = pytest.mark.anyio

STUCK = '{"v":1,"trigger":{"every":60.0},"start":%r,"misfire":"coalesce","overlap":"skip"}'


@pytest.mark.timeout(30)  # before the fix the page never answered
async def test_a_schedule_that_cannot_step(
    store: Store, client_for: Callable[..., httpx.AsyncClient]
) -> None:
    now = await store.time()
    await store.add(
        [NewRow(key="stuck", task="report", payload="[]", due=now, schedule=STUCK % 1e308)]
    )
    async with client_for("viewer") as client:
        r = await client.get("/series")
        assert r.status_code == 200
        assert "stuck" in r.text
        r = await client.get("/entry?key=stuck")
        assert r.status_code == 200
