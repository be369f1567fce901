"""A NUL character in a key, task name or worker name given to PostgresStore:
PostgreSQL text cannot hold one, and libpq ends a text parameter at the first
NUL, so such a key would silently address another entry ("a\\0b" is "a").  A
lookup finds nothing; every other call refuses it with a ValueError; the
stored rows are left alone.  Real server, asyncio and trio."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from duetime import Status
from duetime.durable import Done, PostgresStore
from duetime.durable.conformance import row

pytestmark = pytest.mark.anyio

Factory = Callable[..., PostgresStore]


async def test_a_nul_in_a_key_or_name_is_refused_and_reaches_no_other_entry(
    postgres_store: Factory, real_time: None
) -> None:
    async with postgres_store() as store:
        await store.add([row("a", 1)])
        # a lookup finds nothing (no stored key holds a NUL), and changes nothing
        assert await store.get("a\0b") is None
        for lookup in (store.cancel, store.abort, store.retry, store.delete):
            assert await lookup("a\0b") is False
        calls: dict[str, Callable[[], Awaitable[Any]]] = {
            "aborts": lambda: store.aborts([("a\0b", 1)]),
            "extend": lambda: store.extend([("a\0b", 1)]),
            "finish_many": lambda: store.finish_many([("a\0b", 1, Done())]),
            "claim owner": lambda: store.claim("w\0x", 1),
            "add key": lambda: store.add([row("a\0new", 2)]),
            "add keys": lambda: store.add([row("n1", 2), row("a\0new", 3)]),
            "add task": lambda: store.add([row("n2", 2, task="t\0x")]),
        }
        for name, call in calls.items():
            with pytest.raises(ValueError, match="NUL"):
                await call()
            entries = await store.entries()
            assert [(e.key, e.task, e.status) for e in entries] == [("a", "t", Status.PENDING)], (
                name
            )
