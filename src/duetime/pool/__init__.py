"""Worker pools and deadline-aware batches: WorkerPool, process_batch, BatchReport.

This wing depends only on duetime's shared helpers (``_util``, ``_handle``,
``_lifecycle``), never on the Scheduler or its engine.
"""

from __future__ import annotations

from ._batch import BatchReport, process_batch
from ._pool import PoolStatistics, WorkerPool

__all__ = ["BatchReport", "PoolStatistics", "WorkerPool", "process_batch"]
