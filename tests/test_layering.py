"""The package's layering holds: one vocabulary, and no runtime-to-testing import."""

from __future__ import annotations

import importlib
import pkgutil
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import duetime
from duetime import _vocab

ROOT = Path(__file__).resolve().parents[1]
SHARED_WORDS = ("Status", "Misfire", "Overlap", "MISFIRE", "OVERLAP")


def _runtime_modules() -> list[str]:
    names = [
        m.name
        for m in pkgutil.walk_packages(duetime.__path__, "duetime.")
        if m.name != "duetime.testing"
    ]
    return sorted(names)


def _importable(name: str) -> bool:
    try:
        importlib.import_module(name)
    except ImportError:  # an optional extra that is not installed
        return False
    return True


def test_the_shared_words_are_defined_once() -> None:
    # By source (typing caches equal Literal aliases, so identity alone cannot
    # tell a second definition), and by identity for what modules re-export.
    definition = re.compile(r"^(class Status\b|(Misfire|Overlap|MISFIRE|OVERLAP)\b[^=]*=)", re.M)
    where = [
        str(path.relative_to(ROOT))
        for path in sorted((ROOT / "src" / "duetime").rglob("*.py"))
        if definition.search(path.read_text())
    ]
    assert where == ["src/duetime/_vocab.py"]
    for name in _runtime_modules():
        if not _importable(name):
            continue
        module = sys.modules[name]
        for word in SHARED_WORDS:
            if word in vars(module):
                assert vars(module)[word] is getattr(_vocab, word), f"{name}.{word}"


def test_no_runtime_module_imports_testing() -> None:
    code = (
        "import importlib, sys\n"
        f"for name in {_runtime_modules()!r}:\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except ImportError:\n"
        "        pass\n"
        # A sync job in a ThreadedScheduler's threads, on both backends: the
        # threads look for a virtual clock when they start.
        "from duetime import ThreadedScheduler\n"
        "for backend in ('asyncio', 'trio'):\n"
        "    with ThreadedScheduler(backend=backend) as ts:\n"
        "        assert ts.call_later(0, sum, [1, 2]).result(timeout=30) == 3\n"
        "assert 'duetime.testing' not in sys.modules, 'duetime.testing was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_runtime_contract_names_every_top_level_module() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contracts = config["tool"]["importlinter"]["contracts"]
    (contract,) = [c for c in contracts if c["id"] == "runtime-not-testing"]
    listed = set(contract["source_modules"])
    top = {name for name in _runtime_modules() if name.count(".") == 1}
    assert top == listed
