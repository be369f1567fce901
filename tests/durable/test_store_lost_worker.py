"""A worker whose store is lost (its SQLite file deleted under it) stops: one
ERROR, no retries, and the error surfaces (StoreLost out of ``async with``, exit
status 4 from ``python -m duetime worker``).

Real files, a real process, real time: every wait has a generous deadline.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest

from duetime import Scheduler, Status
from duetime.durable import SQLiteStore, StoreLost, TaskRegistry

# The worker command's exit status for a lost store (documented in its --help).
from duetime.durable._cli_run import STORE_LOST
from duetime.testing import hold_autojump

from .test_sqlite_swap import delete_store
from .test_worker_signals import Worker, defer_and_wait, run


@pytest.mark.anyio
async def test_a_scheduler_worker_raises_store_lost_out_of_its_block(
    tmp_path: Path, anyio_backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "jobs.db"
    tasks = TaskRegistry()

    @tasks.task("t")
    async def t() -> None:
        pass

    reached = False
    # a real file and the store's thread: real time
    with hold_autojump(), anyio.fail_after(60), pytest.raises(StoreLost, match="deleted"):
        async with Scheduler(store=SQLiteStore(path, poll=0.05), tasks=tasks) as s:
            await s.defer("t", key="first")
            while (e := await s.deferred("first")) is None or e.status != Status.COMPLETED:
                await anyio.sleep(0.05)
            delete_store(path)
            await anyio.sleep_forever()  # the worker's StoreLost cancels this
            reached = True
    assert not reached
    problems = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.levelno, "store lost" in r.getMessage()) for r in problems] == [
        (logging.ERROR, True)
    ], [r.getMessage() for r in problems]


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="as test_worker_signals")
def test_the_worker_command_exits_4_with_one_error_when_its_file_is_deleted(
    tmp_path: Path,
) -> None:
    db = tmp_path / "jobs.db"
    worker = Worker(tmp_path, f"sqlite:///{db}")
    try:
        worker.wait_for("ready")
        assert run(defer_and_wait, SQLiteStore(db), "a", tmp_path / "note") is Status.COMPLETED
        delete_store(db)
        code = worker.exit_status()
    finally:
        worker.kill()
    assert code == STORE_LOST == 4, worker.text
    assert worker.text.count(" ERROR ") == 1, worker.text
    assert "store lost" in worker.text
    assert "Traceback" not in worker.text, worker.text
    assert " WARNING " not in worker.text, worker.text
