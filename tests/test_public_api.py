from __future__ import annotations

from typing import get_args

import pytest

import duetime


def test_public_names_are_pinned() -> None:
    assert sorted(duetime.__all__) == sorted(
        [
            "BatchReport",
            "CallbackCancelled",
            "Cron",
            "DeadlineExpired",
            "DuetimeError",
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
            "Scheduler",
            "SchedulerClosed",
            "SchedulerStatistics",
            "Status",
            "ThreadedScheduler",
            "Timeouts",
            "WorkerPool",
            "current_run",
            "process_batch",
        ]
    )
    aliases = {"Misfire", "Overlap"}  # typing.Literal aliases have no module of ours
    for name in set(duetime.__all__) - aliases:
        assert getattr(duetime, name).__module__.startswith("duetime")


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
