"""duetime: anyio-native deferred callbacks for asyncio and trio.

Schedule sync or async callbacks after a delay, at a loop or wall-clock time, or
soon, and get an awaitable :class:`Handle` back::

    async with duetime.Scheduler() as scheduler:
        handle = scheduler.call_later(0.5, add, 1, 2)
        assert await handle == 3
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING, Any

from ._cron import Cron
from ._exceptions import (
    CallbackCancelled,
    DeadlineExpired,
    DeferredFailed,
    DuetimeError,
    EntryExists,
    SchedulerClosed,
)
from ._handle import Handle, RunInfo, current_run
from ._keyed import PendingReplies, Timeouts
from ._recurring import Recurring
from ._retry import Retry
from ._scheduler import Scheduler, SchedulerStatistics
from ._threaded import Job, RecurringJob, ThreadedScheduler
from ._vocab import Misfire, Overlap, Status
from .durable import Deferred, Entry, SQLiteStore, TaskRegistry, current_entry, open_store
from .pool import BatchReport, PoolStatistics, WorkerPool, process_batch

if TYPE_CHECKING:
    from .durable import RedisStore as RedisStore  # lazy: see __getattr__

try:
    __version__ = version("duetime")  # pyproject.toml is the one source
except PackageNotFoundError:  # pragma: no cover - run from a bare source tree
    __version__ = "0+unknown"

__all__ = [
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
    "PoolStatistics",
    "Recurring",
    "RecurringJob",
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


def __getattr__(name: str) -> Any:
    # RedisStore needs the `redis` extra (coredis): imported on first use only, so
    # `import duetime` never needs it.  Not in __all__, so `import *` never needs it.
    if name == "RedisStore":
        from . import durable

        return durable.RedisStore
    raise AttributeError(f"module 'duetime' has no attribute {name!r}")
