"""Instructions per entry, counted by callgrind: a load-proof view of bench_simple.

Wall-clock ratios on a shared machine move with the load; instruction counts do
not.  This runs :mod:`bench_simple`'s scenarios once (after a warm-up) under
``valgrind --tool=callgrind``, counting only inside each timed region (the
regions' clock switches callgrind's collection on and off through a tiny C
helper built with ``gcc`` on first use), and prints instructions per entry for
raw asyncio and duetime, and their ratio.  Instructions are not time (a cache
miss is one instruction), so read it beside the timed figures, not instead.

Not a scenario module (the runner runs only ``bench_*.py``).  Needs valgrind
with its headers and gcc.  Usage, from a checkout::

    python benchmarks/icount.py [--n 100000] [--only schedule,fire] [--uvloop] [--keep DIR]

``PYTHONPATH=OTHER/src`` measures another checkout; ``--keep DIR`` keeps the
callgrind dumps for ``callgrind_annotate``; ``ICOUNT_NOGC=1`` counts with the
cyclic garbage collector off (the difference is what it costs).
"""

from __future__ import annotations

import argparse
import asyncio
import ctypes
import gc
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
_C = r"""
#include <valgrind/callgrind.h>
void cg_toggle(void) { CALLGRIND_TOGGLE_COLLECT; }
void cg_dump(const char *s) { CALLGRIND_DUMP_STATS_AT(s); }
"""


def _build(dirpath: Path) -> Path:
    src = dirpath / "cgmark.c"
    lib = dirpath / "libcgmark.so"
    src.write_text(_C)
    subprocess.run(["gcc", "-O2", "-shared", "-fPIC", "-o", str(lib), str(src)], check=True)
    return lib


def child(lib: str, n: int, only: list[str], uvloop: bool) -> None:
    sys.path.insert(0, str(HERE))
    import time

    import bench_simple as bs
    from _common import run_asyncio

    import duetime

    cg = ctypes.CDLL(lib)
    cg.cg_dump.argtypes = [ctypes.c_char_p]
    perf = time.perf_counter

    def clock() -> float:
        cg.cg_toggle()
        return perf()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        async with duetime.Scheduler() as s:
            for name, (raw, ours) in bs._scenarios(loop, s, n, bs.BURST, uvloop).items():
                if only and name not in only:
                    continue
                await raw()  # warm-up, not counted
                await ours()
                for side, fn in (("raw", raw), ("duetime", ours)):
                    gc.collect()
                    bs._clock = clock
                    try:
                        await fn()
                    finally:
                        bs._clock = perf
                    cg.cg_dump(f"{name} {side}".encode())

    if os.environ.get("ICOUNT_NOGC"):
        gc.disable()
    run_asyncio(main, uvloop=uvloop)


def parse(outdir: Path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for f in sorted(outdir.glob("callgrind.out*")):
        text = f.read_text(errors="replace")
        m = re.search(r"^desc: Trigger: Client Request: (.+)$", text, re.M)
        t = re.search(r"^(?:summary|totals): (\d+)", text, re.M)
        if m and t:
            counts[m.group(1).strip()] = int(t.group(1))
    return counts


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--only", default="")
    ap.add_argument("--keep", type=Path, default=None)
    ap.add_argument("--uvloop", action="store_true", help="schedule on uvloop (raw: uvloop's)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    only = [o for o in a.only.split(",") if o]
    if a.child:
        child(a.child, a.n, only, a.uvloop)
        return 0
    if not shutil.which("valgrind") or not shutil.which("gcc"):
        print("needs valgrind (with its headers) and gcc", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        lib = _build(d)
        out = a.keep or d / "out"
        out.mkdir(parents=True, exist_ok=True)
        cmd = [
            "valgrind",
            "--tool=callgrind",
            "--collect-atstart=no",
            f"--callgrind-out-file={out}/callgrind.out.%p",
            sys.executable,
            __file__,
            "--child",
            str(lib),
            "--n",
            str(a.n),
            "--only",
            a.only,
        ] + (["--uvloop"] if a.uvloop else [])
        subprocess.run(cmd, check=True, stderr=subprocess.DEVNULL, env=dict(os.environ))
        counts = parse(out)
    per = {"due_at_once": 10_000}
    for name in ("schedule", "fire", "due_at_once", "cancel"):
        raw = counts.get(f"{name} raw")
        ours = counts.get(f"{name} duetime")
        if raw is None or ours is None:
            continue
        k = per.get(name, a.n)
        print(
            f"{name:12} raw {raw / k:8.0f}  duetime {ours / k:8.0f}  instr/entry"
            f"  ratio {ours / raw:.3f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
