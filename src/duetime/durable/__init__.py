"""Durable deferred callbacks: registered tasks in a store that survives restarts.

This module is the durable wing's front: everything outside the wing imports
from here (an import-linter contract keeps the private modules behind it).
``Scheduler(store=..., tasks=...)`` is the usual way in; a store written
outside the package implements :class:`Store` and checks itself with
:mod:`duetime.durable.conformance` (see the guide "Writing a store").

The wing, by file:

- the parts a process runs

  - ``_session.py``: :class:`StoreSession`, a store entered once, holding the
    client and (``worker=True``) the worker; the Scheduler composes one
  - ``_client.py``: :class:`Client`, the producer side: defer, defer_many,
    defer_every, listing, cancel, retry, delete, the argument checks
  - ``_deferred.py``: :class:`Deferred`, a handle on an entry from any process
    (its outcome, awaited), and the session's one watcher that wakes them all
  - ``_worker.py``: :class:`Worker`, the worker side: the claim loop, runner
    tasks, lease renewal, stop
  - ``_running.py``: one run, a claim turned into an outcome (the task call,
    retries, series occurrences, threads for sync tasks)
  - ``_finisher.py``: the runs' ends sent to the store in groups (``finish_many``)
  - ``_keys.py``: entry keys: the check, the time-ordered keys made up
  - ``_registry.py``: :class:`TaskRegistry` and :func:`current_entry`
  - ``_codec.py``: the argument codec (JSON plus a closed set of tagged types)
  - ``_series.py``: recurring series: triggers, grids, misfire and overlap
  - ``_log.py``: the loggers, and a worker's store-outage log

- the store seam and the stores

  - ``_store.py``: :class:`Store`, the protocol, and the values that cross it
  - ``_stats.py``: the values of the inspection queries (:class:`Counts`,
    :class:`EntryQuery`, :class:`Minute`); ``_activity.py``: a per-minute ring
  - ``_wakeup.py``: in-process wake-ups for ``Store.wait_changed``
  - ``_memory.py``: :class:`MemoryStore`, one process, virtual time (its
    inspection queries in ``_memory_stats.py``)
  - ``_sqlite.py`` (with ``_sqlite_file.py``, ``_sqlite_rows.py``,
    ``_sqlite_sql.py``, ``_sqlite_stats.py``): :class:`SQLiteStore`, one host
  - ``_redis.py`` (with ``_redis_lua.py``, ``_redis_rows.py``):
    :class:`RedisStore`, several hosts (the ``redis`` extra, loaded lazily)
  - ``_postgres.py`` (with ``_postgres_conn.py``, ``_postgres_listen.py``,
    ``_postgres_rows.py``, ``_postgres_sql.py``, ``_postgres_wake.py``): :class:`PostgresStore`,
    several hosts on PostgreSQL (the ``postgres`` extra, loaded lazily)
  - ``_postgres_enqueue.py``: :class:`PostgresEnqueue`, entries deferred inside
    the caller's own PostgreSQL transaction (no store needed)
  - ``_url.py``: :func:`open_store`, a store from a URL
  - ``_redact.py``: a store URL shown without its credentials
  - ``conformance.py``: the conformance suite, for a store's tests (pytest), with
    its helpers and malformed-row part in ``_conformance_kit.py``

- the command line (``python -m duetime``)

  - ``_cli.py``: the ``worker`` command (it runs a :class:`StoreSession` with a
    worker) and the commands' wiring
  - ``_cli_store.py``: ``entries``, ``dead-letters``, ``retry``, ``delete``
  - ``_cli_show.py``: what a store holds, shown safely
  - ``_cli_run.py``: how a command ends (exit statuses, one clear line)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ._client import Client
from ._deferred import Deferred
from ._memory import MemoryStore
from ._postgres_enqueue import PostgresEnqueue
from ._registry import TaskDef, TaskRegistry, current_entry
from ._session import StoreSession
from ._sqlite import SQLiteStore
from ._sqlite_file import NotAStore
from ._stats import Counts, EntryQuery, Minute, series_times
from ._store import (
    ABORTED,
    MALFORMED,
    MAX_RESULT,
    RESULT_DROPPED,
    Aborted,
    Claim,
    Dead,
    Done,
    Entry,
    EntryDetail,
    FinishAndClaim,
    NewRow,
    NextOccurrence,
    OnConflict,
    Outcome,
    Page,
    ReadOnlyStore,
    Release,
    RetryAt,
    Store,
    StoreLost,
    entry_args,
    utc,
)
from ._url import open_store
from ._worker import Worker

if TYPE_CHECKING:
    from ._postgres import PostgresStore as PostgresStore  # lazy: see __getattr__
    from ._redis import RedisStore as RedisStore  # lazy: see __getattr__

__all__ = [
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


def __getattr__(name: str) -> Any:
    # RedisStore needs the `redis` extra (coredis): imported on first use only, so
    # `import duetime.durable` never needs it.  Not in __all__, so `import *` never
    # needs it.
    if name == "RedisStore":
        from ._redis import RedisStore

        return RedisStore
    # PostgresStore needs the `postgres` extra (psycopg): the same, for the same reason.
    if name == "PostgresStore":
        try:
            from ._postgres import PostgresStore
        except ModuleNotFoundError as exc:
            if exc.name != "psycopg":
                raise
            raise ImportError(
                "PostgresStore needs psycopg: pip install 'duetime[postgres]'"
            ) from exc
        return PostgresStore
    raise AttributeError(f"module 'duetime.durable' has no attribute {name!r}")
