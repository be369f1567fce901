"""``python -m duetime bench`` finds the suite in a checkout, or fails clearly.

Nothing here runs a benchmark or asserts on timing: the CI smoke run does that.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from duetime import _bench
from duetime.__main__ import main


def test_finds_the_checkout_suite() -> None:
    found = _bench.find_bench_dir()
    assert found is not None
    assert (found / "run.py").is_file()
    assert any(found.glob("bench_*.py"))


def test_env_var_takes_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "run.py").write_text("def main(argv):\n    return 7\n")
    monkeypatch.setenv("DUETIME_BENCH_DIR", str(tmp_path))
    assert _bench.find_bench_dir() == tmp_path
    assert main(["bench", "--quick"]) == 7


def test_no_checkout_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_bench, "find_bench_dir", lambda: None)
    with pytest.raises(SystemExit, match="source checkout"):
        main(["bench"])


def test_list_names_the_modules(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--list"]) == 0
    assert "bench_core" in capsys.readouterr().out.split()
