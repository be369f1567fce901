"""What duetime.otel costs a durable worker: claim + run + finish, instrumentation off and on.

One process, a store with real I/O (a SQLiteStore on a temporary file; a
RedisStore on a private ``redis-server`` when one is installed),
``Scheduler(store=..., tasks=...)`` with its worker (``max_concurrency`` 16): N
no-op entries are stored with ``defer_many`` (instrumented or not, as the round
is), then the worker runs them; the rate is N over the span from the first run
to the last, and the CPU time of the process (all its threads; not the Redis
server's) over the same span is divided by N.  "on" is
``duetime.otel.instrument()`` with the OpenTelemetry SDK: a TracerProvider whose
BatchSpanProcessor hands spans to an exporter that drops them, and a MeterProvider
with an in-memory reader (every span and metric is made and recorded; nothing
is sent anywhere).  Rounds alternate the modes, a fresh file (key prefix) each;
the figure is the median of the rounds and the ratio the median of the
per-round ratios (CPU off / CPU on).

Standalone: ``python benchmarks/bench_otel.py [--quick]``.

``python benchmarks/bench_otel.py --probe-icount [N]`` counts, under callgrind
(valgrind and gcc needed), the instructions one run costs the probe alone in
each mode: ``process()`` around a task that returns at once, and
``finished()``, N times (2,000 by default) after a warm-up, no store and no
worker: a load-proof view of what duetime.otel and the SDK add per run.
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "src"))

import anyio  # noqa: E402
from _common import ge, have, ratio, start_redis  # noqa: E402

from duetime import Scheduler, SQLiteStore, TaskRegistry  # noqa: E402
from duetime.durable import Store  # noqa: E402

tasks = TaskRegistry()
_runs: list[float] = []
_cpu: list[float] = []
_all_ran: anyio.Event | None = None
_n = 0


@tasks.task("bench.noop")
async def noop(i: int) -> None:
    _runs.append(time.perf_counter())
    if len(_runs) == 1:
        _cpu.append(time.process_time())
    if len(_runs) == _n and _all_ran is not None:
        _cpu.append(time.process_time())
        _all_ran.set()


def _store(where: str) -> Store:
    """A new store: ``sqlite:PATH`` or ``redis:URL|PREFIX``."""
    kind, _, rest = where.partition(":")
    if kind == "sqlite":
        return SQLiteStore(Path(rest))
    from duetime import RedisStore

    url, _, prefix = rest.partition("|")
    return RedisStore(url, prefix=prefix)


async def one_round(where: str, n: int) -> float:
    """Entries per second through claim + run + finish (first run to last run)."""
    global _all_ran, _n
    _runs.clear()
    _n = n
    async with Scheduler(store=_store(where), tasks=tasks, worker=False) as s:
        for start in range(0, n, 1000):
            await s.defer_many(noop, [(i,) for i in range(start, min(n, start + 1000))])
    _all_ran = anyio.Event()
    async with Scheduler(store=_store(where), tasks=tasks) as s:
        with anyio.fail_after(600):
            await _all_ran.wait()
    return (n - 1) / (_runs[-1] - _runs[0])


class _Drop:
    """A span exporter that drops what it is given (the cost is in making spans)."""

    def export(self, spans: Sequence[Any]) -> Any:
        from opentelemetry.sdk.trace.export import SpanExportResult

        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


#: The configurations measured: (label, spans sampled: None = off, 0.0 = no
#: TracerProvider; -0.0: no TracerProvider and no exemplars kept).
MODES = {
    "off": None,
    "on, metrics only": 0.0,
    "on, metrics only, no exemplars": -0.0,
    "on, 1% of traces sampled": 0.01,
    "on, every run traced": 1.0,
}
#: The modes the >= 0.8x target applies to (the others are reported).
TARGETED = ("on, metrics only", "on, metrics only, no exemplars", "on, 1% of traces sampled")


def _on(sampled: float) -> list[Any]:
    import math

    from opentelemetry.sdk.metrics import AlwaysOffExemplarFilter, MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased

    import duetime.otel

    no_exemplars = math.copysign(1, sampled) < 0
    providers: list[Any] = [
        MeterProvider(
            metric_readers=[InMemoryMetricReader()],
            exemplar_filter=AlwaysOffExemplarFilter() if no_exemplars else None,
        )
    ]
    tracer_provider = None
    if sampled:
        tracer_provider = TracerProvider(sampler=ParentBased(TraceIdRatioBased(sampled)))
        tracer_provider.add_span_processor(BatchSpanProcessor(_Drop()))  # type: ignore[arg-type]
        providers.append(tracer_provider)
    duetime.otel.instrument(tracer_provider=tracer_provider, meter_provider=providers[0])
    return providers


def _off(providers: list[Any]) -> None:
    import duetime.otel

    duetime.otel.uninstrument()
    for p in providers:
        p.shutdown()


def measure(n: int, rounds: int, redis_url: str | None = None) -> dict[str, dict[str, list[float]]]:
    """Per mode: entries/s and process CPU microseconds per entry, one per round
    (on SQLite, or on the Redis server at ``redis_url``)."""
    out: dict[str, dict[str, list[float]]] = {m: {"rate": [], "cpu": []} for m in MODES}
    order = list(MODES)
    with tempfile.TemporaryDirectory() as d:
        for r in range(rounds):
            for mode in order if r % 2 == 0 else order[::-1]:
                sampled = MODES[mode]
                providers = [] if sampled is None else _on(sampled)
                _cpu.clear()
                name = f"{r}-{order.index(mode)}"
                where = f"redis:{redis_url}|{name}" if redis_url else f"sqlite:{Path(d) / name}.db"
                try:
                    rate = anyio.run(one_round, where, n)
                finally:
                    _off(providers)
                out[mode]["rate"].append(rate)
                out[mode]["cpu"].append((_cpu[1] - _cpu[0]) / (n - 1) * 1e6)
    return out


def _spawn_worker(url: str, out: Path, mode: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, "--worker", url, str(out), mode])


def processes(n: int, mode: str) -> float:
    """bench_durable_runner's throughput (4 worker processes drain N no-op entries due
    at a common start, SQLite), each worker instrumented as ``mode`` says."""
    import bench_durable_runner as runner

    with tempfile.TemporaryDirectory() as d:
        url = f"sqlite:///{Path(d) / 'jobs.db'}"
        start = time.time() + 3.0
        anyio.run(runner.fill, url, n, runner.rec, start)
        outs = [Path(d) / f"t{i}.json" for i in range(runner.WORKERS)]
        procs = [_spawn_worker(url, o, mode) for o in outs]
        for p in procs:
            if p.wait(timeout=300) != 0:
                raise RuntimeError("a worker failed")
        seen = [x for o in outs for x in json.loads(o.read_text())]
    if len({k for k, *_ in seen}) != n:
        raise RuntimeError(f"ran {len(seen)} of {n}")
    return float(n / (max(t for _k, t, *_ in seen) - start))


def _worker_main(url: str, out: str, mode: str) -> None:
    import bench_durable_runner as runner

    sampled = MODES[mode]
    providers = [] if sampled is None else _on(sampled)
    try:
        anyio.run(runner.worker, url, "drain", out, 16)
    finally:
        _off(providers)


def _one_process(
    m: dict[str, dict[str, list[float]]], store: str, n: int, judge: bool
) -> dict[str, Any]:
    """The scenario of one process's rounds on ``store``."""
    med = {mode: {k: statistics.median(v) for k, v in m[mode].items()} for mode in m}
    ratios = []
    for mode in list(MODES)[1:]:
        per_round = [o / x for o, x in zip(m["off"]["cpu"], m[mode]["cpu"], strict=True)]
        cpu_ratio = statistics.median(per_round)
        targeted = mode in TARGETED
        ratios.append(
            ratio(
                f"{mode} / off (CPU per entry; rounds {min(per_round):.2f}-{max(per_round):.2f})",
                cpu_ratio,
                ">= 0.8x" if targeted else "report",
                ge(cpu_ratio, 0.8, judge) if targeted else None,
            )
        )
    return {
        "title": f"Durable claim + run + finish, duetime.otel off and on ({store}, 1 process)",
        "unit": "entries/s",
        "lower_is_better": False,
        "values": {mode: med[mode]["rate"] for mode in MODES},
        "ratios": ratios,
        "notes": [
            f"{n} no-op entries per round, {len(m['off']['rate'])} rounds, modes interleaved;"
            " CPU us per entry (all threads of the process): "
            + ", ".join(f"{mode} {med[mode]['cpu']:.0f}" for mode in MODES)
        ],
    }


def run(quick: bool) -> dict[str, Any]:
    if not have("opentelemetry.sdk"):
        return {}
    n = 2000 if quick else 10000
    rounds = 3 if quick else 7
    out: dict[str, Any] = {
        "otel_durable_cost": _one_process(measure(n, rounds), "SQLite", n, not quick)
    }
    if shutil.which("redis-server") is not None and have("coredis"):
        with tempfile.TemporaryDirectory() as d:
            server, url = start_redis(d)
            try:
                m = measure(n, rounds, url)
            finally:
                server.terminate()
                server.wait()
        out["otel_durable_cost_redis"] = _one_process(m, "Redis", n, not quick)
    n4 = 4000 if quick else 40000
    four: dict[str, list[float]] = {mode: [] for mode in MODES}
    for r in range(2 if quick else 3):
        for mode in list(MODES) if r % 2 == 0 else list(MODES)[::-1]:
            four[mode].append(processes(n4, mode))
    four_med = {mode: statistics.median(v) for mode, v in four.items()}
    out["otel_durable_cost_4_processes"] = {
        "title": "Durable claim + run + finish, 4 worker processes, duetime.otel off and on",
        "unit": "entries/s",
        "lower_is_better": False,
        "values": four_med,
        "ratios": [
            ratio(
                f"{mode} / off (4 processes, entries/s)",
                four_med[mode] / four_med["off"],
                ">= 0.8x" if mode in TARGETED else "report",
                ge(four_med[mode] / four_med["off"], 0.8, not quick) if mode in TARGETED else None,
            )
            for mode in list(MODES)[1:]
        ],
        "notes": [
            f"bench_durable_runner's throughput: {n4} no-op entries, SQLite, concurrency 16;"
            " every round: " + ", ".join(f"{k} {[round(x) for x in v]}" for k, v in four.items())
        ],
    }
    return out


def _probe_child(lib: str, mode: str, n: int) -> None:
    """Run the probe alone N times between two callgrind toggles (see the docstring)."""
    import ctypes
    from datetime import UTC, datetime
    from types import SimpleNamespace

    from duetime._instrument import probes
    from duetime.durable._store import Done

    cg = ctypes.CDLL(lib)
    providers = _on(MODES[mode])  # type: ignore[arg-type]
    probe: Any = probes.durable
    due = datetime.now(UTC)
    trace = '{"$trace":{"traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}'
    entry = SimpleNamespace(
        task="bench.noop", key="k", due=due, attempt=1, deliveries=1, schedule=None
    )
    claim = SimpleNamespace(
        entry=entry, lease_until=due.timestamp() + 30, lease=30.0, payload=f"[1,{trace}]"
    )
    done = Done()

    async def execute(_claim: Any, _run: Any) -> Done:
        return done

    async def main() -> None:
        async with anyio.create_task_group() as tg:
            probe.worker_started(None, tg)
            run = SimpleNamespace(claimed=anyio.current_time())
            for i in range(300 + n):
                if i == 300:
                    cg.cg_toggle()
                await probe.process(execute, claim, run)
                probe.finished("bench.noop", done, True, False)
            cg.cg_toggle()
            tg.cancel_scope.cancel()

    try:
        anyio.run(main)
    finally:
        _off(providers)


def probe_icount(n: int) -> dict[str, float]:
    """Instructions per run of the probe alone, per "on" mode (see the docstring)."""
    import re

    from icount import _build

    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        lib = _build(Path(d))
        for mode in list(MODES)[1:]:
            dump = Path(d) / "cg.out"
            cmd = ["valgrind", "--tool=callgrind", "--collect-atstart=no"]
            cmd += [f"--callgrind-out-file={dump}", sys.executable, __file__]
            cmd += ["--probe-child", str(lib), mode, str(n)]
            subprocess.run(
                cmd,
                check=True,
                stderr=subprocess.DEVNULL,
            )
            total = re.search(r"^(?:summary|totals): (\d+)", dump.read_text(), re.M)
            if total is None:
                raise RuntimeError(f"no callgrind total for {mode}")
            out[mode] = int(total.group(1)) / n
    return out


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--probe-child":
        _probe_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
        sys.exit(0)
    if len(sys.argv) >= 2 and sys.argv[1] == "--probe-icount":
        for mode, count in probe_icount(int(sys.argv[2]) if len(sys.argv) > 2 else 2000).items():
            print(f"{mode:32} {count:9,.0f} instructions per run")
        sys.exit(0)
    if len(sys.argv) == 5 and sys.argv[1] == "--worker":
        _worker_main(sys.argv[2], sys.argv[3], sys.argv[4])
        sys.exit(0)
    print(json.dumps(run("--quick" in sys.argv), indent=2, default=str))
