"""``python -m duetime bench``: find the benchmark suite in a source checkout and run it.

The suite (``benchmarks/``) is not part of the installed package: it needs the
peers (uvloop, APScheduler 4) and matplotlib, which are never core dependencies.
It is looked for in ``$DUETIME_BENCH_DIR``, then in the current directory and its
parents, then next to an editable install's ``src/`` directory.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path

__all__ = ["find_bench_dir", "run_bench"]

_RUNNER = "run.py"


def find_bench_dir() -> Path | None:
    """Return the ``benchmarks/`` directory of a checkout, or None if there is none."""
    candidates: list[Path] = []
    env = os.environ.get("DUETIME_BENCH_DIR")
    if env:
        candidates.append(Path(env))
    cwd = Path.cwd().resolve()
    candidates += [d / "benchmarks" for d in (cwd, *cwd.parents)]
    # An editable install: src/duetime/_bench.py -> <checkout>/benchmarks
    candidates.append(Path(__file__).resolve().parents[2] / "benchmarks")
    for d in candidates:
        if (d / _RUNNER).is_file():
            return d
    return None


def run_bench(argv: Sequence[str]) -> int:
    """Run ``benchmarks/run.py`` with ``argv``; return its exit status.

    :raises SystemExit: (status 2, with a message) when no checkout is found
    """
    bench_dir = find_bench_dir()
    if bench_dir is None:
        raise SystemExit(
            "python -m duetime bench: the benchmark suite lives in the benchmarks/ "
            "directory of a duetime source checkout, and none was found here.\n"
            "Run it from a checkout (pip install -e '.[bench]'), or set DUETIME_BENCH_DIR."
        )
    spec = importlib.util.spec_from_file_location("duetime_bench_runner", bench_dir / _RUNNER)
    if spec is None or spec.loader is None:  # pragma: no cover - the file exists
        raise SystemExit(f"cannot load {bench_dir / _RUNNER}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    status: int = module.main(list(argv))
    return status
