"""SQLiteStore: rows written by anything but duetime never stop a claim nor break a listing.

Each malformed row is written with plain ``sqlite3`` next to good ones; a claim
dead-letters it alone (FAILED, "malformed row: ..."), the good rows are
claimed and run, listing shows it and ``delete`` removes it.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import anyio
import pytest

from duetime import Scheduler, Status
from duetime.durable import ABORTED, Done, Release, SQLiteStore, TaskRegistry
from duetime.durable.conformance import START, loop_epoch_clock, row
from duetime.testing import hold_autojump
from tests.durable.waiting import wait_for

pytestmark = pytest.mark.anyio

_COLUMNS = (
    "key, task, payload, status, due, visible_at, lease, max_deliveries, schedule, abort_requested"
)

# key -> the columns that differ from a good, due row ({} is a good row), and
# what its last_error must say once claimed.
BAD: dict[str, tuple[dict[str, Any], str]] = {
    "textdue": ({"due": "abc"}, "due 'abc' is not a time"),
    "infdue": ({"due": float("inf")}, "due Inf is not a time"),
    "hugedue": ({"due": 1e300}, "is not a time"),
    "blobdue": ({"due": b"\x00\x01"}, "is not a time"),
    "neglease": ({"lease": -5.0}, "lease -5.0 is not a positive number"),
    "textlease": ({"lease": "x"}, "lease 'x' is not a positive number"),
    "status9": ({"status": 9}, "status 9 is not PENDING"),
    "nomax": ({"max_deliveries": 0}, "max_deliveries"),
    "blobpayload": ({"payload": b"[1]"}, "payload is blob"),
    "bigpayload": ({"payload": '["' + "x" * 70_000 + '"]'}, "payload is over 64 KiB"),
    "badutf8task": ({"task": b"t\xff"}, "task is not UTF-8 text"),
    "emptytask": ({"task": ""}, "task is not a task name"),
    "blobschedule": ({"schedule": b"{}"}, "schedule is not text"),
    "textvisible": ({"visible_at": "soon"}, "visible_at is not a number"),
    "infvisible": ({"visible_at": float("inf")}, "visible_at is not a number"),
    "textabort": ({"abort_requested": "yes"}, "abort_requested 'yes' is not 0 or 1"),
    "twoabort": ({"abort_requested": 2}, "abort_requested 2 is not 0 or 1"),
    "realabort": ({"abort_requested": 0.5}, "abort_requested 0.5 is not 0 or 1"),
    "pendingabort": ({"abort_requested": 1}, "abort_requested on a row that is not RUNNING"),
    "blobabort": ({"abort_requested": b"\x01"}, "is not 0 or 1"),
}


TINY_EVERY = '{"v":1,"trigger":{"every":1e-300},"start":0,"misfire":"coalesce","overlap":"skip"}'


def insert(
    path: Path, key: Any, now: float, *, cast_text: tuple[str, ...] = (), **cols: Any
) -> None:
    """Write one row with plain sqlite3, as any other program could."""
    values = {
        "key": key,
        "task": "t",
        "payload": "[1]",
        "status": 0,
        "due": now - 10,
        "visible_at": now - 10,
        "lease": 30.0,
        "max_deliveries": 5,
        "schedule": None,
        "abort_requested": 0,
    }
    values.update(cols)
    marks = ", ".join(
        "CAST(? AS TEXT)" if name in cast_text else "?" for name in _COLUMNS.split(", ")
    )
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        conn.execute(
            f"INSERT INTO duetime_entries ({_COLUMNS}) VALUES ({marks})",
            [values[name] for name in _COLUMNS.split(", ")],
        )
    finally:
        conn.close()


def write_bad_rows(path: Path, now: float) -> None:
    for key, (cols, _) in BAD.items():
        # bytes for text columns are written as TEXT holding invalid UTF-8
        text = tuple(k for k, v in cols.items() if isinstance(v, bytes) and b"\xff" in v)
        insert(path, key, now, cast_text=text, **cols)
    insert(path, b"bad-\xff-key", now, cast_text=("key",))  # a key that is not UTF-8
    insert(path, b"blob-key", now)  # a key that is a blob


async def test_a_claim_dead_letters_each_bad_row_alone(tmp_path: Path, anyio_backend: Any) -> None:
    path = tmp_path / "jobs.db"
    async with SQLiteStore(path, clock=loop_epoch_clock()) as store:
        await store.add([row(f"good{i}", i) for i in range(5)])
        write_bad_rows(path, START)
        claimed = []
        for _ in range(10):
            claimed += await store.claim("w", 4)
        assert sorted(c.entry.key for c in claimed) == [f"good{i}" for i in range(5)]
        for c in claimed:
            assert (await store.finish_many([(c.entry.key, c.token, Done())]))[0]

        entries = {e.key: e for e in await store.entries()}  # listing never raises
        for key, (_, reason) in BAD.items():
            e = entries[key]
            assert e.status is Status.FAILED, key
            assert str(e.last_error).startswith("malformed row: "), key
            assert reason in str(e.last_error), (key, e.last_error)
            got = await store.get(key)
            assert got is not None
            assert got.status is Status.FAILED
        renamed = [k for k in entries if k.startswith(("bad-", "malformed-row-"))]
        assert len(renamed) == 2, sorted(entries)
        assert "bad-\\xff-key" in renamed
        assert {e.status for e in await store.entries(status=Status.FAILED)} == {Status.FAILED}
        assert await store.head() is None
        for key in [*BAD, *renamed]:
            assert await store.delete(key), key
        assert {e.key for e in await store.entries()} == {f"good{i}" for i in range(5)}


async def test_listing_shows_bad_rows_before_any_claim(tmp_path: Path, anyio_backend: Any) -> None:
    path = tmp_path / "jobs.db"
    async with SQLiteStore(path, clock=loop_epoch_clock()) as store:
        await store.add([row("good")])
        write_bad_rows(path, START)
        insert(path, "oddattempt", START + 3600, visible_at=None, status=3)
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("UPDATE duetime_entries SET attempt = 'x' WHERE key = 'oddattempt'")
        conn.close()
        entries = {e.key: e for e in await store.entries(limit=100)}
        assert len(entries) == len(BAD) + 4
        assert entries["good"].status is Status.PENDING
        assert entries["good"].last_error is None
        assert entries["status9"].status is Status.FAILED
        assert "status 9 is unknown" in str(entries["status9"].last_error)
        assert "due 'abc' is not a time" in str(entries["textdue"].last_error)
        assert entries["textdue"].status is Status.PENDING  # not claimed yet
        assert "attempt is not an integer" in str(entries["oddattempt"].last_error)
        assert (await store.get("textdue")) is not None
        assert await store.head() == await store.time()  # the sweep is due now
        # a read-only listing sees the same and never raises either
        async with SQLiteStore(path, read_only=True) as ro:
            assert {e.key for e in await ro.entries(limit=100)} == set(entries)


async def test_a_worker_runs_every_good_entry_next_to_bad_rows(
    tmp_path: Path, anyio_backend: Any
) -> None:
    """The public API: a Scheduler worker with concurrency 8 on 40 good entries
    and every kind of bad row; none of the good ones waits out a lease or is
    dead-lettered, and each bad one is dead-lettered with its reason."""
    path = tmp_path / "jobs.db"
    tasks = TaskRegistry()
    ran: list[int] = []

    @tasks.task("t", lease=30.0)
    async def t(i: int) -> None:
        ran.append(i)

    async with SQLiteStore(path, clock=loop_epoch_clock()) as setup:
        now = await setup.time()
        write_bad_rows(path, now)
        # well-formed for the store; the worker reads the schedule and dead-letters it
        insert(path, "badschedule", now, schedule=TINY_EVERY)
    store = SQLiteStore(path, clock=loop_epoch_clock())
    # The store works in a thread: virtual time must not jump past its calls.
    with hold_autojump():
        await run_worker(store, tasks)
    assert sorted(ran) == list(range(40))


async def run_worker(store: SQLiteStore, tasks: TaskRegistry) -> None:
    async with Scheduler(store=store, tasks=tasks, max_concurrency=8) as s:
        await s.defer_many("t", [(i,) for i in range(40)], keys=[f"good{i}" for i in range(40)])
        for i in range(40):
            e = await wait_for(s, f"good{i}", Status.COMPLETED, Status.FAILED, limit=20)
            assert (e.status, e.deliveries) == (Status.COMPLETED, 1), e
        dead = {e.key: e for e in await s.dead_letters()}
        for key, (_, reason) in BAD.items():
            assert reason in str(dead[key].last_error), (key, dead[key])
        bad = dead["badschedule"]
        assert str(bad.last_error).startswith("bad schedule: interval too small"), bad
        assert bad.deliveries == 1
        for key in [*BAD, "badschedule"]:
            assert await s.delete_deferred(key)


async def test_garbage_in_the_abort_request_of_a_running_row(
    tmp_path: Path, anyio_backend: Any
) -> None:
    """A RUNNING row whose abort_requested holds garbage: listing shows it as
    malformed, ``aborts`` and finishing never raise (garbage is no request), and
    once its lease lapses a claim dead-letters it alone."""
    path = tmp_path / "jobs.db"
    async with SQLiteStore(path, clock=loop_epoch_clock(), lease=5.0) as store:
        await store.add([row("good", 1)])
        [c] = await store.claim("w", 1)
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("UPDATE duetime_entries SET abort_requested = 'x' WHERE key = 'good'")
        insert(path, "odd", START, status=1, visible_at=START + 5, abort_requested=7)
        conn.close()
        listed = {e.key: e for e in await store.entries()}
        for key, value in (("good", "'x'"), ("odd", "7")):
            assert listed[key].status is Status.RUNNING
            assert f"abort_requested {value} is not 0 or 1" in str(listed[key].last_error)
            assert listed[key].abort_requested is False
        assert await store.aborts([("good", c.token), ("odd", 0)]) == [False, False]
        await anyio.sleep(10)  # both leases lapse
        assert await store.claim("w", 10) == []  # dead-lettered, not handed out
        for key in ("good", "odd"):
            e = await store.get(key)
            assert e is not None
            assert e.status is Status.FAILED
            assert str(e.last_error).startswith("malformed row: abort_requested"), e
        assert await store.delete("odd")
        # A request stored over the garbage is a request like any other.
        await store.add([row("again", 2)])
        [c] = await store.claim("w", 1)
        conn = sqlite3.connect(path, isolation_level=None)
        conn.execute("UPDATE duetime_entries SET abort_requested = 'x' WHERE key = 'again'")
        conn.close()
        assert await store.abort("again")
        assert await store.aborts([("again", c.token)]) == [True]
        assert await store.finish_many([("again", c.token, Release())]) == [True]
        e = await store.get("again")
        assert e is not None
        assert (e.status, e.last_error) == (Status.CANCELLED, ABORTED)
