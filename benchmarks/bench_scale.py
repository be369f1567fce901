"""Scale and idle: 1M pending timers (time and RSS), and the CPU an idle scheduler burns.

Each measurement runs in a fresh Python process so RSS and CPU time are its own:
``python bench_scale.py --probe KIND N`` prints one JSON line.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _common import le, ratio, rss_bytes

HERE = Path(__file__).resolve()


# -- probes (run in a child process) ------------------------------------------------


def _noop() -> None:
    pass


def probe_pending(kind: str, n: int) -> dict[str, float]:
    """Schedule ``n`` far-future timers; report the time it took and the RSS growth."""
    import asyncio
    import gc

    import duetime

    async def raw() -> dict[str, float]:
        loop = asyncio.get_running_loop()
        call_later = loop.call_later
        rss0 = rss_bytes()
        t0 = time.perf_counter()
        for i in range(n):
            call_later(3600.0 + i * 1e-6, _noop)
        elapsed = time.perf_counter() - t0
        rss1 = rss_bytes()
        for h in list(loop._scheduled):  # type: ignore[attr-defined]
            h.cancel()
        return {"seconds": elapsed, "rss_growth": rss1 - rss0, "rss_total": rss1}

    async def ours() -> dict[str, float]:
        async with duetime.Scheduler() as s:
            call_later = s.call_later
            rss0 = rss_bytes()
            t0 = time.perf_counter()
            for i in range(n):
                call_later(3600.0 + i * 1e-6, _noop)
            elapsed = time.perf_counter() - t0
            rss1 = rss_bytes()
        return {"seconds": elapsed, "rss_growth": rss1 - rss0, "rss_total": rss1}

    gc.collect()
    return asyncio.run(raw() if kind == "raw" else ours())


def probe_idle(kind: str, seconds: float) -> dict[str, float]:
    """Sit with one timer an hour away for ``seconds``; report the process CPU time used."""
    import anyio

    import duetime

    async def ours() -> float:
        async with duetime.Scheduler() as s:
            h = s.call_later(3600, _noop)
            await anyio.sleep(0.2)  # let start-up settle
            c0 = time.process_time()
            await anyio.sleep(seconds)
            used = time.process_time() - c0
            h.cancel()
        return used

    async def raw() -> float:
        import asyncio

        loop = asyncio.get_running_loop()
        h = loop.call_later(3600, _noop)
        await asyncio.sleep(0.2)
        c0 = time.process_time()
        await asyncio.sleep(seconds)
        used = time.process_time() - c0
        h.cancel()
        return used

    async def raw_trio() -> float:
        # trio has no call_later: the baseline is the bare trio loop asleep.
        await anyio.sleep(0.2)
        c0 = time.process_time()
        await anyio.sleep(seconds)
        return time.process_time() - c0

    if kind == "raw":
        import asyncio

        used = asyncio.run(raw())
    elif kind == "raw-trio":
        used = anyio.run(raw_trio, backend="trio")
    else:
        used = anyio.run(ours, backend=kind.removeprefix("duetime-"))
    return {"cpu_s": used, "seconds": seconds}


# -- parent side ----------------------------------------------------------------------


def _probe(what: str, kind: str, size: float) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, str(HERE), "--probe", what, kind, repr(size)],
        check=True,
        capture_output=True,
        text=True,
        cwd=HERE.parent,
    )
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def run(quick: bool) -> dict[str, dict[str, Any]]:
    """1M pending (100k in quick mode) and idle CPU (2 s quick, 60 s full)."""
    n = 100_000 if quick else 1_000_000
    idle = 2.0 if quick else 60.0
    judge = not quick
    r: dict[str, dict[str, Any]] = {}

    # Idle runs in the background while the pending probes run (each in its own
    # process, CPU time is per process, so they do not disturb each other's figure).
    with ThreadPoolExecutor(4) as pool:
        idle_jobs = {
            kind: pool.submit(_probe, "idle", kind, idle)
            for kind in ("raw", "duetime-asyncio", "raw-trio", "duetime-trio")
        }
        raw = _probe("pending", "raw", n)
        ours = _probe("pending", "duetime", n)
        idles = {k: f.result() for k, f in idle_jobs.items()}

    mb = 1 / 2**20
    r["pending_1m"] = {
        "title": f"{n:,} pending call_later: time to schedule and RSS growth (fresh process)",
        "unit": "",
        "values": {
            "asyncio loop.call_later seconds": raw["seconds"],
            "duetime seconds": ours["seconds"],
            "asyncio RSS growth MiB": raw["rss_growth"] * mb,
            "duetime RSS growth MiB": ours["rss_growth"] * mb,
        },
        "ratios": [
            ratio(
                "duetime seconds to schedule",
                ours["seconds"],
                "< 4 s (1M)",
                le(ours["seconds"], 4.0, judge),
            ),
            ratio(
                "duetime RSS MiB (whole process)",
                ours["rss_total"] * mb,
                "< 300 MB (1M)",
                le(ours["rss_total"], 300e6, judge),
            ),
            ratio(
                "duetime / asyncio RSS growth",
                ours["rss_growth"] / raw["rss_growth"],
                "(report)",
                None,
            ),
        ],
        "notes": [
            f"whole-process RSS after scheduling: asyncio {raw['rss_total'] * mb:.0f} MiB, "
            f"duetime {ours['rss_total'] * mb:.0f} MiB"
        ],
    }
    per_min = {k: v["cpu_s"] / v["seconds"] * 60 * 1e3 for k, v in idles.items()}
    r["idle_cpu"] = {
        "title": f"idle CPU with one timer an hour away (process CPU time over {idle:g} s)",
        "unit": "ms CPU per minute",
        "values": {
            "asyncio loop.call_later": per_min["raw"],
            "duetime (asyncio)": per_min["duetime-asyncio"],
            "bare trio loop asleep": per_min["raw-trio"],
            "duetime (trio)": per_min["duetime-trio"],
        },
        "ratios": [
            ratio(
                f"duetime ms CPU per minute ({k.removeprefix('duetime-')})",
                v,
                "< 1 ms/min",
                le(v, 1.0, judge),
            )
            for k, v in per_min.items()
            if k.startswith("duetime")
        ],
        "notes": ["time.process_time() in a fresh process, after 0.2 s of settling"],
    }
    return r


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "--probe":
        what, kind, size = sys.argv[2], sys.argv[3], float(sys.argv[4])
        res = probe_pending(kind, int(size)) if what == "pending" else probe_idle(kind, size)
        print(json.dumps(res))
    else:
        print(json.dumps(run("--quick" in sys.argv), indent=2))
