"""The PostgresStore driver prototype: psycopg's libpq layer on the event loop vs
sync psycopg connections in worker threads (``anyio.to_thread`` with a limiter).

Not a scenario of the runner (it needs a server and says nothing about duetime
as a whole): run it by hand with ``DUETIME_TEST_POSTGRES_URL`` set::

    DUETIME_TEST_POSTGRES_URL=postgresql://postgres@127.0.0.1:5432/postgres \\
        python benchmarks/bench_postgres_driver.py

It measures, on asyncio and trio, for each driver: an awaited one-row INSERT
(what an awaited ``defer`` costs), and 8 tasks running claim-sized
``UPDATE ... RETURNING`` of 100 rows then a finish-sized UPDATE of the same rows
(what a worker's loop costs), in round trips per second.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from duetime.durable._postgres_conn import Pool, array, text_or_none

URL = os.environ.get("DUETIME_TEST_POSTGRES_URL", "")
N_INSERT = 3000
N_CYCLES = 400
TASKS = 8

SETUP = """
DROP TABLE IF EXISTS bench_driver;
CREATE UNLOGGED TABLE bench_driver (key text PRIMARY KEY, n int NOT NULL DEFAULT 0, v float8);
INSERT INTO bench_driver (key) SELECT 'k' || i FROM generate_series(1, 2000) i;
"""
INSERT = "INSERT INTO bench_driver (key, v) VALUES ($1, $2)"
CLAIM = (
    "UPDATE bench_driver SET n = n + 1 WHERE key IN (SELECT key FROM bench_driver"
    " WHERE key = ANY($1::text[]) FOR UPDATE SKIP LOCKED) RETURNING key, n, v"
)
FINISH = (
    "UPDATE bench_driver b SET v = u.v FROM unnest($1::text[], $2::float8[]) AS u(key, v)"
    " WHERE b.key = u.key"
)


def setup() -> None:
    with psycopg.connect(URL, autocommit=True) as conn:
        conn.execute(SETUP)


def keys(task: int, i: int) -> list[str]:
    base = (task * 250 + (i % 2) * 100) % 2000
    return [f"k{base + j + 1}" for j in range(100)]


async def pq_driver() -> dict[str, float]:
    pool = Pool(URL, TASKS)
    sql_i, sql_c, sql_f = INSERT.encode(), CLAIM.encode(), FINISH.encode()
    await pool.query(b"DELETE FROM bench_driver WHERE key LIKE 'i%'")
    t0 = time.perf_counter()
    for i in range(N_INSERT):
        await pool.query(sql_i, [text_or_none(f"i{i}"), text_or_none(float(i))])
    inserts = N_INSERT / (time.perf_counter() - t0)

    async def cycles(task: int) -> None:
        for i in range(N_CYCLES):
            ks = keys(task, i)
            rows = await pool.query(sql_c, [array(ks)])
            got = [r[0].decode() for r in rows.rows if r[0] is not None]
            await pool.query(sql_f, [array(got), array([1.5] * len(got))])

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for task in range(TASKS):
            tg.start_soon(cycles, task)
    loops = TASKS * N_CYCLES / (time.perf_counter() - t0)
    pool.close()
    return {"insert/s": inserts, "claim+finish/s": loops}


async def thread_driver() -> dict[str, float]:
    limiter = anyio.CapacityLimiter(TASKS)
    slots = anyio.Semaphore(TASKS)
    conns = [psycopg.connect(URL, autocommit=True) for _ in range(TASKS)]
    idle = list(conns)

    async def run(sql: str, params: Any) -> list[Any]:
        async with slots:
            conn = idle.pop()
            try:

                def work() -> list[Any]:
                    cur = conn.execute(sql, params, prepare=True)
                    return cur.fetchall() if cur.description else []

                return await anyio.to_thread.run_sync(work, limiter=limiter)
            finally:
                idle.append(conn)

    await run("DELETE FROM bench_driver WHERE key LIKE 'i%'", None)
    sql_i = INSERT.replace("$1", "%s").replace("$2", "%s")
    sql_c = CLAIM.replace("$1", "%s")
    sql_f = FINISH.replace("$1", "%s").replace("$2", "%s")
    t0 = time.perf_counter()
    for i in range(N_INSERT):
        await run(sql_i, (f"i{i}", float(i)))
    inserts = N_INSERT / (time.perf_counter() - t0)

    async def cycles(task: int) -> None:
        for i in range(N_CYCLES):
            rows = await run(sql_c, (keys(task, i),))
            got = [r[0] for r in rows]
            await run(sql_f, (got, [1.5] * len(got)))

    t0 = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for task in range(TASKS):
            tg.start_soon(cycles, task)
    loops = TASKS * N_CYCLES / (time.perf_counter() - t0)
    for conn in conns:
        conn.close()
    return {"insert/s": inserts, "claim+finish/s": loops}


def main() -> None:
    if not URL:
        raise SystemExit("set DUETIME_TEST_POSTGRES_URL to a server this may write to")
    for backend in ("asyncio", "trio"):
        for name, fn in (("libpq on the loop", pq_driver), ("threads", thread_driver)):
            setup()
            got = anyio.run(fn, backend=backend)
            figures = ", ".join(f"{k} {v:,.0f}" for k, v in got.items())
            print(f"{backend:8} {name:18} {figures}")


if __name__ == "__main__":
    main()
