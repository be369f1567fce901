"""What mypy sees of a Deferred: T from the registered function's return type
(``mypy`` checks this file with the rest of ``tests``; the test runs it too)."""

from __future__ import annotations

from typing import Any, assert_type

import anyio
import anyio.lowlevel
import pytest

from duetime import Deferred, Scheduler
from duetime.durable import TaskRegistry
from duetime.testing import MemoryStore

pytestmark = pytest.mark.anyio

tasks = TaskRegistry()


@tasks.task("typing.render")
async def render(report: int) -> str:
    await anyio.lowlevel.checkpoint()
    return f"s3://reports/{report}"


@tasks.task("typing.count")
def count(words: str) -> int:
    return len(words.split())


async def test_defer_is_typed_by_the_task() -> None:
    async with Scheduler(store=MemoryStore(), tasks=tasks) as s:
        url = await s.defer(render, 7)
        assert_type(url, Deferred[str])
        assert_type(await url, str)
        n = await s.defer(count, "a b c")
        assert_type(n, Deferred[int])
        assert_type(await n.result(timeout=None), int)  # a thread: no virtual limit
        by_name = await s.defer("typing.render", 8)
        assert_type(by_name, Deferred[Any])
        assert_type(s.deferred_handle("k"), Deferred[Any])
        many = await s.defer_many(render, [(1,), (2,)])
        assert_type(many, list[Deferred[Any]])
        assert await url == "s3://reports/7"
        assert await n == 3
