"""The dashboard's overview on a store of a million entries (SQLite, Redis, PostgreSQL).

The store is filled fast (SQLite: one ``executemany`` into the store's own
schema, as a restore would; Redis: the store's ``add`` in batches of 5,000;
PostgreSQL: one ``INSERT ... SELECT`` from ``generate_series`` into the store's
schema, then ``VACUUM ANALYZE`` as autovacuum would after a bulk load),
then a few thousand entries are claimed and finished through the store so
that every status and the last hour's activity have something to show.  A
fresh store object (as a dashboard process opens it) then answers, five
times each, the median kept:

- the overview's queries: ``time()``, ``counts()``, ``activity(60)``;
- the overview page rendered (the queries, the SVG charts, the template)
  through the app's ASGI side (httpx), which is what a browser waits for;
- the entries page (the first page of ``page()``) and the dead letters page.

Target: the overview page in under 500 ms with 1M entries.  ``--quick`` uses
20,000 entries (CI's smoke run: no target judged).

Run alone with ``python benchmarks/bench_dashboard.py [--quick]``.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio
from _common import have, le, ratio, start_redis

from duetime.durable import Dead, Done, NewRow, RetryAt, SQLiteStore, Store

TASKS = ["mail.send", "billing.charge", "reports.build", "images.resize", "search.index"]
TARGET_MS = 500.0


async def _work(store: Store, n: int) -> None:
    """Claim and finish ``n`` entries through the store: completed, retried, dead."""
    now = await store.time()
    left = n
    while left > 0:
        claims = await store.claim("bench-worker", min(500, left))
        if not claims:
            break
        outcomes: list[Any] = []
        for i, c in enumerate(claims):
            if i % 10 == 3:
                outcomes.append((c.entry.key, c.token, Dead("ValueError: bad input")))
            elif i % 10 == 7:
                outcomes.append((c.entry.key, c.token, RetryAt(now + 3600, "timeout")))
            else:
                outcomes.append((c.entry.key, c.token, Done()))
        await store.finish_many(outcomes)
        left -= len(claims)
    await store.claim("bench-worker", 50)  # a few stay RUNNING


def fill_sqlite(path: Path, n: int) -> float:
    """A SQLite store of ``n`` PENDING entries (mostly due in the coming day);
    returns the seconds it took."""
    t0 = time.perf_counter()

    async def create() -> None:
        async with SQLiteStore(path):
            pass  # the schema, indexes and activity ring

    anyio.run(create)
    now = time.time()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA synchronous = OFF")
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO duetime_entries (key, task, payload, status, due, visible_at, lease,"
        " max_deliveries) VALUES (?, ?, ?, 0, ?, ?, 30.0, 5)",
        (
            (f"job-{i:08d}", TASKS[i % 5], f"[{i}]", due, due)
            for i in range(n)
            for due in (now - 60 + (i % 86400) if i % 50 == 0 else now + 60 + i % 86400,)
        ),
    )
    conn.execute("COMMIT")
    conn.close()
    return time.perf_counter() - t0


async def fill_redis(url: str, n: int) -> float:
    from duetime.durable import RedisStore

    t0 = time.perf_counter()
    now = time.time()
    async with RedisStore(url, prefix="bench") as store:
        for start in range(0, n, 5000):
            rows = [
                NewRow(
                    key=f"job-{i:08d}",
                    task=TASKS[i % 5],
                    payload=f"[{i}]",
                    due=now - 60 + (i % 86400) if i % 50 == 0 else now + 60 + i % 86400,
                )
                for i in range(start, min(n, start + 5000))
            ]
            await store.add(rows)
    return time.perf_counter() - t0


async def fill_postgres(url: str, n: int) -> float:
    """A PostgresStore (schema ``bench``) of ``n`` PENDING entries, as :func:`fill_sqlite`."""
    import psycopg

    from duetime.durable import PostgresStore

    t0 = time.perf_counter()
    async with PostgresStore(url, schema="bench"):
        pass  # the schema, indexes and activity ring
    tasks = "ARRAY[" + ", ".join(f"'{t}'" for t in TASKS) + "]"
    now = time.time()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO bench.entries (key, task, payload, status, due, visible_at, lease,"
            f" max_deliveries) SELECT 'job-' || lpad(i::text, 8, '0'), ({tasks})[i %% 5 + 1],"
            " '[' || i || ']', 0, d.due, d.due, 30.0, 5 FROM generate_series(0, %s - 1) i,"
            " LATERAL (SELECT CASE WHEN i %% 50 = 0 THEN %s - 60 + i %% 86400"
            " ELSE %s + 60 + i %% 86400 END::float8 AS due) d",
            (n, now, now),
        )
        conn.execute("VACUUM ANALYZE bench.entries")
    return time.perf_counter() - t0


async def measure(store: Store, work: int) -> dict[str, float]:
    """Median milliseconds of the overview's queries and of three pages."""
    import httpx

    from duetime.dashboard import create_app

    async with store:
        await _work(store, work)
    times: dict[str, list[float]] = {}
    async with store:
        app = create_app(store)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for _ in range(5):
                t0 = time.perf_counter()
                await store.time()
                await store.counts()
                await store.activity(60)
                times.setdefault("overview queries", []).append(time.perf_counter() - t0)
                for name, path in (
                    ("overview page", "/"),
                    ("entries page", "/entries"),
                    ("dead letters page", "/dead-letters"),
                ):
                    t0 = time.perf_counter()
                    r = await client.get(path)
                    times.setdefault(name, []).append(time.perf_counter() - t0)
                    assert r.status_code == 200, (path, r.text[:300])
    return {name: statistics.median(v) * 1000 for name, v in times.items()}


def run(quick: bool) -> dict[str, dict[str, Any]]:
    """The overview of a 1M-entry store (20k with --quick), on SQLite and Redis."""
    if not have("jinja2") or not have("starlette") or not have("httpx"):
        return {"dashboard": {"skipped": "the dashboard extra is not installed"}}
    n = 20_000 if quick else 1_000_000
    work = 2_000 if quick else 10_000
    results: dict[str, dict[str, Any]] = {}
    notes: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "jobs.db"
        built = fill_sqlite(db, n)
        values = anyio.run(measure, SQLiteStore(db), work)
        notes.append(f"SQLite: {n} entries written in {built:.1f} s")
        results["dashboard_sqlite"] = _result("SQLiteStore", n, values, quick, notes)
    results.update(_postgres(n, work, quick))
    if shutil.which("redis-server") is None or not have("coredis"):
        results["dashboard_redis"] = {"skipped": "redis-server or coredis is not installed"}
        return results
    with tempfile.TemporaryDirectory() as tmp:
        server, url = start_redis(tmp)
        try:
            built = anyio.run(fill_redis, url, n)
            from duetime.durable import RedisStore

            values = anyio.run(measure, RedisStore(url, prefix="bench"), work)
            note = f"Redis: {n} entries added in {built:.1f} s (batches of 5,000)"
            results["dashboard_redis"] = _result("RedisStore", n, values, quick, [note])
        finally:
            server.kill()
            server.wait()
    return results


def _postgres(n: int, work: int, quick: bool) -> dict[str, dict[str, Any]]:
    """The same figures on a private PostgreSQL cluster (see bench_postgres_peers)."""
    if not have("psycopg"):
        return {"dashboard_postgres": {"skipped": "psycopg is not installed"}}
    from bench_postgres_peers import fresh_database, postgres

    try:
        server = postgres()
        url, how = server.__enter__()
    except LookupError as exc:
        return {"dashboard_postgres": {"skipped": str(exc)}}
    try:
        from duetime.durable import PostgresStore

        db = fresh_database(url)
        built = anyio.run(fill_postgres, db, n)
        values = anyio.run(measure, PostgresStore(db, schema="bench"), work)
    finally:
        server.__exit__(None, None, None)
    note = f"PostgreSQL ({how}): {n} entries inserted and vacuumed in {built:.1f} s"
    return {"dashboard_postgres": _result("PostgresStore", n, values, quick, [note])}


def _result(
    kind: str, n: int, values: dict[str, float], quick: bool, notes: list[str]
) -> dict[str, Any]:
    page = values["overview page"]
    return {
        "title": f"dashboard on {kind} with {n:,} entries (median of 5)",
        "unit": "ms",
        "values": values,
        "ratios": [
            ratio(
                f"overview page with {n:,} entries (ms)",
                page,
                f"< {TARGET_MS:g} ms",
                le(page, TARGET_MS, judge=not quick),
            )
        ],
        "notes": notes,
    }


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2))
