"""One logging scheme: the loggers' names, and the structured fields records carry."""

from __future__ import annotations

import logging

import anyio
import pytest

from duetime import Scheduler, Status
from duetime.durable import TaskRegistry
from duetime.testing import MemoryStore
from tests.durable.waiting import wait_for

pytestmark = pytest.mark.anyio


def boom() -> None:
    raise ZeroDivisionError("no")


async def test_an_unobserved_failure_names_its_callback_in_extra(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.ERROR, logger="duetime")
    async with Scheduler() as s:
        s.call_soon(boom, name="exploder")
        await anyio.sleep(1)
    (record,) = [r for r in caplog.records if r.name == "duetime"]
    assert record.levelno == logging.ERROR
    assert record.callback == "exploder"  # type: ignore[attr-defined]


async def test_durable_records_follow_the_scheme(caplog: pytest.LogCaptureFixture) -> None:
    # The same hierarchy and fields for the durable wing: INFO start and stop,
    # ERROR a dead letter with key, task and attempt in extra.
    caplog.set_level(logging.INFO, logger="duetime")
    tasks = TaskRegistry()

    @tasks.task("t.fail")
    async def fail() -> None:
        raise ValueError("bad")

    async with Scheduler(store=MemoryStore(), tasks=tasks) as s:
        await s.defer(fail, key="k")
        await wait_for(s, "k", Status.FAILED)
    names = {(r.name, r.levelname) for r in caplog.records}
    assert ("duetime.durable", "INFO") in names
    (dead,) = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert dead.name == "duetime.durable"
    fields = (dead.key, dead.task, dead.attempt)  # type: ignore[attr-defined]
    assert fields == ("k", "t.fail", 1)
    assert all(r.name.split(".")[0] == "duetime" for r in caplog.records)
