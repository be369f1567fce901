"""Worker pools and deadline-aware batches: WorkerPool, process_batch, BatchReport.

This wing depends only on duetime's shared helpers (``_util``, ``_handle``,
``_lifecycle``, ``_unobserved``, ``_exceptions``), never on the Scheduler, its engine or its
satellites: the ``pool-stands-alone`` import-linter contract in pyproject.toml
holds it to that.
"""

from __future__ import annotations

from ._batch import BatchReport, process_batch
from ._pool import PoolStatistics, WorkerPool

__all__ = ["BatchReport", "PoolStatistics", "WorkerPool", "process_batch"]
