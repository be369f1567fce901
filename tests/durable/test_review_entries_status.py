"""Listing with a status that is not a Status fails at the call site on every store."""

from __future__ import annotations

from typing import Any

import pytest

from duetime import Scheduler, Status
from duetime.durable import MemoryStore, TaskRegistry

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize("bad", ["bogus", 3, "failed"])
async def test_a_bad_status_is_a_value_error_not_an_empty_list(bad: Any) -> None:
    tasks = TaskRegistry()

    @tasks.task("t")
    async def t() -> None: ...

    async with Scheduler(store=MemoryStore(), tasks=tasks, worker=False) as s:
        await s.defer(t, key="k")
        with pytest.raises(ValueError, match="not a valid Status"):
            await s.deferred_entries(status=bad)
        [e] = await s.deferred_entries(status=Status("PENDING"))
        assert e.status is Status.PENDING
