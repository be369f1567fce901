"""A log line quotes at most a bounded part of a key or task name read from a store.

Keys that ``defer`` accepts are short, but a row another program wrote may hold
a key (or task name) of any length: each worker log line about it stays short,
and the record's ``extra`` keeps the whole key.
"""

from __future__ import annotations

import logging

import anyio
import pytest

from duetime import Retry
from duetime.durable import MemoryStore, NewRow, StoreSession, TaskRegistry

pytestmark = pytest.mark.anyio

LONG_KEY = "K" * 10_000
LONG_TASK = "T" * 10_000


async def test_worker_log_lines_cut_long_keys_and_task_names(
    caplog: pytest.LogCaptureFixture,
) -> None:
    tasks = TaskRegistry()

    @tasks.task("flaky", retry=Retry(attempts=3, backoff=10, jitter=0))
    async def flaky() -> None:
        raise ValueError("boom")

    store = MemoryStore()
    caplog.set_level(logging.DEBUG, logger="duetime.durable")
    async with StoreSession(store, tasks, worker=True):
        await store.add(
            [
                NewRow(LONG_KEY, "flaky", "[]", delay=0.0),  # a retried attempt: WARNING
                NewRow("x" + LONG_KEY, LONG_TASK, "[]", delay=0.0),  # unknown: ERROR
            ]
        )
        await anyio.sleep(1)
    about = [r for r in caplog.records if getattr(r, "key", "").endswith(LONG_KEY)]
    assert {r.levelno for r in about} >= {logging.WARNING, logging.ERROR}
    for record in about:
        assert len(record.getMessage()) < 1500, record.getMessage()[:200]
        assert "KKKK" in record.getMessage()
        assert record.key in (LONG_KEY, "x" + LONG_KEY)  # type: ignore[attr-defined]
