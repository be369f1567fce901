"""The awaited ``defer`` on PostgreSQL and what bounds it: one producer, each call
awaited, beside the floors under it and the peers doing the same, on one
server in one run.

A private PostgreSQL cluster (``bench_postgres_peers.postgres``: the server's
default durability, fsync and ``synchronous_commit`` on).  Every round runs each
contender once, the order rotating, and each figure is the median over the
rounds (the disk is shared: a commit's WAL flush moves them all alike):

- **SELECT 1**: one round trip, no commit (the loopback and the driver);
- **plain INSERT**: one prepared ``INSERT`` of a key and a payload into a bare
  table, autocommit: one round trip and one commit, the floor of any durable
  enqueue; and the same with ``synchronous_commit = off`` (the WAL flush left
  out: what the flush costs);
- **PostgresStore.add**: the store's own statement for one row, no Scheduler;
- **Scheduler.defer**: duetime's awaited ``defer`` (what users call);
- **pgqueuer** ``Queries.enqueue`` of one job (asyncpg) and **Procrastinate**
  ``Task.defer_async`` (psycopg), asyncio-only: everything here runs on asyncio.

It also counts, for ``Scheduler.defer``: statements sent per call (the driver's
own count), commits per call (``pg_stat_database.xact_commit``) and WAL
flushes per call (``pg_stat_wal.wal_sync``, the whole cluster, while nothing
else runs on it); and it runs ``pg_test_fsync`` on the disk the cluster's
data directory is on (the cost of one 8 kB ``fdatasync``).
"""

from __future__ import annotations

import asyncio
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from _common import ge, have, ratio  # noqa: E402


async def _pool_rate(
    url: str, n: int, setup: bytes, sql: bytes, params: Callable[[int], Any]
) -> float:
    from duetime.durable._postgres_conn import Pool, conninfo

    pool = Pool(conninfo(url, 10.0), 1, setup)
    try:
        await pool.query(sql, params(-1))  # connect and prepare outside the clock
        t0 = time.perf_counter()
        for i in range(n):
            await pool.query(sql, params(i))
        return n / (time.perf_counter() - t0)
    finally:
        pool.close()


_PLAIN = b"CREATE TABLE IF NOT EXISTS plain (k text PRIMARY KEY, payload text NOT NULL)"


async def select_one(url: str, n: int) -> float:
    return await _pool_rate(url, n, b"", b"SELECT 1", lambda i: [])


async def plain_insert(url: str, n: int, relaxed: bool = False) -> float:
    setup = _PLAIN + (b"; SET synchronous_commit = off" if relaxed else b"")
    tag = os.urandom(6).hex()
    return await _pool_rate(
        url,
        n,
        setup,
        b"INSERT INTO plain (k, payload) VALUES ($1, $2)",
        lambda i: [f"{tag}{i}".encode(), f"[{i}]".encode()],
    )


async def store_add(url: str, n: int) -> float:
    from duetime.durable import NewRow, PostgresStore

    tag = os.urandom(6).hex()
    async with PostgresStore(url) as store:
        await store.add([NewRow(f"{tag}-warm", "bench.noop", "[0]", delay=3600.0)])
        t0 = time.perf_counter()
        for i in range(n):
            await store.add([NewRow(f"{tag}{i}", "bench.noop", f"[{i}]", delay=3600.0)])
        return n / (time.perf_counter() - t0)


async def scheduler_defer(url: str, n: int) -> float:
    from bench_postgres_peers import dt_enqueue

    return float(await dt_enqueue(url, n, 1))


async def pgqueuer_enqueue(url: str, n: int) -> float:
    from bench_postgres_peers import pgq_enqueue

    return float(await pgq_enqueue(url, n, 1))


async def procrastinate_defer(url: str, n: int) -> float:
    from bench_postgres_peers import proc_enqueue

    return float(await proc_enqueue(url, n, 1))


async def plain_insert_relaxed(url: str, n: int) -> float:
    return await plain_insert(url, n, relaxed=True)


CONTENDERS: dict[str, Callable[[str, int], Coroutine[Any, Any, float]]] = {
    "SELECT 1 (round trip, no commit)": select_one,
    "plain INSERT (one commit)": plain_insert,
    "plain INSERT, synchronous_commit off": plain_insert_relaxed,
    "PostgresStore.add (one row)": store_add,
    "Scheduler.defer": scheduler_defer,
    "pgqueuer Queries.enqueue": pgqueuer_enqueue,
    "Procrastinate defer_async": procrastinate_defer,
}
#: Contenders that need a fresh database each time (they install a schema).
_FRESH = {"pgqueuer Queries.enqueue", "Procrastinate defer_async", "Scheduler.defer"}


def _stats(url: str, db: str) -> tuple[int, int]:
    """``(commits of db, WAL flushes of the cluster)`` as the statistics show them now."""
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        commits = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", (db,)
        ).fetchone()
        wal = conn.execute("SELECT wal_sync FROM pg_stat_wal").fetchone()
    return int(commits[0] if commits else 0), int(wal[0] if wal else 0)


def count_defer(url: str, n: int) -> dict[str, float]:
    """Statements, commits and WAL flushes per awaited ``Scheduler.defer``."""
    from bench_postgres_peers import fresh_database

    from duetime.durable import _postgres_conn as pc

    db_url = fresh_database(url)
    db = db_url.rsplit("/", 1)[1]
    sent = {"n": 0}
    query, script = pc.Conn.query, pc.Conn.script

    async def counted_query(self: Any, sql: bytes, params: Any = ()) -> Any:
        sent["n"] += 1
        return await query(self, sql, params)

    async def counted_script(self: Any, sql: bytes) -> Any:
        sent["n"] += 1
        return await script(self, sql)

    async def defer_n() -> tuple[int, int, int]:
        from bench_postgres_peers import _duetime

        from duetime import Scheduler

        store_class, tasks = _duetime()
        async with Scheduler(store=store_class(db_url), tasks=tasks, worker=False) as s:
            await s.defer("bench.noop", -1, delay=3600)  # schema, connection, prepare
            # The store's next tombstone purge is due (counted); the server's
            # statistics of the setup are flushed.
            await asyncio.sleep(2.5)
            commits, wal = _stats(url, db)
            before = sent["n"]
            for i in range(n):
                await s.defer("bench.noop", i, delay=3600)
            return sent["n"] - before, commits, wal

    pc.Conn.query, pc.Conn.script = counted_query, counted_script  # type: ignore[method-assign]
    try:
        statements, commits, wal = asyncio.run(defer_n())
    finally:
        pc.Conn.query, pc.Conn.script = query, script  # type: ignore[method-assign]
    time.sleep(1.0)  # the closed connections' statistics reach the views
    commits2, wal2 = _stats(url, db)
    return {
        "statements": statements / n,
        "commits": (commits2 - commits) / n,
        "wal_flushes": (wal2 - wal) / n,
    }


def fsync_test(directory: str) -> dict[str, float] | None:
    """pg_test_fsync's one-8kB-write figures on ``directory``'s disk (ops/s), or None."""
    from bench_postgres_peers import _bindir

    bindir = _bindir()
    tool = None if bindir is None else bindir / "pg_test_fsync"
    if tool is None or not tool.is_file():
        return None
    with tempfile.TemporaryDirectory(dir=directory) as d:
        os.chmod(d, 0o777)
        out = subprocess.run(
            [str(tool), "-s", "2", "-f", os.path.join(d, "probe")],
            capture_output=True,
            text=True,
            timeout=300,
        ).stdout
    one_write = out.split("using one 8kB write", 1)[-1].split("Compare", 1)[0]
    found = {
        m.group(1): float(m.group(2))
        for m in re.finditer(r"^\s+(\w+)\s+([\d.]+) ops/sec", one_write, re.M)
    }
    return found or None


def run(quick: bool) -> dict[str, Any]:
    if not have("psycopg"):
        return {
            "postgres_awaited": {"skipped": "psycopg not installed (pip install -e '.[bench]')"}
        }
    from bench_postgres_peers import available, fresh_database, postgres

    try:
        server = postgres()
        url, how = server.__enter__()
    except LookupError as exc:
        return {"postgres_awaited": {"skipped": str(exc)}}
    n = 200 if quick else 1000
    rounds = 1 if quick else 5
    names = [
        name
        for name in CONTENDERS
        if not (name.startswith("pgqueuer") and available("pgqueuer"))
        and not (name.startswith("Procrastinate") and available("procrastinate"))
    ]
    samples: dict[str, list[float]] = {name: [] for name in names}
    try:
        shared = fresh_database(url)
        for r in range(rounds):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                db = fresh_database(url) if name in _FRESH else shared
                samples[name].append(asyncio.run(CONTENDERS[name](db, n)))
        counts = count_defer(url, n)
        fsync = fsync_test(tempfile.gettempdir())
    finally:
        server.__exit__(None, None, None)
    medians = {name: statistics.median(v) for name, v in samples.items()}
    notes = [
        f"server: {how}; {n} calls per figure, median of {rounds} rounds, the order rotating",
        "samples: " + "; ".join(f"{k}: {[round(x) for x in v]}" for k, v in samples.items()),
        "per awaited Scheduler.defer: "
        + ", ".join(f"{v:.3f} {k}" for k, v in counts.items())
        + " (the fraction over 1: the tombstone purge, at most once a second, and leaving)",
    ]
    if fsync is not None:
        notes.append(
            "pg_test_fsync, one 8 kB write on the data directory's disk: "
            + ", ".join(f"{k} {v:,.0f}/s ({1e6 / v:.0f} us)" for k, v in fsync.items() if v)
        )
    judge = not quick
    defer = medians["Scheduler.defer"]
    floor = medians["plain INSERT (one commit)"]
    ratios = [
        ratio("awaited defer", defer, ">= 2k/s", ge(defer, 2000, judge)),
        ratio("awaited defer / plain INSERT (one commit)", defer / floor, "-", None),
        ratio("statements per defer", counts["statements"], "1", counts["statements"] < 1.01),
        ratio("commits per defer", counts["commits"], "1", counts["commits"] < 1.1),
    ]
    for peer in ("pgqueuer Queries.enqueue", "Procrastinate defer_async"):
        if peer in medians:
            ratios.append(ratio(f"awaited defer / {peer}", defer / medians[peer], "-", None))
    return {
        "postgres_awaited": {
            "title": "One producer on PostgreSQL, each call awaited: duetime's defer,"
            " its floors, and the peers",
            "unit": "calls/s",
            "lower_is_better": False,
            "values": medians,
            "ratios": ratios,
            "notes": notes,
        }
    }


if __name__ == "__main__":
    import json

    print(json.dumps(run("--quick" in sys.argv), indent=1, default=str))
