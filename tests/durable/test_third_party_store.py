"""A store written outside the package passes the conformance suite, and serves a Scheduler.

``third_party_store.DictStore`` uses only duetime's public names: this checks
that the protocol, ``duetime.durable.conformance`` and the guide are enough to
write a store (on asyncio and trio, on virtual time).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
import pytest

from duetime import Scheduler, Status
from duetime.durable import Store, TaskRegistry
from duetime.durable.conformance import StoreConformance, loop_epoch_clock

from .third_party_store import DictStore

pytestmark = pytest.mark.anyio


class TestDictStore(StoreConformance):
    def make_store(self, tmp_path: Path, **options: Any) -> Store:
        return DictStore(clock=loop_epoch_clock(), **options)


def test_dict_store_implements_the_protocol() -> None:
    assert isinstance(DictStore(), Store)


async def test_a_scheduler_runs_tasks_on_it(anyio_backend: Any) -> None:
    tasks = TaskRegistry()
    ran: list[int] = []

    @tasks.task("add")
    async def add(n: int) -> None:
        ran.append(n)

    store = DictStore(clock=loop_epoch_clock())
    async with Scheduler(store=store, tasks=tasks, worker=True) as scheduler:
        await scheduler.defer(add, 1, key="now")
        await scheduler.defer(add, 2, key="later", delay=30)
        with anyio.fail_after(60):
            while (e := await scheduler.deferred("later")) is None or (
                e.status is not Status.COMPLETED
            ):
                await anyio.sleep(1)
    assert ran == [1, 2]
