"""duetime.durable is the durable wing's front: its names are pinned here."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import duetime
import duetime.durable
import duetime.testing

ROOT = Path(__file__).resolve().parents[2]


def test_front_names_are_pinned() -> None:
    assert sorted(duetime.durable.__all__) == sorted(
        [
            "ABORTED",
            "MALFORMED",
            "MAX_RESULT",
            "RESULT_DROPPED",
            "Aborted",
            "Claim",
            "Client",
            "Counts",
            "Dead",
            "Deferred",
            "Done",
            "Entry",
            "EntryDetail",
            "EntryQuery",
            "FinishAndClaim",
            "MemoryStore",
            "Minute",
            "NewRow",
            "NextOccurrence",
            "NotAStore",
            "OnConflict",
            "Outcome",
            "Page",
            "PostgresEnqueue",
            "ReadOnlyStore",
            "Release",
            "RetryAt",
            "SQLiteStore",
            "Store",
            "StoreLost",
            "StoreSession",
            "TaskDef",
            "TaskRegistry",
            "Worker",
            "current_entry",
            "entry_args",
            "open_store",
            "series_times",
            "utc",
        ]
    )
    for name in duetime.durable.__all__:
        assert getattr(duetime.durable, name) is not None


def test_duetime_reexports_are_the_front_objects() -> None:
    for name in ("Deferred", "Entry", "SQLiteStore", "TaskRegistry", "current_entry", "open_store"):
        assert getattr(duetime, name) is getattr(duetime.durable, name)
    assert duetime.testing.MemoryStore is duetime.durable.MemoryStore


def test_redis_store_loads_lazily() -> None:
    code = (
        "import sys, duetime, duetime.durable\n"
        "assert 'coredis' not in sys.modules\n"
        "assert 'duetime.durable._redis' not in sys.modules\n"
        "assert 'pytest' not in sys.modules\n"
        "print(duetime.durable.RedisStore.__name__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "RedisStore"
    assert duetime.RedisStore is duetime.durable.RedisStore


def test_the_conformance_suite_is_importable() -> None:
    from duetime.durable import conformance

    assert {"StoreConformance", "MalformedRowConformance", "loop_epoch_clock", "row"} <= set(
        conformance.__all__
    )


def test_duetime_imports_only_the_front() -> None:
    # The import-linter contract "durable-front" says the same for every module;
    # this pins it for the package's top, which re-exports durable names.
    tree = ast.parse((ROOT / "src" / "duetime" / "__init__.py").read_text())
    durable = [
        n.module
        for n in ast.walk(tree)
        if isinstance(n, ast.ImportFrom) and n.module and n.module.startswith("durable")
    ]
    assert durable
    assert all(m == "durable" for m in durable)


def test_reference_documents_every_front_name() -> None:
    reference = (ROOT / "docs" / "reference.md").read_text()
    for name in duetime.durable.__all__:
        assert f"`{name}`" in reference, name
