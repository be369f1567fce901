"""The Scheduler looks up and deletes any key a store lists (a malformed row
another program wrote), while ``defer`` still takes printable keys only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from duetime import Scheduler, Status
from duetime.durable import SQLiteStore, TaskRegistry
from duetime.durable.conformance import loop_epoch_clock
from duetime.testing import hold_autojump

from .test_sqlite_badrows import insert

pytestmark = pytest.mark.anyio

ODD_KEYS = ["line\nbreak", "k" * 600, "tab\tkey"]


async def test_a_malformed_row_with_an_odd_key_is_deleted_through_the_scheduler(
    tmp_path: Path, anyio_backend: Any
) -> None:
    path = tmp_path / "jobs.db"
    tasks = TaskRegistry()
    tasks.task("t")(lambda i: None)
    with hold_autojump():  # the store works in a thread
        async with Scheduler(
            store=SQLiteStore(path, clock=loop_epoch_clock()), tasks=tasks, worker=False
        ) as s:
            await s.defer("t", 1, key="good")
            for key in ODD_KEYS:
                insert(path, key, 0.0, status=9)  # a status no duetime writes
            listed = {e.key: e.status for e in await s.deferred_entries()}
            assert listed == {"good": Status.PENDING} | dict.fromkeys(ODD_KEYS, Status.FAILED)
            for key in ODD_KEYS:
                e = await s.deferred(key)
                assert e is not None
                assert e.status is Status.FAILED
                assert str(e.last_error).startswith("malformed row: ")
                assert not await s.cancel_deferred(key + "-absent")
                assert await s.delete_deferred(key)
                assert await s.deferred(key) is None
                assert not await s.retry_deferred(key)
            assert [e.key for e in await s.deferred_entries()] == ["good"]
            for bad in (5, None, b"good"):
                for lookup in (s.deferred, s.delete_deferred, s.cancel_deferred, s.retry_deferred):
                    with pytest.raises(TypeError, match="key must be a str"):
                        await lookup(bad)  # type: ignore[arg-type]
            for key in ODD_KEYS:  # new keys stay strict
                with pytest.raises(ValueError, match="printable"):
                    await s.defer("t", 1, key=key)
