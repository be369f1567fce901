"""SQLiteStore: the file deleted or replaced under an open store is noticed, said, and stops it."""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

import anyio
import pytest

from duetime import Scheduler, Status
from duetime.durable import SQLiteStore, StoreLost, TaskRegistry
from duetime.durable.conformance import row
from duetime.testing import hold_autojump

pytestmark = pytest.mark.anyio


def delete_store(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def replace_store(path: Path) -> None:
    backup = path.with_name("backup.db")
    shutil.copyfile(path, backup)
    os.replace(backup, path)


@pytest.mark.parametrize(("swap", "what"), [(delete_store, "deleted"), (replace_store, "replaced")])
async def test_every_call_raises_store_lost_and_one_error_is_logged(
    tmp_path: Path, anyio_backend: Any, caplog: pytest.LogCaptureFixture, swap: Any, what: str
) -> None:
    path = tmp_path / "jobs.db"
    async with SQLiteStore(path) as store:
        await store.add([row("a")])
        swap(path)
        with pytest.raises(StoreLost, match=what):
            await store.add([row("b")])
        with pytest.raises(StoreLost, match="restart"):
            await store.entries()
        with pytest.raises(StoreLost):
            await store.claim("w", 5)
        with pytest.raises(StoreLost):
            await store.wait_changed(0.1)
    lost = [r for r in caplog.records if "store lost" in r.getMessage()]
    assert [r.levelno for r in lost] == [logging.ERROR]
    assert str(path) in lost[0].getMessage()
    # A new store object opens what is at the path now.
    async with SQLiteStore(path) as again:
        keys = {e.key for e in await again.entries()}
        assert ("a" in keys) is (what == "replaced")


async def test_an_idle_worker_notices_within_a_poll_and_stops(
    tmp_path: Path, anyio_backend: Any, caplog: pytest.LogCaptureFixture
) -> None:
    """Through the public API: an idle Scheduler worker polls the file, says it
    is gone, and stops: StoreLost leaves its block (test_store_lost_worker); a
    producer's defer into it raises instead of vanishing."""
    path = tmp_path / "jobs.db"
    tasks = TaskRegistry()

    @tasks.task("t")
    async def t() -> None:
        pass

    with hold_autojump():  # a real file and the store's thread: real time
        async with Scheduler(store=SQLiteStore(path), tasks=tasks, worker=False) as producer:
            with pytest.raises(StoreLost, match="deleted"), anyio.fail_after(30):
                async with Scheduler(store=SQLiteStore(path, poll=0.05), tasks=tasks) as s:
                    await s.defer("t", key="first")
                    while (e := await s.deferred("first")) is None or e.status != Status.COMPLETED:
                        await anyio.sleep(0.05)
                    delete_store(path)
                    await anyio.sleep_forever()
            assert any("store lost" in r.getMessage() for r in caplog.records)
            with pytest.raises(StoreLost, match="deleted"):
                await producer.defer("t", key="second")
