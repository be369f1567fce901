"""The benchmark runner is a script of the checkout, not a command of the package.

Nothing here runs a benchmark or asserts on timing: the CI smoke run does that.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from duetime.__main__ import main

RUNNER = Path(__file__).resolve().parent.parent / "benchmarks" / "run.py"


def run_runner(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUNNER), *args], capture_output=True, text=True, timeout=60
    )


def test_list_names_the_modules() -> None:
    done = run_runner("--list")
    assert done.returncode == 0, done.stderr
    names = done.stdout.split()
    assert "bench_core" in names
    assert names == sorted(names)
    assert all(name.startswith("bench_") for name in names)


def test_only_filters_and_an_unknown_module_is_a_clear_error() -> None:
    assert run_runner("--list", "--only", "core,latency").stdout.split() == [
        "bench_core",
        "bench_latency",
    ]
    done = run_runner("--list", "--only", "nosuch")
    assert done.returncode == 2
    assert "no benchmark modules matched" in done.stderr


def test_help_names_the_script() -> None:
    done = run_runner("--help")
    assert done.returncode == 0
    assert "python benchmarks/run.py" in done.stdout


def test_the_package_has_no_bench_command(capsys: pytest.CaptureFixture[str]) -> None:
    # An installed package must never run a benchmarks/run.py it finds on disk.
    with pytest.raises(SystemExit) as exit_info:
        main(["bench", "--list"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'bench'" in capsys.readouterr().err
