"""Shared helpers for the benchmark modules (not a scenario: the runner skips ``_*``).

A scenario module is a ``bench_*.py`` file in this directory with a function
``run(quick: bool) -> dict[str, dict]``: scenario name -> result.  A result is a
plain JSON-able dict; the runner understands these keys (all optional):

- ``title``: a one-line description;
- ``unit``: the unit of ``values`` (e.g. ``"us/call"``);
- ``values``: ``{label: number}``, every contender measured in this run (a bar chart);
- ``lower_is_better``: how to read ``values`` (default True);
- ``ratios``: a list of ``{"what", "value", "target", "met"}`` (``met`` is a bool,
  or None when the run is too small to judge, e.g. ``--quick``);
- ``curves``: ``{label: {"x": [...], "y": [...]}}`` with ``xlabel``/``ylabel`` (a line plot);
- ``notes``: a list of strings (why a peer was skipped, what was configured);
- ``skipped``: a reason string when the whole scenario could not run here.

Anything else is kept in the JSON as extra figures.
"""

from __future__ import annotations

import asyncio
import gc
import importlib.util
import os
import socket
import statistics
import subprocess
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def noop() -> None:
    pass


def have(module: str) -> bool:
    """Whether an optional peer (uvloop, apscheduler, trio...) is importable."""
    return importlib.util.find_spec(module) is not None


def run_asyncio(main: Callable[[], Coroutine[Any, Any, T]], *, uvloop: bool = False) -> T:
    """Run ``main()`` on a fresh asyncio loop, or on uvloop's."""
    if uvloop:
        import uvloop as uv

        with asyncio.Runner(loop_factory=uv.new_event_loop) as runner:
            return runner.run(main())
    with asyncio.Runner() as runner:
        return runner.run(main())


def run_trio(main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` on trio (through anyio, so duetime sees the trio backend)."""
    import anyio

    return anyio.run(main, backend="trio")


def run_on(backend: str, main: Callable[[], Coroutine[Any, Any, T]]) -> T:
    """Run ``main()`` on ``"asyncio"``, ``"uvloop"`` or ``"trio"``."""
    if backend == "trio":
        return run_trio(main)
    return run_asyncio(main, uvloop=backend == "uvloop")


def backends() -> list[str]:
    """The backends available here, asyncio first."""
    out = ["asyncio"]
    if have("uvloop"):
        out.append("uvloop")
    if have("trio"):
        out.append("trio")
    return out


async def best_of(repeats: int, fn: Callable[[], Awaitable[float]]) -> float:
    """The minimum of ``repeats`` runs of ``fn`` (each after a full GC)."""
    results = []
    for _ in range(repeats):
        gc.collect()
        results.append(await fn())
    return min(results)


def paired(
    repeats: int, runs: dict[str, tuple[str, Callable[[], Coroutine[Any, Any, float]]]]
) -> dict[str, list[float]]:
    """Run every contender once per repeat, each on a fresh loop of its backend.

    ``runs`` maps a label to ``(backend, main)``.  The order rotates from one
    repeat to the next and a full GC precedes each run, so the figures of one
    repeat share a moment of the machine's load: ratios taken repeat by repeat
    (:func:`paired_ratio`) do not move with the load the way ratios of figures
    taken minutes apart do.
    """
    names = list(runs)
    out: dict[str, list[float]] = {name: [] for name in names}
    for i in range(repeats):
        k = i % len(names)
        for name in names[k:] + names[:k]:
            backend, main = runs[name]
            gc.collect()
            out[name].append(run_on(backend, main))
    return out


def paired_ratio(ours: list[float], base: list[float]) -> float:
    """The median of the repeat-by-repeat ratios ``ours[i] / base[i]``."""
    return statistics.median(a / b for a, b in zip(ours, base, strict=True))


def best_of_sync(repeats: int, fn: Callable[[], float]) -> float:
    results = []
    for _ in range(repeats):
        gc.collect()
        results.append(fn())
    return min(results)


def rss_bytes() -> int:
    """Current resident set size of this process (Linux /proc, else psutil)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - non-Linux
        import psutil

        return int(psutil.Process().memory_info().rss)


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return float("nan")
    k = max(0, min(len(sorted_values) - 1, round(pct / 100 * len(sorted_values) + 0.5) - 1))
    return sorted_values[k]


def ratio(what: str, value: float, target: str, met: bool | None) -> dict[str, Any]:
    return {"what": what, "value": value, "target": target, "met": met}


def le(value: float, bound: float, judge: bool = True) -> bool | None:
    return (value <= bound) if judge else None


def ge(value: float, bound: float, judge: bool = True) -> bool | None:
    return (value >= bound) if judge else None


def perf() -> float:
    return time.perf_counter()


def start_redis(directory: str) -> tuple[subprocess.Popen[bytes], str]:
    """A private ``redis-server`` on a free loopback port, no persistence, in
    ``directory``; returns the process and its URL once it answers PING."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    args = ["redis-server", "--bind", "127.0.0.1", "--port", str(port), "--save", ""]
    args += ["--appendonly", "no", "--dir", directory]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return proc, f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.02)
    proc.kill()
    raise RuntimeError("redis-server did not start")
