"""Durable jobs: the code of docs/guide-durable.md.

Run it with ``python docs/examples/durable.py``; tests/test_docs_examples.py runs
``main()`` on virtual time on asyncio and on trio.  The examples keep their
entries in ``duetime.testing.MemoryStore`` (a store on the loop's virtual clock)
where time must pass, and in a real ``SQLiteStore`` file where it need not.
"""

from __future__ import annotations

import tempfile
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from uuid import UUID

import anyio

import duetime
from duetime import Cron, EntryExists, Retry, Scheduler, SQLiteStore, Status, TaskRegistry
from duetime.testing import MemoryStore

# --8<-- [start:tasks]
tasks = TaskRegistry()
charged: dict[str, int] = {}  # stands for the payment provider's records


@tasks.task("billing.send_invoice", retry=Retry(attempts=5, backoff=1.0), lease=30.0)
async def send_invoice(invoice_id: int) -> None:
    entry = duetime.current_entry()  # key, attempt, due, idempotency_key
    # The same key for every attempt of this entry: the provider charges once.
    charged.setdefault(entry.idempotency_key, invoice_id)


@tasks.task("reports.nightly")
def nightly_report() -> None:  # a sync task runs in a worker thread
    print("nightly report")


# --8<-- [end:tasks]


async def producer_and_worker() -> None:
    # --8<-- [start:producer]
    store = MemoryStore()  # in production: SQLiteStore("jobs.db") or open_store(url)

    # A web process defers work and never runs it (worker=False).
    async with Scheduler(store=store, tasks=tasks, worker=False) as web:
        entry = (await web.defer(send_invoice, 42, delay=60, key="invoice-42")).entry
        assert entry is not None
        assert entry.status is Status.PENDING
        await web.defer("billing.send_invoice", 43, key="invoice-43")  # by name
    # The web process is gone; its entries are in the store.

    # A worker process runs them: here, one more Scheduler on the same store.
    async with Scheduler(store=store, tasks=tasks) as worker:
        await anyio.sleep(61)
        done = await worker.deferred("invoice-42")
        assert done is not None
        assert done.status is Status.COMPLETED
    assert charged == {"invoice-42": 42, "invoice-43": 43}
    # --8<-- [end:producer]


async def keys_and_conflicts() -> None:
    # --8<-- [start:keys]
    async with Scheduler(store=MemoryStore(), tasks=tasks) as s:
        first = (await s.defer(send_invoice, 7, delay=10, key="invoice-7")).entry
        assert first is not None  # defer's Deferred holds the entry it stored
        # A producer that retries its request stores nothing twice:
        again = (await s.defer(send_invoice, 7, delay=10, key="invoice-7")).entry
        assert again == first  # "keep" (the default) returns the stored entry
        moved = await s.defer(send_invoice, 7, delay=99, key="invoice-7", on_conflict="replace")
        assert moved.entry is not None
        assert moved.entry.due > first.due
        try:
            await s.defer(send_invoice, 7, key="invoice-7", on_conflict="error")
        except EntryExists as exc:
            print(exc)  # a durable entry with key 'invoice-7' already exists
        assert await s.cancel_deferred("invoice-7")  # PENDING: deleted

        await s.defer(send_invoice, 8, key="invoice-8")
        await anyio.sleep(1)
        # Completed: kept as a tombstone for the store's dedupe_ttl (24 h), so
        # a late retry of the same defer does not run the work again.
        late = (await s.defer(send_invoice, 8, key="invoice-8")).entry
        assert late is not None
        assert late.status is Status.COMPLETED
    # --8<-- [end:keys]


@tasks.task("shop.ship")
async def ship(order: UUID, when: datetime, day: date, total: Decimal, label: bytes) -> None:
    assert isinstance(order, UUID)
    assert isinstance(total, Decimal)


async def arguments() -> None:
    # --8<-- [start:arguments]
    async with Scheduler(store=MemoryStore(), tasks=tasks) as s:
        d = await s.defer(
            ship,
            UUID("12345678-1234-5678-1234-567812345678"),
            datetime(2026, 12, 1, 9, tzinfo=UTC),  # aware datetimes only
            date(2026, 12, 1),
            Decimal("19.99"),
            b"\x00label",
            key="ship-1",
        )
        assert d.entry is not None
        assert d.entry.args[3] == Decimal("19.99")  # stored as JSON with a tag, read back exactly
        try:
            await s.defer(ship, object(), key="ship-2")  # type: ignore[arg-type]
        except TypeError as exc:
            print(exc)  # argument [0] is an object: ... (at the call site, nothing stored)
        try:
            await s.defer("shop.ship_v2", key="ship-3")
        except LookupError as exc:
            print(exc)  # no task named 'shop.ship_v2' is registered in this TaskRegistry
    # --8<-- [end:arguments]


attempts: list[int] = []


@tasks.task("sync.push", retry=Retry(attempts=3, backoff=5.0, jitter=0.0))
async def push(user: str) -> None:
    attempts.append(duetime.current_entry().attempt)
    if len(attempts) <= 3:
        raise ConnectionError(f"push service down (attempt {attempts[-1]})")


async def retries_and_dead_letters() -> None:
    # --8<-- [start:retries]
    async with Scheduler(store=MemoryStore(), tasks=tasks) as s:
        await s.defer(push, "ana", key="push-ana")
        await anyio.sleep(60)  # attempts at 0, 5 and 15 s: all fail
        [dead] = await s.dead_letters()
        print(dead.key, dead.attempt, dead.last_error)
        # push-ana 3 ConnectionError: push service down (attempt 3)
        assert dead.status is Status.FAILED
        # The service is back: run it again, from attempt 1.
        assert await s.retry_deferred("push-ana")
        await anyio.sleep(1)
        ok = await s.deferred("push-ana")
        assert ok is not None
        assert ok.status is Status.COMPLETED
    assert attempts == [1, 2, 3, 1]
    # --8<-- [end:retries]


ticks: list[str] = []


@tasks.task("metrics.flush")
async def flush_metrics() -> None:
    ticks.append(duetime.current_entry().due.strftime("%H:%M"))


async def recurring() -> None:
    # --8<-- [start:every]
    store = MemoryStore()  # its clock starts at 2024-01-01 00:00 UTC
    async with Scheduler(store=store, tasks=tasks) as s:
        # One row per series, on a drift-free grid; with N workers each
        # occurrence runs once.  The key is the series' identity.
        await s.defer_every(timedelta(minutes=5), flush_metrics, key="flush")
        await s.defer_every(
            Cron("0 2 * * *", tz="Europe/Paris"), nightly_report, key="nightly", misfire="skip"
        )
        await anyio.sleep(16 * 60)
        assert ticks == ["00:00", "00:05", "00:10", "00:15"]
        nightly = await s.deferred("nightly")
        assert nightly is not None
        print(nightly.due)  # 2024-01-01 01:00:00+00:00 (02:00 in Paris)
        assert await s.cancel_deferred("flush")  # stops the series
    # --8<-- [end:every]


async def sqlite_file() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        # --8<-- [start:sqlite]
        path = Path(tmp) / "jobs.db"
        async with Scheduler(store=SQLiteStore(path), tasks=tasks, worker=False) as s:
            await s.defer(send_invoice, 99, delay=3600, key="invoice-99")
        # Restarted (or another process on this host): the entry is still there.
        async with Scheduler(store=SQLiteStore(path, lease=60.0), tasks=tasks, worker=False) as s:
            e = await s.deferred("invoice-99")
            assert e is not None
            assert e.status is Status.PENDING
            assert e.args == (99,)
        # --8<-- [end:sqlite]


async def main() -> None:
    await producer_and_worker()
    await keys_and_conflicts()
    await arguments()
    await retries_and_dead_letters()
    await recurring()
    await sqlite_file()
    print("all durable examples passed")


if __name__ == "__main__":
    anyio.run(main)
