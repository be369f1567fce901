"""SQLiteStore.add writes a few rows on the event-loop thread, a large batch in its thread.

Writing thousands of rows inline would stall every other task of the loop (a
worker's lease renewals included) for as long as the transaction takes.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from duetime.durable import NewRow, SQLiteStore
from duetime.durable._sqlite_sql import insert_new

pytestmark = pytest.mark.anyio


async def test_a_large_add_is_written_off_the_event_loop_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    threads: list[int] = []

    def spy(conn: Any, params: list[tuple[Any, ...]]) -> bool:
        threads.append(threading.get_ident())
        return insert_new(conn, params)

    monkeypatch.setattr("duetime.durable._sqlite_sql.insert_new", spy)
    loop_thread = threading.get_ident()
    async with SQLiteStore(tmp_path / "jobs.db") as store:
        await store.add([NewRow("one", "t", "[]", delay=0.0)])
        assert threads == [loop_thread]  # one row: inline, no thread hop

        big = [NewRow(f"k{i}", "t", "[]", delay=0.0) for i in range(2000)]
        entries = await store.add(big)
        assert len(entries) == 2000
        assert threads[1] != loop_thread
        assert len(await store.entries(limit=10_000)) == 2001
