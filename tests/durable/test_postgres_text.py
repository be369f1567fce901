"""PostgresStore and text PostgreSQL cannot hold: a NUL in a failure's message,
type or traceback is stored escaped, and the finish applies."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from duetime import Status
from duetime.durable import Dead, PostgresStore, RetryAt
from duetime.durable.conformance import row
from duetime.testing import hold_autojump

pytestmark = pytest.mark.anyio


async def test_a_nul_in_a_failure_is_stored_escaped(
    anyio_backend: Any, postgres_store: Callable[..., PostgresStore]
) -> None:
    with hold_autojump():
        async with postgres_store() as store:
            await store.add([row("a"), row("b")])
            c = {x.entry.key: x for x in await store.claim("w", 2)}
            now = await store.time()
            assert await store.finish_many(
                [
                    ("a", c["a"].token, Dead("bad \x00 byte", "Err\x00", "tb\x00")),
                    ("b", c["b"].token, RetryAt(now + 60, "again \x00")),
                ]
            ) == [True, True]
            a = await store.get("a")
            assert a is not None
            assert a.status is Status.FAILED
            assert (a.last_error, a.error_type, a.traceback) == (
                "bad \\x00 byte",
                "Err\\x00",
                "tb\\x00",
            )
            b = await store.get("b")
            assert b is not None
            assert b.last_error == "again \\x00"
