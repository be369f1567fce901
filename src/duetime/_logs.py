"""The loggers of duetime: their names, and what each level carries.

Every module logs through one of these names, all on the ``duetime`` hierarchy
(``logging.getLogger("duetime").setLevel(...)`` governs them all):

``duetime`` (:data:`CORE`): the in-memory Scheduler, ThreadedScheduler and pools
    - ERROR: a callback failure nobody observed (no ``await``, no
      ``exception``, no done-callback before its handle was collected or the
      block ended), with its traceback; a done-callback or ``on_error`` that
      raised; a worker-pool worker that crashed
    - WARNING: a sync callback that blocked the event loop past
      ``slow_callback_duration``

``duetime.durable`` (:data:`DURABLE`): a durable worker and its runs
    - INFO: the worker starts (its owner, tasks, store URL without credentials,
      concurrency) and stops
    - DEBUG: each run (``key``, ``task``, ``attempt``, ``lateness``, ``duration``)
    - WARNING: an attempt failed and will be retried; a lease was lost; a
      thread outlives its timeout or the shutdown; a return value not kept
    - ERROR: a dead letter (retries exhausted, unknown task, bad payload), with
      its traceback

``duetime.durable.store`` (:data:`STORE`): a worker's store stops answering
    - WARNING: once when an outage starts (which call, why) and once when it
      ends (its length, in ``duration``); the first error's traceback at DEBUG

Records about one durable entry carry ``key``, ``task`` and ``attempt`` in their
``extra`` (and ``lateness``, ``duration`` in seconds for a run); an unobserved
callback failure carries ``callback`` (the handle's name).  No record holds a
store's credentials.
"""

from __future__ import annotations

import logging

__all__ = ["CORE", "DURABLE", "STORE", "core_log"]

#: The in-memory core: Scheduler, ThreadedScheduler, worker pools.
CORE = "duetime"
#: The durable wing: a worker's runs, retries, dead letters, leases, start and stop.
DURABLE = "duetime.durable"
#: A durable worker's store outages.
STORE = "duetime.durable.store"

#: The core's logger.
core_log = logging.getLogger(CORE)
