"""SQLiteStore under another process's write lock: leases start when the lock is granted."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import pytest

from duetime.durable import SQLiteStore
from duetime.durable.conformance import row
from duetime.testing import hold_autojump

pytestmark = pytest.mark.anyio

LEASE = 0.5
HOLD = 1.5  # longer than the lease: a lease timed from before the wait is over on return


def hold_write_lock(path: Path, locked: threading.Event, release: threading.Event) -> None:
    """What another process does: BEGIN IMMEDIATE, and keep the lock until told."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        locked.set()
        release.wait(30)
        conn.execute("COMMIT")
    finally:
        conn.close()


async def test_a_claim_that_waited_for_the_lock_hands_out_full_leases(
    tmp_path: Path, anyio_backend: Any
) -> None:
    path = tmp_path / "jobs.db"
    with hold_autojump():  # real threads and a real lock: virtual time flows at the real rate
        async with SQLiteStore(path, busy_timeout=60) as store:
            await store.add([row(f"k{i}", lease=LEASE) for i in range(4)])
            locked, release = threading.Event(), threading.Event()
            holder = threading.Thread(target=hold_write_lock, args=(path, locked, release))
            holder.start()
            try:
                await anyio.to_thread.run_sync(locked.wait, 30)

                async def let_go() -> None:
                    await anyio.sleep(HOLD)  # the claim below waits for the lock all along
                    release.set()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(let_go)
                    claims = await store.claim("w", 10)
                    returned = time.time()
            finally:
                release.set()
                await anyio.to_thread.run_sync(holder.join)
            assert len(claims) == 4
            for c in claims:
                assert c.lease_until > returned, (c.lease_until, returned)
            assert await store.extend([(c.entry.key, c.token) for c in claims]) == [True] * 4


async def test_an_add_waits_for_a_held_lock_off_the_event_loop(
    tmp_path: Path, anyio_backend: Any
) -> None:
    """An add tries the write on the loop only if the lock is free at once; when
    another process holds it, the add waits in the store's thread and the loop
    runs on meanwhile."""
    path = tmp_path / "jobs.db"
    with hold_autojump():
        async with SQLiteStore(path, busy_timeout=60) as store:
            await store.add([row("before")])
            locked, release = threading.Event(), threading.Event()
            holder = threading.Thread(target=hold_write_lock, args=(path, locked, release))
            holder.start()
            ticks_while_held = 0
            try:
                await anyio.to_thread.run_sync(locked.wait, 30)
                added = anyio.Event()

                async def add() -> None:
                    await store.add([row("during")])
                    added.set()

                async with anyio.create_task_group() as tg:
                    tg.start_soon(add)
                    for _ in range(5):  # the loop is free while the add waits
                        await anyio.sleep(0.01)
                        ticks_while_held += not added.is_set()
                    release.set()
                    with anyio.fail_after(30):
                        await added.wait()
            finally:
                release.set()
                await anyio.to_thread.run_sync(holder.join)
            assert ticks_while_held == 5
            assert {e.key for e in await store.entries()} == {"before", "during"}


def wal_size(path: Path) -> int:
    wal = Path(f"{path}-wal")
    return wal.stat().st_size if wal.exists() else 0


async def test_many_single_adds_keep_the_wal_checkpointed(
    tmp_path: Path, anyio_backend: Any
) -> None:
    path = tmp_path / "jobs.db"
    with hold_autojump():
        async with SQLiteStore(path) as store:
            for i in range(3000):
                await store.add([row(f"k{i}")])
            # SQLite's own bound is a checkpoint every 1000 pages (4 MB): stay near it.
            assert wal_size(path) < 8 * 1024 * 1024, wal_size(path)
            assert len(await store.entries(limit=5000)) == 3000
