"""SQLiteStore passes the malformed-row conformance checks (rows written with plain sqlite3)."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio.to_thread
import pytest

from duetime.durable import SQLiteStore, Store
from duetime.durable.conformance import MalformedRowConformance, loop_epoch_clock

pytestmark = pytest.mark.anyio

_FAULTS = {
    "due_not_a_number": "due = 'soon'",
    "due_infinite": "due = 9e999",
    "lease_negative": "lease = -5.0",
    "status_unknown": "status = 9",
}


def _overwrite(path: str, key: str, assignment: str) -> None:
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(f"UPDATE duetime_entries SET {assignment} WHERE key = ?", (key,))
    finally:
        conn.close()


class TestSQLiteMalformedRows(MalformedRowConformance):
    def make_store(self, tmp_path: Path, **options: Any) -> Store:
        return SQLiteStore(tmp_path / "jobs.db", clock=loop_epoch_clock(), **options)

    async def corrupt(self, store: Store, key: str, fault: str) -> None:
        assert isinstance(store, SQLiteStore)
        await anyio.to_thread.run_sync(_overwrite, store.path, key, _FAULTS[fault])
