"""The simplest check of the core: duetime and raw asyncio side by side in one loop.

One process, one event loop, one open Scheduler; every round measures raw asyncio
and duetime back to back, alternating which goes first, each after a
``gc.collect()`` with the collector left enabled (the same gc state for both).
The figure is the median of the rounds, and the ratio is the median of the
per-round ratios (a pair shares its moment of machine load).

- schedule: ``[call_later(3600, noop) for _ in range(100_000)]``, timed around
  the list comprehension, against ``loop.call_later``;
- fire: 100,000 ``call_later(0, tick)`` scheduled (not timed), then the time
  until the last one has run, on ``time.perf_counter``;
- due_at_once: 10,000 ``call_soon(tick)`` and the time until the last has run,
  scheduling included, against ``loop.call_soon``;
- cancel: ``h.cancel()`` over 100,000 pending handles, against
  ``TimerHandle.cancel``;
- schedule on uvloop: as schedule, against uvloop's ``loop.call_later``.

``benchmarks/bench_core.py`` measures the same figures its own way (best of
runs, each contender on a fresh loop, spread due times); ``docs/performance.md``
says why the two differ where they do.

Standalone: ``python benchmarks/bench_simple.py [--quick] [--rounds N] [--json]``.
Point ``PYTHONPATH`` at another checkout's ``src`` to measure that one.
"""

from __future__ import annotations

import asyncio
import gc
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

from _common import have, le, noop, ratio, run_asyncio

import duetime

N = 100_000
BURST = 10_000

Timed = Callable[[], Awaitable[float]]

# Every timed region reads this clock exactly twice, at its start and its end:
# ``benchmarks/icount.py`` swaps in one that also turns callgrind's counting on
# and off, to count instructions over the very same regions.
_clock = time.perf_counter


async def _settle() -> None:
    """Let both loops drop what a round left (compaction passes, cancelled timers)."""
    for _ in range(60):
        await asyncio.sleep(0)


# -- schedule -------------------------------------------------------------------


def raw_schedule(loop: asyncio.AbstractEventLoop, n: int) -> Timed:
    async def go() -> float:
        call_later = loop.call_later
        t0 = _clock()
        hs = [call_later(3600, noop) for _ in range(n)]
        t = _clock() - t0
        for h in hs:
            h.cancel()
        del hs
        await _settle()
        return t

    return go


def our_schedule(s: duetime.Scheduler, n: int) -> Timed:
    async def go() -> float:
        call_later = s.call_later
        t0 = _clock()
        hs = [call_later(3600, noop) for _ in range(n)]
        t = _clock() - t0
        for h in hs:
            h.cancel()
        del hs
        await _settle()
        return t

    return go


# -- fire all -------------------------------------------------------------------


def _counter(n: int) -> tuple[Callable[[], None], asyncio.Event, list[float]]:
    done = asyncio.Event()
    end = [0.0]
    left = [n]

    def tick() -> None:
        left[0] -= 1
        if not left[0]:
            end[0] = _clock()
            done.set()

    return tick, done, end


def raw_fire(loop: asyncio.AbstractEventLoop, n: int) -> Timed:
    async def go() -> float:
        tick, done, end = _counter(n)
        call_later = loop.call_later
        hs = [call_later(0, tick) for _ in range(n)]
        t0 = _clock()
        await done.wait()
        del hs
        return end[0] - t0

    return go


def our_fire(s: duetime.Scheduler, n: int) -> Timed:
    async def go() -> float:
        tick, done, end = _counter(n)
        call_later = s.call_later
        hs = [call_later(0, tick) for _ in range(n)]
        t0 = _clock()
        await done.wait()
        del hs
        return end[0] - t0

    return go


# -- due at once ------------------------------------------------------------------


def raw_burst(loop: asyncio.AbstractEventLoop, n: int) -> Timed:
    async def go() -> float:
        tick, done, end = _counter(n)
        call_soon = loop.call_soon
        t0 = _clock()
        hs = [call_soon(tick) for _ in range(n)]
        await done.wait()
        del hs
        return end[0] - t0

    return go


def our_burst(s: duetime.Scheduler, n: int) -> Timed:
    async def go() -> float:
        tick, done, end = _counter(n)
        call_soon = s.call_soon
        t0 = _clock()
        hs = [call_soon(tick) for _ in range(n)]
        await done.wait()
        del hs
        return end[0] - t0

    return go


# -- cancel -------------------------------------------------------------------------


def raw_cancel(loop: asyncio.AbstractEventLoop, n: int) -> Timed:
    async def go() -> float:
        call_later = loop.call_later
        hs = [call_later(3600, noop) for _ in range(n)]
        gc.collect()
        t0 = _clock()
        for h in hs:
            h.cancel()
        t = _clock() - t0
        del hs
        await _settle()
        return t

    return go


def our_cancel(s: duetime.Scheduler, n: int) -> Timed:
    async def go() -> float:
        call_later = s.call_later
        hs = [call_later(3600, noop) for _ in range(n)]
        gc.collect()
        t0 = _clock()
        for h in hs:
            h.cancel()
        t = _clock() - t0
        del hs
        await _settle()
        return t

    return go


# -- rounds ---------------------------------------------------------------------------


async def interleave(rounds: int, raw: Timed, ours: Timed) -> dict[str, Any]:
    """``rounds`` pairs, alternating which side goes first; a gc.collect() before each."""
    await raw()  # warm-up: first-use costs (imports, caches, the heap's growth)
    await ours()
    raws: list[float] = []
    mine: list[float] = []
    for i in range(rounds):
        order = ((raws, raw), (mine, ours)) if i % 2 == 0 else ((mine, ours), (raws, raw))
        for out, fn in order:
            gc.collect()
            out.append(await fn())
    ratios = [m / r for m, r in zip(mine, raws, strict=True)]
    return {"raw": raws, "ours": mine, "ratios": ratios}


def _scenarios(
    loop: asyncio.AbstractEventLoop, s: duetime.Scheduler, n: int, burst: int, uv: bool
) -> dict[str, tuple[Timed, Timed]]:
    if uv:
        return {"schedule": (raw_schedule(loop, n), our_schedule(s, n))}
    return {
        "schedule": (raw_schedule(loop, n), our_schedule(s, n)),
        "fire": (raw_fire(loop, n), our_fire(s, n)),
        "due_at_once": (raw_burst(loop, burst), our_burst(s, burst)),
        "cancel": (raw_cancel(loop, n), our_cancel(s, n)),
    }


def measure(
    rounds: int, n: int = N, burst: int = BURST, uvloop: bool = False
) -> dict[str, dict[str, Any]]:
    """Every scenario on one loop (asyncio, or uvloop) with one open Scheduler."""

    async def main() -> dict[str, dict[str, Any]]:
        loop = asyncio.get_running_loop()
        out = {}
        async with duetime.Scheduler() as s:
            for name, (raw, ours) in _scenarios(loop, s, n, burst, uvloop).items():
                out[name] = await interleave(rounds, raw, ours)
        return out

    return run_asyncio(main, uvloop=uvloop)


# -- the runner's view ------------------------------------------------------------------

_TARGETS = {
    "schedule": ("call_later x {n:,}", "us/call", 0.95, "loop.call_later"),
    "fire": ("time to fire {n:,} due sync callbacks", "ms", 0.65, "loop.call_later"),
    "due_at_once": ("{burst:,} call_soon until all have run", "ms", 1.4, "loop.call_soon"),
    "cancel": ("cancel {n:,} pending", "us/call", 1.0, "TimerHandle.cancel"),
    "schedule_uvloop": ("call_later x {n:,} on uvloop", "us/call", 1.2, "uvloop call_later"),
}


def _result(
    name: str, m: dict[str, Any], n: int, burst: int, rounds: int, judge: bool
) -> dict[str, Any]:
    title, unit, target, peer = _TARGETS[name]
    per = n if unit == "us/call" else 1
    scale = (1e6 if unit == "us/call" else 1e3) / per
    med_raw = statistics.median(m["raw"]) * scale
    med_ours = statistics.median(m["ours"]) * scale
    rat = statistics.median(m["ratios"])
    return {
        "title": "one loop, interleaved: " + title.format(n=n, burst=burst),
        "unit": unit,
        "values": {f"raw {peer}": med_raw, "duetime": med_ours},
        "ratios": [
            ratio(
                f"duetime / {peer} (median of rounds)", rat, f"<= {target}", le(rat, target, judge)
            )
        ],
        "spread": {"min": min(m["ratios"]), "max": max(m["ratios"])},
        "per_round": {"ratio": m["ratios"], "raw_s": m["raw"], "duetime_s": m["ours"]},
        "notes": [
            f"median of {rounds} interleaved rounds; per-round ratios "
            f"{min(m['ratios']):.3f}-{max(m['ratios']):.3f}"
        ],
    }


def run(quick: bool, rounds: int | None = None) -> dict[str, dict[str, Any]]:
    """Every scenario, as results for ``benchmarks/run.py``."""
    n = 20_000 if quick else N
    rounds = rounds or (3 if quick else 7)
    judge = not quick
    r = {}
    for name, m in measure(rounds, n).items():
        r[f"simple_{name}"] = _result(name, m, n, BURST, rounds, judge)
    if have("uvloop"):
        m = measure(rounds, n, uvloop=True)["schedule"]
        r["simple_schedule_uvloop"] = _result("schedule_uvloop", m, n, BURST, rounds, judge)
    return r


if __name__ == "__main__":
    args = sys.argv[1:]
    k = args.index("--rounds") + 1 if "--rounds" in args else 0
    res = run("--quick" in args, int(args[k]) if k else None)
    if "--json" in args:
        print(json.dumps(res, indent=2))
    else:
        for key, v in res.items():
            (rat,) = v["ratios"]
            vals = ", ".join(f"{lbl} {x:.4g}" for lbl, x in v["values"].items())
            print(
                f"{key:24} {rat['value']:.3f} ({v['spread']['min']:.3f}-{v['spread']['max']:.3f})"
                f"  target {rat['target']}  [{vals} {v['unit']}]"
            )
