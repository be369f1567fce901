from __future__ import annotations

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
    for name in duetime.__all__:
        assert getattr(duetime, name).__module__.startswith("duetime")


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
