"""What a worker logs: each run at DEBUG, a retried attempt at WARNING,
a dead letter at ERROR, a store outage once when it starts and once when it ends;
structured fields on each record's ``extra``; only ``duetime`` loggers.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
import pytest

from duetime import Retry, Status
from duetime.durable import MemoryStore, StoreSession, TaskRegistry

# The documented logger names (duetime.durable.store, duetime.durable.worker).
from duetime.durable._log import STORE, WORKER
from tests.durable.test_worker_runtime import FlakyStore
from tests.durable.waiting import wait_for

pytestmark = pytest.mark.anyio


def fields(record: logging.LogRecord, *names: str) -> tuple[Any, ...]:
    return tuple(record.__dict__.get(name) for name in names)


async def test_each_run_a_retry_and_a_dead_letter_are_logged_with_their_fields(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="duetime")
    tasks = TaskRegistry()

    @tasks.task("jobs.ok")
    async def ok() -> None:
        await anyio.sleep(2)

    @tasks.task("jobs.bad", retry=Retry(attempts=2, backoff=1))
    async def bad() -> None:
        raise ValueError("no stock")

    async with StoreSession(MemoryStore(), tasks, worker=True) as r:
        await r.client.defer(ok, key="a", delay=5)
        await r.client.defer(bad, key="b", delay=5)
        await wait_for(r.client, "a", Status.COMPLETED)
        await wait_for(r.client, "b", Status.FAILED)

    assert {rec.name for rec in caplog.records} <= {WORKER, STORE}
    assert [rec.levelname for rec in caplog.records].count("INFO") == 2  # ready, stopped
    runs = [rec for rec in caplog.records if rec.levelno == logging.DEBUG and " ran " in rec.msg]
    by_key = {(fields(rec, "key", "attempt")): rec for rec in runs}
    assert sorted(by_key) == [("a", 1), ("b", 1), ("b", 2)]
    a = by_key["a", 1]
    assert fields(a, "key", "task", "attempt") == ("a", "jobs.ok", 1)
    assert a.__dict__["duration"] == pytest.approx(2.0, abs=1e-6)
    assert a.__dict__["lateness"] == pytest.approx(0.0, abs=0.05)
    assert "'jobs.ok' (entry 'a', attempt 1) ran 2.000 s" in a.getMessage()

    retried = [rec for rec in caplog.records if rec.levelno == logging.WARNING]
    assert len(retried) == 1
    assert fields(retried[0], "key", "task", "attempt") == ("b", "jobs.bad", 1)
    assert "attempt 1 failed: ValueError: no stock; retrying in " in retried[0].getMessage()

    dead = [rec for rec in caplog.records if rec.levelno == logging.ERROR]
    assert len(dead) == 1
    assert fields(dead[0], "key", "task", "attempt") == ("b", "jobs.bad", 2)
    assert "failed for good: ValueError: no stock" in dead[0].getMessage()
    assert dead[0].exc_info is not None  # the dead letter's traceback


async def test_a_worker_logs_its_start_and_stop_and_no_run_above_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="duetime")
    tasks = TaskRegistry()

    @tasks.task("t")
    async def t() -> None: ...

    async with StoreSession(MemoryStore(), tasks, worker=True) as r:
        await r.client.defer_many(t, [()] * 20, keys=[f"k{i}" for i in range(20)])
        await wait_for(r.client, "k19", Status.COMPLETED)
    assert r.worker is not None
    lines = [(rec.name, rec.levelname, rec.getMessage()) for rec in caplog.records]
    assert [level for _, level, _ in lines] == ["INFO", "INFO"]
    assert lines[0][2] == (
        f"duetime worker {r.worker.owner} ready: 1 tasks, store MemoryStore, concurrency 16"
    )
    assert lines[1][2] == f"duetime worker {r.worker.owner} stopped"


async def test_the_ready_line_never_shows_a_password(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="duetime")

    class Remote(MemoryStore):
        url = "redis://:s3cretPW@db.example:6379/0?password=s3cretPW"

    async with StoreSession(Remote(), TaskRegistry(), worker=True):
        pass
    assert "store redis://" in caplog.text
    assert "s3cretPW" not in caplog.text


async def test_a_store_outage_is_two_lines_without_tracebacks(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="duetime")
    tasks = TaskRegistry()

    @tasks.task("t", lease=10)
    async def t() -> None:
        await anyio.sleep(1)

    store = FlakyStore()
    async with StoreSession(store, tasks, worker=True, concurrency=4) as r:
        await r.client.defer_many(t, [()] * 4, keys=[f"k{i}" for i in range(4)])
        await anyio.sleep(0.5)  # running: renewals and finishes fail too
        store.outage(7)
        for i in range(4):
            await wait_for(r.client, f"k{i}", Status.COMPLETED)
    assert store.failures >= 5
    assert r.worker is not None
    lines = [(rec.name, rec.levelname, rec.getMessage()) for rec in caplog.records]
    assert lines[0][2].startswith(f"duetime worker {r.worker.owner} ready: ")
    assert lines[-1][2] == f"duetime worker {r.worker.owner} stopped"
    lines = lines[1:-1]
    assert len(lines) == 2, lines
    assert lines[0][:2] == (STORE, "WARNING")
    assert "finish failed (ConnectionError: Unable to establish a connection" in lines[0][2]
    assert lines[1][:2] == (STORE, "WARNING")
    # From the first failed call (the runs' finishes, at 1 s) to the first success.
    assert "answers again after 6.5 s" in lines[1][2]
    assert all(rec.exc_info is None for rec in caplog.records)


async def test_an_error_text_cannot_forge_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    tasks = TaskRegistry()

    @tasks.task("t")
    async def t() -> None:
        raise RuntimeError("boom\n2026-01-01 00:00:00 INFO forged\x1b[31m")

    async with StoreSession(MemoryStore(), tasks, worker=True) as r:
        await r.client.defer(t, key="k")
        await wait_for(r.client, "k", Status.FAILED)
    (dead,) = [rec for rec in caplog.records if rec.levelno == logging.ERROR]
    message = dead.getMessage()
    assert "\n" not in message
    assert "\x1b" not in message
    assert "boom\\n2026-01-01" in message
