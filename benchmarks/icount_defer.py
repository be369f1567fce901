"""Client instructions per deferred entry, counted by callgrind: a load-proof view
of what ``Scheduler.defer`` and ``defer_many`` cost on the producer's side.

Wall-clock figures of a producer on a shared machine move with the load (and an
awaited ``defer`` on PostgreSQL mostly waits for the server's WAL flush);
instruction counts of the producer's process do not.  This runs, after a
warm-up, ``Scheduler.defer`` awaited one at a time and ``defer_many`` of 100 a
call, on a ``MemoryStore``, on a ``SQLiteStore`` (its thread's instructions
count too) and, given a URL, on a ``PostgresStore`` and a ``RedisStore`` (the
server is another process: only the client's side is counted), under ``valgrind --tool=callgrind``
counting only inside the timed loops, and prints instructions per entry.

Not a scenario module (the runner runs only ``bench_*.py``).  Needs valgrind
with its headers and gcc.  Usage, from a checkout::

    python benchmarks/icount_defer.py [--n 2000] [--postgres URL] [--redis URL]

``PYTHONPATH=OTHER/src`` measures another checkout.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from icount import _build, parse  # noqa: E402


def child(lib: str, n: int, postgres: str | None, redis: str | None) -> None:
    import anyio

    from duetime import Scheduler
    from duetime.durable import MemoryStore, SQLiteStore, TaskRegistry

    cg = ctypes.CDLL(lib)
    cg.cg_dump.argtypes = [ctypes.c_char_p]
    tasks = TaskRegistry()

    @tasks.task("bench.noop")
    async def noop(i: int, s: str) -> None:
        pass

    async def loop(make: Any, name: str, tmp: str) -> None:
        async with Scheduler(store=make(tmp), tasks=tasks, worker=False) as s:
            for i in range(200):  # warm-up: connections, prepared statements, caches
                await s.defer("bench.noop", i, "abc", delay=3600)
            cg.cg_toggle()
            for i in range(n):
                await s.defer("bench.noop", i, "abc", delay=3600)
            cg.cg_toggle()
            cg.cg_dump(f"{name} defer".encode())
            cg.cg_toggle()
            for i in range(0, n * 10, 100):
                await s.defer_many(
                    "bench.noop", [(j, "abc") for j in range(i, i + 100)], delay=3600
                )
            cg.cg_toggle()
            cg.cg_dump(f"{name} defer_many".encode())

    makers: dict[str, Any] = {
        "memory": lambda tmp: MemoryStore(),
        "sqlite": lambda tmp: SQLiteStore(os.path.join(tmp, "q.db")),
    }
    if postgres:
        from duetime.durable import PostgresStore

        makers["postgres"] = lambda tmp: PostgresStore(
            postgres, schema="ic_" + uuid.uuid4().hex[:12]
        )
    if redis:
        from duetime.durable import RedisStore

        makers["redis"] = lambda tmp: RedisStore(redis, prefix="ic_" + uuid.uuid4().hex[:12])
    for name, make in makers.items():
        with tempfile.TemporaryDirectory() as tmp:
            anyio.run(loop, make, name, tmp)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--postgres", default=None, help="a PostgreSQL URL (else not measured)")
    ap.add_argument("--redis", default=None, help="a Redis URL (else not measured)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        child(a.child, a.n, a.postgres, a.redis)
        return 0
    if not shutil.which("valgrind") or not shutil.which("gcc"):
        print("needs valgrind (with its headers) and gcc", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        lib = _build(d)
        out = d / "out"
        out.mkdir()
        cmd = ["valgrind", "--tool=callgrind", "--collect-atstart=no"]
        cmd += [f"--callgrind-out-file={out}/callgrind.out.%p", sys.executable, __file__]
        cmd += ["--child", str(lib), "--n", str(a.n)]
        cmd += ["--postgres", a.postgres] if a.postgres else []
        cmd += ["--redis", a.redis] if a.redis else []
        subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL, env=dict(os.environ))
        counts = parse(out)
    for what, count in counts.items():
        per = a.n if what.endswith(" defer") else a.n * 10
        print(f"{what:22} {count / per:10.0f} instructions per entry")
    return 0


if __name__ == "__main__":
    sys.exit(main())
