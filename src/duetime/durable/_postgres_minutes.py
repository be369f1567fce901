"""PostgresStore's activity ring and the indexes an open adds or drops (SQL text).

- ``{schema}.minutes``: per-minute counters of claims and finishes,
  ``(slot, shard)`` rows: ``slot`` is the minute modulo :data:`RING` (a slot of
  an older minute starts again), ``shard`` the backend's pid modulo
  :data:`SHARDS`, so that concurrent claims and finishes on different
  connections update different rows (one row would serialise every claim's
  commit behind the previous one's WAL flush).  A reader sums the shards.
- ``entries_stray`` (:func:`stray_sql`): the rows claims must dead-letter
  though no time makes them due;
- :data:`RETIRED`: the indexes a store an older duetime created has and this
  one no longer writes (:func:`retire_sql`).

The claim and finish statements of :mod:`._postgres_sql` each carry one
upsert (:func:`claims_upsert`, :func:`finishes_upsert`) as a data-modifying
CTE, so the counters change in the same transaction as the rows.
"""

from __future__ import annotations

__all__ = [
    "RETIRED",
    "RING",
    "SHARDS",
    "claims_upsert",
    "ensure_sql",
    "finishes_upsert",
    "retire_sql",
    "stray_sql",
]

#: Slots of the ring (more than the 60 minutes :meth:`Store.activity` reads).
RING = 64
#: Rows per minute (connections writing at once spread over them).
SHARDS = 16

#: Indexes of ``entries`` an older duetime created and writes no more: every
#: claim and finish wrote an entry into each.  ``(due, key)`` served listings
#: without a status filter (now a merge of the ``(status, due, key)`` ranges),
#: ``(status, task)`` the counts (now a read of the table).
RETIRED = ("entries_due", "entries_status_task")

_COUNTERS = ("started", "completed", "failed", "retried", "late_total")


def ensure_sql(schema: str) -> str:
    """The statements that create the ring and ``entries_stray`` if absent (idempotent)."""
    s = schema
    return f"""
CREATE TABLE IF NOT EXISTS {s}.minutes (
    slot integer NOT NULL,
    shard integer NOT NULL,
    minute bigint NOT NULL,
    started bigint NOT NULL DEFAULT 0,
    completed bigint NOT NULL DEFAULT 0,
    failed bigint NOT NULL DEFAULT 0,
    retried bigint NOT NULL DEFAULT 0,
    late_total float8 NOT NULL DEFAULT 0,
    late_max float8 NOT NULL DEFAULT 0,
    PRIMARY KEY (slot, shard)
);
{stray_sql(s)}"""


def stray_sql(schema: str) -> str:
    """The statement that creates ``entries_stray`` if absent: the PENDING and
    RUNNING rows without a claimable time (``visible_at`` NULL, written by another
    program), which claims dead-letter.  Normally empty: a write to a row outside
    it costs the index nothing but checking its condition."""
    return (
        f"CREATE INDEX IF NOT EXISTS entries_stray ON {schema}.entries (key)"
        " WHERE visible_at IS NULL AND status IN (0, 1);"
    )


def retire_sql(schema: str) -> str:
    """The statements that drop the :data:`RETIRED` indexes if present (idempotent)."""
    return "".join(f"DROP INDEX IF EXISTS {schema}.{name};" for name in RETIRED)


def _upsert(schema: str, counts: str) -> str:
    """An upsert of one minute's counters from ``counts`` (a SELECT giving
    started, completed, failed, retried, late_total, late_max), at ``t.now``;
    nothing is written when every count is 0."""
    same = "m.minute = excluded.minute"
    sets = ",\n    ".join(
        f"{c} = excluded.{c} + CASE WHEN {same} THEN m.{c} ELSE 0 END" for c in _COUNTERS
    )
    return f"""INSERT INTO {schema}.minutes AS m
    (slot, shard, minute, started, completed, failed, retried, late_total, late_max)
SELECT mod(w.minute, {RING}), mod(pg_backend_pid(), {SHARDS}), w.minute, a.started,
    a.completed, a.failed, a.retried, a.late_total, a.late_max
FROM (SELECT floor(t.now / 60)::bigint AS minute FROM t) w, ({counts}) a
WHERE a.started + a.completed + a.failed + a.retried > 0
ON CONFLICT (slot, shard) DO UPDATE SET
    {sets},
    late_max = CASE WHEN {same} THEN greatest(m.late_max, excluded.late_max)
        ELSE excluded.late_max END,
    minute = excluded.minute"""


def claims_upsert(schema: str, claimed: str) -> str:
    """Count the rows of CTE ``claimed`` (``status``, ``due``) left RUNNING and
    their start lateness (``t.now`` minus the due time, never negative)."""
    late = "greatest(0, t.now - c.due)"
    return _upsert(
        schema,
        f"SELECT count(*) AS started, 0 AS completed, 0 AS failed, 0 AS retried,"
        f" coalesce(sum({late}), 0) AS late_total, coalesce(max({late}), 0) AS late_max"
        f" FROM {claimed} c, t WHERE c.status = 1",
    )


def finishes_upsert(schema: str, finished: str) -> str:
    """Count the rows of CTE ``finished`` (``st`` the status set, ``kind`` the
    outcome's kind, ``clean`` no error) by outcome: a completed run or series
    occurrence, a failed one, a retry.  A run an abort ended (status 4) and a
    release count in none."""
    ok = "(f.st = 2 OR (f.st = 0 AND f.kind = 2 AND f.clean))"
    bad = "(f.st = 3 OR (f.st = 0 AND f.kind = 2 AND NOT f.clean))"
    return _upsert(
        schema,
        f"SELECT 0 AS started, count(*) FILTER (WHERE {ok}) AS completed,"
        f" count(*) FILTER (WHERE {bad}) AS failed,"
        " count(*) FILTER (WHERE f.st = 0 AND f.kind = 1) AS retried,"
        f" 0::float8 AS late_total, 0::float8 AS late_max FROM {finished} f",
    )
