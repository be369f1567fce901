"""Durable work on PostgreSQL: duetime's PostgresStore beside pgqueuer and Procrastinate,
on one server, in one run.

The module starts its own PostgreSQL cluster (Debian's ``postgresql-15``
binaries: a temp data directory, a free loopback port, the server's default
durability: ``fsync`` and ``synchronous_commit`` on; ``BENCH_PG_FSYNC=off``
turns fsync off, to see the CPU's ceiling) and gives each measurement a fresh
database on it.  Without the binaries it uses ``$DUETIME_TEST_POSTGRES_URL``
(``.ci/run`` starts one), else it is skipped; each peer is skipped on its own
when not installed (``pip install -e '.[bench]'``).  Figures:

- **enqueue** (the median of 3 rounds, each contender once a round, the order
  rotating): one producer, each enqueue awaited: duetime ``Scheduler.defer``
  and ``defer_many`` (100 a call); pgqueuer ``Queries.enqueue`` of one job and
  of lists of 100 (asyncpg, its fastest driver); Procrastinate
  ``Task.defer_async`` and ``batch_defer_async`` (100 a call);
- **claim + run + finish**: N no-op jobs due now, then 4 worker processes,
  until all have run: duetime ``Scheduler(store=PostgresStore(...),
  max_concurrency=100)`` (what ``python -m duetime worker`` runs); pgqueuer
  ``QueueManager.run(batch_size=B, mode=drain)`` with B = 10 (its default and
  its own benchmark's) and B = 100 (what duetime claims at most at a time);
  Procrastinate ``run_worker_async(concurrency=100, wait=False)``.  Each worker
  records when it ran what; the rate is jobs over the span from the first run
  in any process to the last, and every job must run exactly once.  The
  processes import first and start together (:func:`start_gate`).  A ratio
  to a peer is to its best setting.

pgqueuer and Procrastinate are asyncio-only: they run on asyncio; duetime runs
on asyncio here too (the same code runs on trio).  Worker processes run this
file with ``--worker KIND SETTING URL OUT``.
"""

from __future__ import annotations

import asyncio
import contextlib
import glob
import importlib
import json
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

from _common import ge, have, ratio  # noqa: E402

WORKERS = 4

_ran: list[str] = []
_times: list[float] = []


def _record(job: str) -> None:
    _times.append(time.time())
    _ran.append(job)


# -- the server ----------------------------------------------------------------------


def _bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name))
    for d in [*reversed(found), os.path.dirname(shutil.which("initdb") or "")]:
        if d and all(os.path.isfile(os.path.join(d, b)) for b in ("initdb", "pg_ctl")):
            return Path(d)
    return None


@contextlib.contextmanager
def postgres() -> Iterator[tuple[str, str]]:
    """``(url, how)``: a private cluster with the server's default durability, or
    ``$DUETIME_TEST_POSTGRES_URL``; raises LookupError when neither is there."""
    bindir = _bindir()
    if bindir is None:
        url = os.environ.get("DUETIME_TEST_POSTGRES_URL")
        if not url:
            raise LookupError(
                "no PostgreSQL: install postgresql-15 or set DUETIME_TEST_POSTGRES_URL"
            )
        yield url, "the server at $DUETIME_TEST_POSTGRES_URL"
        return
    user = "postgres" if os.geteuid() == 0 else None
    directory = tempfile.mkdtemp(prefix="duetime-bench-pg-")
    if user is not None:
        shutil.chown(directory, user, user)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    data = os.path.join(directory, "data")
    run = {"user": user, "check": True, "capture_output": True}
    subprocess.run(
        [bindir / "initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8"], **run
    )
    options = f"-c listen_addresses=127.0.0.1 -p {port} -c unix_socket_directories={directory}"
    options += " -c max_connections=300 -c shared_buffers=256MB"
    durability = "PostgreSQL's default durability (fsync, synchronous_commit on)"
    if os.environ.get("BENCH_PG_STATEMENTS") == "1":  # where the server's time goes
        options += " -c shared_preload_libraries=pg_stat_statements"
        options += " -c pg_stat_statements.track_planning=on"
    if os.environ.get("BENCH_PG_FSYNC") == "off":  # the CPU's ceiling, not a deployment
        options += " -c fsync=off"
        durability = "fsync off (BENCH_PG_FSYNC=off)"
    pg_ctl = [bindir / "pg_ctl", "-D", data, "-w", "-t", "60"]
    log = os.path.join(directory, "log")
    subprocess.run([*pg_ctl, "-l", log, "-o", options, "start"], **run)
    try:
        yield (
            f"postgresql://postgres@127.0.0.1:{port}/postgres",
            f"a private cluster, {durability}, shared_buffers 256MB",
        )
    finally:
        subprocess.run([*pg_ctl, "-m", "fast", "stop"], user=user, capture_output=True)
        shutil.rmtree(directory, ignore_errors=True)


def fresh_database(url: str) -> str:
    """A new empty database on the server at ``url``; its URL."""
    import psycopg

    name = f"bench_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return url.rsplit("/", 1)[0] + "/" + name


# -- duetime -------------------------------------------------------------------------


def _duetime() -> tuple[Any, Any]:
    """``(PostgresStore class, registry)``; raises ImportError without the store."""
    from duetime import TaskRegistry
    from duetime.durable import PostgresStore  # type: ignore[attr-defined]

    tasks = TaskRegistry()

    @tasks.task("bench.noop")
    async def noop(i: int) -> None:
        import duetime

        _record(duetime.current_entry().key)

    return PostgresStore, tasks


async def dt_enqueue(url: str, n: int, batch: int) -> float:
    from duetime import Scheduler

    store_class, tasks = _duetime()
    async with Scheduler(store=store_class(url), tasks=tasks, worker=False) as s:
        t0 = time.perf_counter()
        if batch == 1:
            for i in range(n):
                await s.defer("bench.noop", i, delay=3600)
        else:
            for i in range(0, n, batch):
                await s.defer_many("bench.noop", [(j,) for j in range(i, i + batch)], delay=3600)
        return n / (time.perf_counter() - t0)


async def dt_fill(url: str, n: int) -> None:
    from duetime import Scheduler

    store_class, tasks = _duetime()
    async with Scheduler(store=store_class(url), tasks=tasks, worker=False) as s:
        for i in range(0, n, 1000):
            await s.defer_many("bench.noop", [(j,) for j in range(i, min(n, i + 1000))])


async def dt_worker(url: str, concurrency: int) -> None:
    import anyio

    from duetime import Scheduler

    store_class, tasks = _duetime()
    store = store_class(url)
    async with Scheduler(store=store, tasks=tasks, max_concurrency=concurrency):
        while True:
            await anyio.sleep(0.05)
            if await store.head() is None:
                break


# -- pgqueuer (asyncpg) --------------------------------------------------------------


async def pgq_queries(url: str) -> Any:
    import asyncpg
    from pgqueuer import AsyncpgDriver, Queries

    return Queries(AsyncpgDriver(await asyncpg.connect(url)))


async def pgq_enqueue(url: str, n: int, batch: int) -> float:
    q = await pgq_queries(url)
    await q.install()
    t0 = time.perf_counter()
    if batch == 1:
        for i in range(n):
            await q.enqueue("noop", str(i).encode(), 0)
    else:
        for i in range(0, n, batch):
            payloads = [str(j).encode() for j in range(i, i + batch)]
            await q.enqueue(["noop"] * batch, payloads, [0] * batch)
    return n / (time.perf_counter() - t0)


async def pgq_fill(url: str, n: int) -> None:
    q = await pgq_queries(url)
    await q.install()
    for i in range(0, n, 1000):
        m = min(n, i + 1000) - i
        await q.enqueue(["noop"] * m, [str(j).encode() for j in range(i, i + m)], [0] * m)


async def pgq_worker(url: str, batch: int) -> None:
    from pgqueuer import PgQueuer
    from pgqueuer.types import QueueExecutionMode

    q = await pgq_queries(url)
    pgq = PgQueuer(q.driver)

    @pgq.entrypoint("noop")
    async def noop(job: Any) -> None:
        _record(str(job.id))

    await pgq.run(batch_size=batch, mode=QueueExecutionMode.drain)


# -- Procrastinate (psycopg) ---------------------------------------------------------


def proc_app(url: str) -> tuple[Any, Any]:
    import procrastinate

    # It warns that an App made in __main__ cannot be found by its CLI: not used here.
    logging.getLogger("procrastinate").setLevel(logging.ERROR)

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

    @app.task(name="noop", pass_context=True)
    async def noop(context: Any, i: int) -> None:
        _record(str(context.job.id))

    return app, noop


async def proc_enqueue(url: str, n: int, batch: int) -> float:
    app, noop = proc_app(url)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        t0 = time.perf_counter()
        if batch == 1:
            for i in range(n):
                await noop.defer_async(i=i)
        else:
            for i in range(0, n, batch):
                await noop.batch_defer_async(*({"i": j} for j in range(i, i + batch)))
        return n / (time.perf_counter() - t0)


async def proc_fill(url: str, n: int) -> None:
    app, noop = proc_app(url)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        for i in range(0, n, 1000):
            await noop.batch_defer_async(*({"i": j} for j in range(i, min(n, i + 1000))))


async def proc_worker(url: str, concurrency: int) -> None:
    app, _ = proc_app(url)
    async with app.open_async():
        await app.run_worker_async(
            concurrency=concurrency, wait=False, install_signal_handlers=False
        )


# -- the scenario --------------------------------------------------------------------

KINDS: dict[str, tuple[Callable[..., Any], Callable[..., Any], Callable[..., Any]]] = {
    # kind: (enqueue(url, n, batch), fill(url, n), worker(url, setting))
    "duetime": (dt_enqueue, dt_fill, dt_worker),
    "pgqueuer": (pgq_enqueue, pgq_fill, pgq_worker),
    "procrastinate": (proc_enqueue, proc_fill, proc_worker),
}
LABELS = {"duetime": "duetime", "pgqueuer": "pgqueuer", "procrastinate": "Procrastinate"}
#: The worker settings measured, per kind: duetime's max_concurrency, pgqueuer's
#: dequeue batch (10: its default and its own benchmark's; 100: what duetime claims
#: at max_concurrency 100), Procrastinate's concurrency (100 ran faster than 10 here).
SETTINGS = {"duetime": (100,), "pgqueuer": (10, 100), "procrastinate": (100,)}
SETTING_NAMES = {"duetime": "max_concurrency", "pgqueuer": "batch", "procrastinate": "concurrency"}
#: Jobs run in the claim + run + finish figure (Procrastinate, at about 300/s here,
#: gets fewer: its span is still over ten seconds).
RUN_SIZES = {"duetime": 30000, "pgqueuer": 30000, "procrastinate": 5000}


def available(kind: str) -> str | None:
    """None if ``kind`` can run here, else why not."""
    if kind == "duetime":
        try:
            _duetime()
        except ImportError:
            return "duetime.durable.PostgresStore does not exist in this checkout"
        return None
    need = {"pgqueuer": ("pgqueuer", "asyncpg"), "procrastinate": ("procrastinate", "psycopg")}
    missing = [m for m in need[kind] if not have(m)]
    return f"{', '.join(missing)} not installed (pip install -e '.[bench]')" if missing else None


#: What each kind's worker process imports before it says it is ready.
_IMPORTS = {
    "duetime": ("anyio", "trio", "psycopg", "duetime", "duetime.durable"),
    "pgqueuer": ("asyncpg", "pgqueuer", "pgqueuer.types"),
    "procrastinate": ("psycopg", "procrastinate"),
}


def start_gate(modules: tuple[str, ...]) -> None:
    """In a worker process: import ``modules``, say ``ready`` on stdout, and
    wait for a line on stdin (:func:`start_together`).  Importing costs about
    0.8 s of CPU per process: on a 2-core machine, processes still importing
    slowed the ones already running, inside the span measured."""
    for name in modules:
        importlib.import_module(name)
    print("ready", flush=True)
    sys.stdin.readline()


def spawn_together(cmds: list[list[str]]) -> list[subprocess.Popen[bytes]]:
    """Start worker processes, wait until each has said ready (:func:`start_gate`),
    then tell them all to start at once."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    pipe = subprocess.PIPE
    ps = [subprocess.Popen(cmd, env=env, stdin=pipe, stdout=pipe) for cmd in cmds]
    for p in ps:
        assert p.stdout is not None
        if p.stdout.readline().strip() != b"ready":
            raise RuntimeError(f"a benchmark worker did not start: {p.wait()}")
    for p in ps:
        assert p.stdin is not None
        p.stdin.write(b"go\n")
        p.stdin.close()
    return ps


def _processes(kind: str, setting: int, url: str, tmp: Path, n: int) -> dict[str, Any]:
    outs = [tmp / f"{kind}{setting}-{i}.json" for i in range(WORKERS)]
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", kind, str(setting), url]
    ps = spawn_together([[*cmd, str(o)] for o in outs])
    for p in ps:
        if p.wait(timeout=900) != 0:
            raise RuntimeError(f"a {kind} benchmark worker exited with {p.returncode}")
    stats = [json.loads(o.read_text()) for o in outs]
    firsts = [s["times"][0] for s in stats if s["times"]]
    lasts = [s["times"][1] for s in stats if s["times"]]
    counts = Counter(k for s in stats for k in s["ran"])
    span = max(lasts) - min(firsts) if firsts else float("nan")
    return {
        "rate": len(counts) / span,
        "ran": len(counts),
        "double": sum(1 for c in counts.values() if c > 1),
        "lost": n - len(counts),
        "span_s": round(span, 3),
        "per_worker": [len(s["ran"]) for s in stats],
    }


def measure_enqueue(kinds: list[str], url: str, quick: bool) -> dict[str, dict[str, Any]]:
    """Each kind's enqueue figures: the median of rounds in which every kind runs
    once, the order rotating, so a round's figures share a moment of the machine's
    load (a commit's WAL flush on a disk other jobs use moves them all)."""
    n_one = 300 if quick else 1500
    n_batch = 3000 if quick else 20000
    rounds = 1 if quick else 3
    samples: dict[str, dict[str, list[float]]] = {k: {"one": [], "batch": []} for k in kinds}
    for r in range(rounds):
        for kind in kinds[r % len(kinds) :] + kinds[: r % len(kinds)]:
            enqueue = KINDS[kind][0]
            samples[kind]["one"].append(asyncio.run(enqueue(fresh_database(url), n_one, 1)))
            batch = asyncio.run(enqueue(fresh_database(url), n_batch, 100))
            samples[kind]["batch"].append(batch)
    return {
        k: {
            "enqueue": statistics.median(v["one"]),
            "enqueue_batch": statistics.median(v["batch"]),
            "enqueue_samples": [round(x) for x in v["one"]],
            "enqueue_batch_samples": [round(x) for x in v["batch"]],
        }
        for k, v in samples.items()
    }


def measure_crf(kind: str, url: str, tmp: Path, quick: bool) -> dict[int, dict[str, Any]]:
    """Claim + run + finish with :data:`WORKERS` processes, per worker setting."""
    fill = KINDS[kind][1]
    n_run = 2000 if quick else RUN_SIZES[kind]
    out = {}
    for setting in SETTINGS[kind]:
        db = fresh_database(url)
        asyncio.run(fill(db, n_run))
        out[setting] = _processes(kind, setting, db, tmp, n_run)
    return out


def _label(kind: str, setting: int) -> str:
    return f"{LABELS[kind]} ({SETTING_NAMES[kind]} {setting})"


def run(quick: bool) -> dict[str, Any]:
    if not have("psycopg"):
        return {"postgres_peers": {"skipped": "psycopg not installed (pip install -e '.[bench]')"}}
    try:
        server = postgres()
        url, how = server.__enter__()
    except LookupError as exc:
        return {"postgres_peers": {"skipped": str(exc)}}
    judge = not quick
    notes = [f"server: {how}"]
    results: dict[str, dict[str, Any]] = {}
    try:
        with tempfile.TemporaryDirectory() as d:
            kinds = []
            for kind in KINDS:
                why = available(kind)
                if why is None:
                    kinds.append(kind)
                else:
                    notes.append(f"{LABELS[kind]} skipped: {why}")
            results = measure_enqueue(kinds, url, quick)
            for kind in kinds:
                results[kind]["crf"] = measure_crf(kind, url, Path(d), quick)
                notes.append(f"{LABELS[kind]}: {results[kind]}"[:700])
    finally:
        server.__exit__(None, None, None)
    enq = {f"{LABELS[k]} one at a time": r["enqueue"] for k, r in results.items()}
    enq |= {f"{LABELS[k]} batches of 100": r["enqueue_batch"] for k, r in results.items()}
    crf = {_label(k, s): c["rate"] for k, r in results.items() for s, c in r["crf"].items()}
    enq_ratios: list[dict[str, Any]] = []
    crf_ratios: list[dict[str, Any]] = []
    for k, r in results.items():
        bad = sum(c["lost"] + c["double"] for c in r["crf"].values())
        crf_ratios.append(ratio(f"{LABELS[k]}: jobs lost or run twice", bad, "0", bad == 0))
    dt = results.get("duetime")
    if dt is not None:
        one, many = dt["enqueue"], dt["enqueue_batch"]
        rate = max(c["rate"] for c in dt["crf"].values())
        enq_ratios.append(ratio("duetime awaited defer", one, ">= 2k/s", ge(one, 2000, judge)))
        enq_ratios.append(
            ratio("duetime defer_many / defer", many / one, ">= 10x", ge(many / one, 10, judge))
        )
        crf_ratios.append(ratio("duetime jobs/s", rate, ">= 15k/s", ge(rate, 15000, judge)))
        for peer in ("pgqueuer", "procrastinate"):
            if peer in results:
                # Against the peer's best setting measured.
                x = rate / max(c["rate"] for c in results[peer]["crf"].values())
                what = f"duetime / {LABELS[peer]} (its best setting)"
                crf_ratios.append(ratio(what, x, ">= 3x", ge(x, 3, judge)))
                y = one / results[peer]["enqueue"]
                what = f"duetime defer / {LABELS[peer]} one at a time"
                enq_ratios.append(ratio(what, y, "-", None))
    return {
        "postgres_peers_enqueue": {
            "title": "Enqueue on PostgreSQL, one producer, each call awaited",
            "unit": "jobs/s",
            "lower_is_better": False,
            "values": enq,
            "ratios": enq_ratios,
            "notes": notes,
        },
        "postgres_peers_claim_run_finish": {
            "title": f"Claim + run + finish on PostgreSQL, {WORKERS} worker processes, no-op task",
            "unit": "jobs/s",
            "lower_is_better": False,
            "values": crf,
            "ratios": crf_ratios,
            "notes": notes,
        },
    }


def _worker_main(kind: str, setting: int, url: str, out: str) -> None:
    start_gate(_IMPORTS[kind])
    asyncio.run(KINDS[kind][2](url, setting))
    times = [_times[0], _times[-1]] if _times else []
    Path(out).write_text(json.dumps({"times": times, "ran": _ran}))


if __name__ == "__main__":
    if len(sys.argv) >= 6 and sys.argv[1] == "--worker":
        _worker_main(sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5])
    else:
        print(json.dumps(run("--quick" in sys.argv), indent=2))
