"""ThreadedScheduler: 10k sync jobs at datetimes, default options.

Two scenarios, each on asyncio and trio, submitted from this (the main) thread:

- lateness: 10k sync no-op jobs at aware datetimes spread evenly over 2 s
  (submitted in a shuffled order); each job records ``time.time()`` when its body
  starts in its worker thread, minus its due time.  Target: p99 <= 20 ms.
- throughput: 10k sync no-op jobs all due at the same datetime; jobs/s is 10k
  divided by the wall time from that due time until the last body has run.
  Target: >= 20k jobs/s.

Both use the default options (``max_threads`` included), so every sync job runs
in a worker thread and a slow one could not block the loop.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from typing import Any

from _common import ge, le, percentile, ratio

import duetime

N = 10_000
SPREAD = 2.0
BACKENDS = ("asyncio", "trio")


def _lead(n: int) -> float:
    # Room for submitting everything before the first due time.
    return 0.3 + n * 30e-6


def lateness(backend: str, n: int, spread: float) -> list[float]:
    """Lateness (s) of each of ``n`` jobs at datetimes spread over ``spread`` s."""
    late: list[float] = []
    record = late.append
    now = time.time

    def job(due: float) -> None:
        record(now() - due)

    with duetime.ThreadedScheduler(backend) as s:
        t0 = time.time() + _lead(n)
        dues = [t0 + spread * i / n for i in range(n)]
        random.Random(7).shuffle(dues)
        jobs = [s.call_at(datetime.fromtimestamp(d, UTC), job, d) for d in dues]
        for j in jobs:
            j.result(timeout=60)
    return late


def throughput(backend: str, n: int) -> float:
    """Jobs/s for ``n`` jobs all due at one datetime, due time to last body."""
    ends: list[float] = []
    record = ends.append
    now = time.time

    def job() -> None:
        record(now())

    with duetime.ThreadedScheduler(backend) as s:
        due = time.time() + _lead(n)
        when = datetime.fromtimestamp(due, UTC)
        jobs = [s.call_at(when, job) for _ in range(n)]
        for j in jobs:
            j.result(timeout=60)
    return n / (max(ends) - due)


def run(quick: bool) -> dict[str, Any]:
    n = 2_000 if quick else N
    judge = not quick
    lat_values: dict[str, float] = {}
    lat_ratios: list[dict[str, Any]] = []
    lat_extra: dict[str, Any] = {}
    thr_values: dict[str, float] = {}
    thr_ratios: list[dict[str, Any]] = []
    for backend in BACKENDS:
        late = sorted(lateness(backend, n, SPREAD))
        p99 = percentile(late, 99) * 1e3
        lat_values[backend] = p99
        lat_extra[backend] = {
            "p50_ms": percentile(late, 50) * 1e3,
            "p99_ms": p99,
            "max_ms": late[-1] * 1e3,
            "min_ms": late[0] * 1e3,
        }
        lat_ratios.append(ratio(f"{backend}: p99 lateness (ms)", p99, "<= 20", le(p99, 20, judge)))
        rate = throughput(backend, n)
        thr_values[backend] = rate
        thr_ratios.append(ratio(f"{backend}: jobs/s", rate, ">= 20000", ge(rate, 20_000, judge)))
    return {
        "threaded_lateness": {
            "title": (
                f"ThreadedScheduler: p99 lateness, {n} sync jobs at datetimes over {SPREAD:g} s"
            ),
            "unit": "ms (p99)",
            "values": lat_values,
            "ratios": lat_ratios,
            "detail": lat_extra,
            "notes": ["default options; lateness = body start (time.time()) - due time"],
        },
        "threaded_throughput": {
            "title": f"ThreadedScheduler: {n} sync jobs due at one datetime, jobs/s",
            "unit": "jobs/s",
            "values": thr_values,
            "lower_is_better": False,
            "ratios": thr_ratios,
            "notes": ["default options; from the due time until the last body ran"],
        },
    }
