from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import get_args

import pytest

import duetime
import duetime.durable
import duetime.otel
import duetime.testing

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = (ROOT / "docs" / "reference.md").read_text()


def test_public_names_are_pinned() -> None:
    assert sorted(duetime.__all__) == sorted(
        [
            "BatchReport",
            "CallbackCancelled",
            "Cron",
            "DeadlineExpired",
            "Deferred",
            "DeferredFailed",
            "DuetimeError",
            "Entry",
            "EntryExists",
            "Handle",
            "Job",
            "Misfire",
            "Overlap",
            "PendingReplies",
            "Recurring",
            "RecurringJob",
            "PoolStatistics",
            "Retry",
            "RunInfo",
            "SQLiteStore",
            "Scheduler",
            "SchedulerClosed",
            "SchedulerStatistics",
            "Status",
            "TaskRegistry",
            "ThreadedScheduler",
            "Timeouts",
            "WorkerPool",
            "current_entry",
            "current_run",
            "open_store",
            "process_batch",
        ]
    )
    aliases = {"Misfire", "Overlap"}  # typing.Literal aliases have no module of ours
    for name in set(duetime.__all__) - aliases:
        assert getattr(duetime, name).__module__.startswith("duetime")


def test_testing_names_are_pinned() -> None:
    assert sorted(duetime.testing.__all__) == sorted(
        [
            "DEFAULT_WALL_START",
            "MemoryStore",
            "VirtualTimeLoop",
            "VirtualWallClock",
            "advance_time",
            "anyio_backend_fixture",
            "hold_autojump",
            "virtual_time_backend",
            "virtual_time_backends",
        ]
    )


def test_entry_exists_is_a_value_error() -> None:
    assert issubclass(duetime.EntryExists, duetime.DuetimeError)
    assert issubclass(duetime.EntryExists, ValueError)


def test_policy_aliases_list_the_accepted_values() -> None:
    assert get_args(duetime.Misfire) == ("coalesce", "skip", "catch_up")
    assert get_args(duetime.Overlap) == ("skip", "wait", "allow")


def test_exception_hierarchy() -> None:
    assert issubclass(duetime.DeadlineExpired, TimeoutError)
    assert issubclass(duetime.DeadlineExpired, duetime.DuetimeError)
    assert issubclass(duetime.SchedulerClosed, RuntimeError)
    assert issubclass(duetime.CallbackCancelled, duetime.DuetimeError)


def test_status_is_a_str_enum() -> None:
    assert str(duetime.Status.FAILED) == "FAILED"
    assert [s.name for s in duetime.Status] == [
        "PENDING",
        "RUNNING",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "EXPIRED",
    ]


@pytest.mark.anyio
async def test_an_idle_open_scheduler_is_truthy() -> None:
    async with duetime.Scheduler() as s:
        assert s
        assert s.statistics().pending == 0


def _rows() -> set[str]:
    return set(re.findall(r"^\| `(\w+)` \|", REFERENCE, re.MULTILINE))


def _dashboard_names() -> list[str]:
    """duetime.dashboard's names (the dashboard extra; pinned here)."""
    dashboard = pytest.importorskip("duetime.dashboard")
    assert sorted(dashboard.__all__) == ["ADMIN", "Grant", "VIEWER", "create_app"]
    return list(dashboard.__all__)


def test_reference_describes_every_exported_name() -> None:
    # A one-line description each, readable as plain Markdown (GitHub, the sdist).
    names = set(duetime.__all__) | set(duetime.testing.__all__) | set(duetime.durable.__all__)
    names |= set(_dashboard_names())
    names |= set(duetime.otel.__all__)
    assert sorted(names - _rows()) == []
    assert sorted(_rows() - names) == []  # no row for a name that is gone


def test_reference_has_the_full_docs_of_every_exported_name() -> None:
    # The site's generated reference: a mkdocstrings directive, hidden in a comment.
    directives = set(re.findall(r"^::: duetime\.(\w+)$", REFERENCE, re.MULTILINE))
    assert sorted(set(duetime.__all__) - directives) == []
    assert "::: duetime.testing\n" in REFERENCE


def test_version_has_one_source() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert duetime.__version__ == pyproject["project"]["version"]
