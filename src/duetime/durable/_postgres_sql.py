"""The schema and the SQL of a PostgresStore (one concept: the data model).

A store lives in its own schema (``duetime`` by default):

- ``{schema}.meta``: ``(k, v)`` text pairs; ``application`` is ``duetime`` and
  ``schema_version`` the version of this layout (:data:`SCHEMA_VERSION`);
- ``{schema}.entries``: one row per one-shot entry or recurring series (columns
  below); ``visible_at`` is when a row becomes claimable (its due time if
  PENDING, its lease end if RUNNING, else NULL), indexed, so the head of the
  store is the first index entry;
- ``{schema}.tokens``: the sequence fencing tokens come from (never reset);
- ``{schema}.awaiting``: one row per store object waiting for finishes
  (``wait_finished``), with the time its interest lapses: a finish sends a
  NOTIFY only while someone awaits.
- ``{schema}.minutes``: the activity ring the claim and finish statements
  bump (:mod:`._postgres_minutes`).

``entries`` has five indexes, the fewest that keep every statement off a scan of
the table but the counts (:mod:`._postgres_stats`): the primary key (``key``:
finishes, renewals, one-row reads and writes), ``entries_visible``
(``visible_at``, where not NULL: claims and the head), ``entries_expires``
(``expires_at``, where not NULL: the purge of tombstones), ``entries_status_due``
(``(status, due, key)``: listings, one status at a time, merged in due order
without a sort: :func:`each_status`), and ``entries_stray`` (empty, normally:
:data:`STRAY`).  Claims and finishes change indexed columns, so each writes a
new entry into every index whose condition the new row meets: a job (insert,
claim, finish) writes nine index entries.  A store an older duetime created
has two more indexes, ``(due, key)`` and ``(status, task)``, that an open for
writing drops (:mod:`._postgres_minutes`).

Times are float8 epoch seconds on the server's clock: every statement that
reads the time reads ``clock_timestamp()`` (plus ``$1``, a test-only offset,
0 in production), so hosts with skewed clocks agree on due times and leases.
Status codes are part of the schema: 0 PENDING, 1 RUNNING, 2 COMPLETED,
3 FAILED, 4 CANCELLED (an aborted run's tombstone).

Wake-ups go through one channel, ``{schema}.wake``, with a one-letter payload:
``c`` when a write moved the head earlier, ``f`` when rows finished while
someone awaits, ``a`` when an abort was requested.

:func:`insert_sql` and :func:`insert_params` are the insert an awaited
``defer`` runs, for code that enqueues inside its own transaction.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ._codec import MAX_PAYLOAD
from ._postgres_minutes import claims_upsert, ensure_sql, finishes_upsert
from ._store import (
    ABORTED,
    MALFORMED,
    NewRow,
)

__all__ = [
    "PENDING",
    "RUNNING",
    "COMPLETED",
    "FAILED",
    "CANCELLED",
    "SCHEMA_VERSION",
    "WORK_SESSION",
    "ENTRY",
    "DETAIL",
    "Sql",
    "check_schema_name",
    "create_sql",
    "each_status",
    "insert_params",
    "insert_sql",
]

PENDING, RUNNING, COMPLETED, FAILED, CANCELLED = 0, 1, 2, 3, 4

#: The layout this module reads and writes (``{schema}.meta``, k = 'schema_version').
SCHEMA_VERSION = 1
APPLICATION = "duetime"

_NAME = re.compile(r"[a-z_][a-z0-9_]{0,47}")
_MAXF = "1.7976931348623157e308"  # the largest finite float8: NaN and Infinity sort above
_MIN_TS, _MAX_TS = "-62135596800", "253402300799"  # 0001-01-01 .. 9999-12-31T23:59:59 UTC

#: What :class:`Entry` is built from, in order (``_postgres_rows.entry``).
ENTRY = (
    "key, task, payload, status, due, attempt, last_error, occurrence, schedule, deliveries,"
    " abort_requested"
)
#: What ``get`` reads besides :data:`ENTRY`.
DETAIL = "result, result_until, error_type, traceback"
#: What a claim returns besides :data:`ENTRY`.
CLAIMED = "token, lease_until, lease"
#: A PENDING or RUNNING row without a claimable time (written by another
#: program): never due, so claims find it through its own partial index
#: (``entries_stray``, empty unless such a row exists) and dead-letter it.
STRAY = "visible_at IS NULL AND status IN (0, 1)"


def check_schema_name(schema: object) -> str:
    """``schema`` if it is a plain lower-case SQL identifier (no quoting needed).

    :raises TypeError: not a str
    :raises ValueError: not ``[a-z_][a-z0-9_]*``, up to 48 characters
    """
    if not isinstance(schema, str):
        raise TypeError(f"schema must be a str, not {type(schema).__name__}")
    if not _NAME.fullmatch(schema) or schema.startswith("pg_"):
        raise ValueError(
            "schema must be a lower-case SQL identifier ([a-z_][a-z0-9_]*, up to 48"
            f" characters, not pg_...), got {schema!r}"
        )
    return schema


def each_status(select: str, where: str, limit: str) -> str:
    """``select`` (``SELECT ... FROM entries``, no WHERE) of the rows where
    ``where`` holds, in ``(due, key)`` order, at most ``limit`` of them: one
    ordered range of ``entries_status_due`` per status, merged (``Merge
    Append``), plus the rows of a status no code names (another program's,
    listed as FAILED), which an empty index range finds.  ``where`` must not
    join: a time belongs in a scalar subquery (``(SELECT now FROM t)``), or the
    planner sorts every matching row instead of merging."""
    legs = [f"status = {code}" for code in range(PENDING, CANCELLED + 1)]
    # Written as ranges, not as status < 0: without statistics the planner
    # takes an inequality to match a third of the table (and reads all of it),
    # a range a 200th.
    legs.append(
        f"(status BETWEEN -32768 AND {PENDING - 1} OR status BETWEEN {CANCELLED + 1} AND 32767)"
    )
    union = "\nUNION ALL ".join(
        f"({select} WHERE {leg} AND {where} ORDER BY due, key LIMIT {limit})" for leg in legs
    )
    return f"{union}\nORDER BY due, key LIMIT {limit}"


def create_sql(schema: str) -> str:
    """The statements that create a store's schema (version :data:`SCHEMA_VERSION`)."""
    s = schema
    return f"""
CREATE SCHEMA IF NOT EXISTS {s};
CREATE TABLE {s}.meta (k text PRIMARY KEY, v text NOT NULL);
CREATE SEQUENCE {s}.tokens AS bigint;
CREATE TABLE {s}.entries (
    key text PRIMARY KEY,
    task text NOT NULL,
    payload text NOT NULL,
    status smallint NOT NULL DEFAULT 0,
    due float8 NOT NULL,
    visible_at float8,
    lease float8 NOT NULL,
    lease_until float8,
    token bigint NOT NULL DEFAULT 0,
    owner text,
    attempt integer NOT NULL DEFAULT 1,
    deliveries integer NOT NULL DEFAULT 0,
    max_deliveries integer NOT NULL,
    occurrence bigint NOT NULL DEFAULT 0,
    schedule text,
    last_error text,
    expires_at float8,
    result text,
    result_until float8,
    error_type text,
    traceback text,
    abort_requested boolean NOT NULL DEFAULT false
);
CREATE INDEX entries_visible ON {s}.entries (visible_at) WHERE visible_at IS NOT NULL;
CREATE INDEX entries_expires ON {s}.entries (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX entries_status_due ON {s}.entries (status, due, key);
CREATE TABLE {s}.awaiting (id text PRIMARY KEY, until float8 NOT NULL);
INSERT INTO {s}.meta (k, v) VALUES ('application', '{APPLICATION}'),
    ('schema_version', '{SCHEMA_VERSION}');
{ensure_sql(s)}"""


def _now() -> str:
    return "(extract(epoch FROM clock_timestamp())::float8 + $1::float8)"


_INSERT_COLUMNS = "key, task, payload, status, due, visible_at, lease, max_deliveries, schedule"
# $2.. of an insert: keys, tasks, payloads, due times (NULL: use the delay), delays,
# leases, max_deliveries, schedules; one array element per row.
_ROWS = (
    "SELECT r.key, r.task, r.payload, d.due, r.lease, r.md, r.sch, r.n"
    " FROM unnest($2::text[], $3::text[], $4::text[], $5::float8[], $6::float8[],"
    " $7::float8[], $8::integer[], $9::text[]) WITH ORDINALITY"
    " AS r(key, task, payload, due, delay, lease, md, sch, n),"
    f" LATERAL (SELECT coalesce(r.due, {_now()} + r.delay) AS due) d"
)
# Replacing a row: every field as a new insert sets it.
_RESET = (
    "task = excluded.task, payload = excluded.payload, status = 0, due = excluded.due,"
    " visible_at = excluded.visible_at, lease = excluded.lease, lease_until = NULL, token = 0,"
    " owner = NULL, attempt = 1, deliveries = 0, max_deliveries = excluded.max_deliveries,"
    " occurrence = 0, schedule = excluded.schedule, last_error = NULL, expires_at = NULL,"
    " result = NULL, result_until = NULL, error_type = NULL, traceback = NULL,"
    " abort_requested = false"
)


#: A fenced row is RUNNING.  Written so that no index on status can serve it:
#: the planner's statistics rarely know how many rows run right now, and a
#: scan of the RUNNING rows per item (instead of one primary-key lookup each)
#: costs milliseconds with a few hundred of them.
_RUNNING = "(x.status + 0) = 1"

#: Session settings of a store's connections: every statement reaches its few
#: rows through the primary key; on a small or freshly changed table the
#: planner would rather hash the whole table than look the keys up.  Plans are
#: made for each execution's values: the generic plan PostgreSQL switches a
#: prepared statement to after five runs made a 100-row insert grow from 3 ms
#: to 30 ms as the table grew to 6000 rows.
SESSION = (
    b"SET enable_hashjoin = off; SET enable_mergejoin = off;"
    b" SET plan_cache_mode = force_custom_plan"
)
#: Session settings of the connections that claim, renew and finish (the
#: worker's path): the same, but each statement is planned once per connection.
#: Their parameters do not change the good plan (rows in ``visible_at`` order
#: from its index, or one primary-key lookup per item), and planning the claim
#: anew for each execution cost about 0.8 ms of a 4-5 ms claim of 100 rows.
WORK_SESSION = (
    b"SET enable_hashjoin = off; SET enable_mergejoin = off;"
    b" SET plan_cache_mode = force_generic_plan"
)


def _notify(schema: str, what: str) -> str:
    return f"pg_notify('{schema}.wake', '{what}')"


def insert_sql(schema: str, *, replace_when: str = "expires_at <= {now}") -> str:
    """The statement that inserts rows (parameters: :func:`insert_params`).

    New keys are inserted and an existing row is replaced where
    ``replace_when`` holds (by default: a tombstone whose ``dedupe_ttl`` has
    passed); other existing rows are left as they are.  It returns, for each
    input row in order, ``ENTRY`` of the row now stored and whether this
    statement wrote it; and it sends one NOTIFY if the rows it wrote moved the
    store's head earlier (never one per row).  It meets the rows in key order
    (a conflicting row is locked even when it is left as it is), so that two
    batches over overlapping keys cannot deadlock, whatever their orders.
    """
    s, e = schema, f"{schema}.entries"
    cond = replace_when.format(now=_now())
    return f"""
WITH input AS MATERIALIZED ({_ROWS}),
head AS MATERIALIZED (SELECT min(visible_at) AS h FROM {e} WHERE visible_at IS NOT NULL),
written AS (
    INSERT INTO {e} AS x ({_INSERT_COLUMNS})
    SELECT key, task, payload, 0, due, due, lease, md, sch FROM input ORDER BY key
    ON CONFLICT (key) DO UPDATE SET {_RESET} WHERE x.{cond}
    RETURNING {ENTRY}
),
woke AS (
    SELECT {_notify(s, "c")} FROM head
    WHERE (SELECT min(due) FROM written) < coalesce(head.h, 'Infinity'::float8)
)
SELECT i.n, w.key IS NOT NULL,
    coalesce(w.key, o.key), coalesce(w.task, o.task), coalesce(w.payload, o.payload),
    coalesce(w.status, o.status), coalesce(w.due, o.due), coalesce(w.attempt, o.attempt),
    CASE WHEN w.key IS NULL THEN o.last_error ELSE w.last_error END,
    coalesce(w.occurrence, o.occurrence), CASE WHEN w.key IS NULL THEN o.schedule ELSE
    w.schedule END, coalesce(w.deliveries, o.deliveries),
    coalesce(w.abort_requested, o.abort_requested), (SELECT count(*) FROM woke)
FROM input i LEFT JOIN written w ON w.key = i.key LEFT JOIN {e} o ON o.key = i.key
ORDER BY i.n
"""


def insert_params(rows: Sequence[NewRow], default_lease: float, offset: float = 0.0) -> list[Any]:
    """The parameters of :func:`insert_sql` for ``rows`` (Python values, in order:
    the clock offset, then one list per column)."""
    return [
        offset,
        [r.key for r in rows],
        [r.task for r in rows],
        [r.payload for r in rows],
        [None if r.due is None else float(r.due) for r in rows],
        [None if r.delay is None else float(r.delay) for r in rows],
        [float(default_lease if r.lease is None else r.lease) for r in rows],
        [r.max_deliveries for r in rows],
        [r.schedule for r in rows],
    ]


def _why(p: str) -> str:
    """NULL for a row (alias ``p``) a claim may hand out as it is, else why not: a
    row another program wrote (the column types already rule out text in a
    number column, not NaN, infinities or out-of-range values; a counter at
    its column's top is refused as its finish would add one to it)."""
    return f"""CASE
    WHEN {p}.task = '' THEN 'task is not a task name'
    WHEN NOT ({p}.due BETWEEN {_MIN_TS} AND {_MAX_TS})
        THEN 'due ' || {p}.due::text || ' is not a time (epoch seconds, years 1-9999)'
    WHEN NOT ({p}.visible_at BETWEEN -{_MAXF} AND {_MAXF})
        THEN 'visible_at is not a finite number'
    WHEN NOT ({p}.lease > 0 AND {p}.lease <= {_MAXF})
        THEN 'lease ' || {p}.lease::text || ' is not a positive number of seconds'
    WHEN {p}.status NOT IN (0, 1)
        THEN 'status ' || {p}.status::text || ' is not PENDING (0) or RUNNING (1)'
    WHEN NOT ({p}.attempt BETWEEN 1 AND 2147483646)
        THEN 'attempt is not an integer from 1 to 2147483646'
    WHEN NOT ({p}.occurrence BETWEEN 0 AND 9223372036854775806)
        THEN 'occurrence is not an integer from 0 to 9223372036854775806'
    WHEN {p}.deliveries < 0 THEN 'deliveries is not an integer >= 0'
    WHEN {p}.max_deliveries < 1 THEN 'max_deliveries is not an integer >= 1'
    WHEN octet_length({p}.payload) > {MAX_PAYLOAD}
        THEN 'payload is over {MAX_PAYLOAD // 1024} KiB'
END"""


_POISON = (
    "'poison: delivered ' || p.deliveries || ' times (max_deliveries=' || p.max_deliveries"
    " || ') without a fenced finish; its worker died or lost its lease each time'"
)


@dataclass(frozen=True, slots=True)
class Sql:
    """Every statement of one store, formatted for its schema (bytes, for libpq)."""

    schema: str

    @property
    def e(self) -> str:
        return f"{self.schema}.entries"

    def time(self) -> bytes:
        return f"SELECT {_now()}".encode()

    def claim(self) -> bytes:
        """$1 offset, $2 limit, $3 owner, $4 dedupe_ttl.  One statement: rows whose
        claimable time is not a finite number or NULL (:data:`STRAY`), and
        malformed and poison rows among the due ones, are dead-lettered; a lapsed
        row with an abort request ends CANCELLED; the rest are leased with new
        tokens, in due order."""
        e, s = self.e, self.schema
        return f"""
WITH t AS MATERIALIZED (SELECT {_now()} AS now),
odd AS MATERIALIZED (SELECT key FROM {e} WHERE visible_at > {_MAXF}
    ORDER BY visible_at DESC LIMIT $2 FOR UPDATE SKIP LOCKED),
stray AS MATERIALIZED (SELECT key FROM {e} WHERE {STRAY} LIMIT $2 FOR UPDATE SKIP LOCKED),
swept AS (
    UPDATE {e} SET status = 3, owner = NULL, lease_until = NULL, last_error = '{MALFORMED}'
        || CASE WHEN visible_at IS NULL THEN 'visible_at is NULL (the row is PENDING or RUNNING)'
            ELSE 'visible_at is not a finite number' END, visible_at = NULL
    WHERE key IN (SELECT key FROM odd UNION ALL SELECT key FROM stray)
    RETURNING key
),
locked AS MATERIALIZED (
    SELECT p.* FROM {e} p, t WHERE p.visible_at <= t.now
    ORDER BY p.visible_at LIMIT $2 FOR UPDATE OF p SKIP LOCKED
),
judged AS MATERIALIZED (
    SELECT p.key, nextval('{s}.tokens') AS tok, {_why("p")} AS why,
        p.deliveries >= p.max_deliveries AS poison, p.abort_requested AS ab,
        {_POISON} AS poison_why
    FROM (SELECT * FROM locked ORDER BY visible_at) p
),
done AS (
    UPDATE {e} x SET
        status = CASE WHEN j.why IS NOT NULL OR (j.poison AND NOT j.ab) THEN 3
            WHEN j.ab THEN 4 ELSE 1 END,
        owner = CASE WHEN j.why IS NULL AND NOT j.poison AND NOT j.ab THEN $3 END,
        token = CASE WHEN j.why IS NULL AND NOT j.poison AND NOT j.ab THEN j.tok
            ELSE x.token END,
        deliveries = CASE WHEN j.why IS NULL AND NOT j.poison AND NOT j.ab
            THEN x.deliveries + 1 ELSE x.deliveries END,
        lease_until = CASE WHEN j.why IS NULL AND NOT j.poison AND NOT j.ab
            THEN t.now + x.lease END,
        visible_at = CASE WHEN j.why IS NULL AND NOT j.poison AND NOT j.ab
            THEN t.now + x.lease END,
        last_error = CASE WHEN j.why IS NOT NULL THEN '{MALFORMED}' || j.why
            WHEN j.ab THEN '{ABORTED}' WHEN j.poison THEN j.poison_why ELSE x.last_error END,
        expires_at = CASE WHEN j.why IS NULL AND j.ab THEN t.now + $4::float8
            ELSE x.expires_at END
    FROM judged j, t WHERE x.key = j.key
    RETURNING {", ".join("x." + c.strip() for c in ENTRY.split(","))},
        x.token, x.lease_until, x.lease
),
act AS ({claims_upsert(s, "done")}),
fin AS (
    SELECT {_notify(s, "f")} WHERE EXISTS (SELECT 1 FROM done WHERE status <> 1)
        AND EXISTS (SELECT 1 FROM {s}.awaiting, t WHERE until > t.now)
)
SELECT *, (SELECT count(*) FROM swept), (SELECT count(*) FROM fin) FROM done ORDER BY token
""".encode()

    def insert_one(self) -> bytes:
        """The common case of ``add``, one row under ``"keep"`` (an awaited
        ``defer``): $1 offset, $2 key, $3 task, $4 payload, $5 due (or NULL),
        $6 delay, $7 lease, $8 max_deliveries, $9 schedule.  Inserts it, or
        replaces an expired tombstone; returns ``ENTRY`` and whether it sent a
        NOTIFY, or no row if the key exists (read it then)."""
        e, s = self.e, self.schema
        return f"""
WITH head AS MATERIALIZED (SELECT min(visible_at) AS h FROM {e} WHERE visible_at IS NOT NULL),
d AS MATERIALIZED (SELECT coalesce($5::float8, {_now()} + $6::float8) AS due),
written AS (
    INSERT INTO {e} AS x ({_INSERT_COLUMNS})
    SELECT $2, $3, $4, 0, d.due, d.due, $7::float8, $8::integer, $9 FROM d
    ON CONFLICT (key) DO UPDATE SET {_RESET} WHERE x.expires_at <= {_now()}
    RETURNING {ENTRY}
)
SELECT *, (SELECT count(*) FROM (SELECT {_notify(s, "c")} FROM head
    WHERE w.due < coalesce(head.h, 'Infinity'::float8)) n) FROM written w
""".encode()

    def read(self) -> bytes:
        """$1 offset, $2 key: ``ENTRY`` of the row (unless an expired tombstone)."""
        return f"""
SELECT {ENTRY} FROM {self.e}
WHERE key = $2 AND (expires_at IS NULL OR expires_at > {_now()})
""".encode()

    def finish(self) -> bytes:
        """$1 offset, $2 dedupe_ttl, $3 result_ttl, then one array per item field:
        $4 keys, $5 tokens, $6 kinds (:data:`KINDS`), $7 times, $8 errors,
        $9 results, $10 error types, $11 tracebacks.  Each row is changed only
        if its token is current; returns the ordinal of each item applied.  It
        meets the rows in key order, as :func:`insert_sql` does, so that it
        cannot deadlock with a batch of defers over the same keys."""
        e, s = self.e, self.schema
        c = "((x.abort_requested AND i.kind <> 0) OR i.kind = 5)"  # it ends CANCELLED
        return f"""
WITH t AS MATERIALIZED (SELECT {_now()} AS now),
i AS (SELECT * FROM unnest($4::text[], $5::bigint[], $6::smallint[], $7::float8[],
    $8::text[], $9::text[], $10::text[], $11::text[]) WITH ORDINALITY
    AS i(key, tok, kind, at, err, res, etype, tb, n) ORDER BY key),
head AS MATERIALIZED (SELECT min(visible_at) AS h FROM {e}
    WHERE visible_at IS NOT NULL AND NOT (key = ANY($4::text[]))),
u AS (
    UPDATE {e} x SET
        status = CASE WHEN {c} THEN 4 WHEN i.kind = 0 THEN 2 WHEN i.kind = 3 THEN 3 ELSE 0 END,
        due = CASE WHEN NOT {c} AND i.kind IN (1, 2) THEN i.at ELSE x.due END,
        visible_at = CASE WHEN {c} OR i.kind IN (0, 3) THEN NULL
            WHEN i.kind IN (1, 2) THEN i.at ELSE x.due END,
        lease_until = NULL,
        owner = NULL,
        attempt = CASE WHEN {c} THEN x.attempt WHEN i.kind = 1 THEN x.attempt + 1
            WHEN i.kind = 2 THEN 1 ELSE x.attempt END,
        occurrence = CASE WHEN NOT {c} AND i.kind = 2 THEN x.occurrence + 1
            ELSE x.occurrence END,
        deliveries = CASE WHEN {c} THEN x.deliveries WHEN i.kind IN (1, 2) THEN 0
            WHEN i.kind = 4 THEN greatest(0, x.deliveries - 1) ELSE x.deliveries END,
        last_error = CASE WHEN {c} THEN coalesce(CASE WHEN i.kind = 5 THEN i.err END,
                '{ABORTED}')
            WHEN i.kind = 0 THEN coalesce(i.err, x.last_error)
            WHEN i.kind IN (1, 2, 3) THEN i.err ELSE x.last_error END,
        expires_at = CASE WHEN {c} OR i.kind = 0 THEN t.now + $2::float8 END,
        result = CASE WHEN i.kind = 0 AND NOT {c} THEN i.res END,
        result_until = CASE WHEN i.kind = 0 AND NOT {c} AND i.res IS NOT NULL
            THEN t.now + $3::float8 END,
        error_type = CASE WHEN i.kind = 3 AND NOT {c} THEN i.etype
            WHEN i.kind = 0 THEN NULL ELSE x.error_type END,
        traceback = CASE WHEN i.kind = 3 AND NOT {c} THEN i.tb
            WHEN i.kind = 0 THEN NULL ELSE x.traceback END
    FROM i, t WHERE x.key = i.key AND x.token = i.tok AND {_RUNNING}
    RETURNING i.n, x.status IN (2, 3, 4) AS ended, x.visible_at,
        x.status AS st, i.kind AS kind, i.err IS NULL AS clean
),
act AS ({finishes_upsert(s, "u")}),
fin AS (
    SELECT {_notify(s, "f")} WHERE EXISTS (SELECT 1 FROM u WHERE ended)
        AND EXISTS (SELECT 1 FROM {s}.awaiting, t WHERE until > t.now)
),
woke AS (
    SELECT {_notify(s, "c")} WHERE EXISTS (SELECT 1 FROM u WHERE visible_at IS NOT NULL)
        AND (SELECT min(visible_at) FROM u)
            < coalesce((SELECT h FROM head), 'Infinity'::float8)
)
SELECT n, ended, (SELECT count(*) FROM fin), (SELECT count(*) FROM woke) FROM u
""".encode()

    def extend(self) -> bytes:
        """$1 offset, $2 keys, $3 tokens; the ordinals of the leases renewed (the
        rows met in key order, as :meth:`finish` does)."""
        return f"""
WITH t AS MATERIALIZED (SELECT {_now()} AS now)
UPDATE {self.e} x SET lease_until = t.now + x.lease, visible_at = t.now + x.lease
FROM (SELECT * FROM unnest($2::text[], $3::bigint[]) WITH ORDINALITY AS i(key, tok, n)
    ORDER BY key) i, t
WHERE x.key = i.key AND x.token = i.tok AND {_RUNNING}
RETURNING i.n
""".encode()

    def get(self) -> bytes:
        """$1 offset, $2 key: the row (unless an expired tombstone) and the time."""
        return f"""
WITH t AS MATERIALIZED (SELECT {_now()} AS now)
SELECT {ENTRY}, {DETAIL}, t.now FROM {self.e}, t
WHERE key = $2 AND (expires_at IS NULL OR expires_at > t.now)
""".encode()

    def entries(self, *, status: bool) -> bytes:
        """$1 offset, $2 limit[, $3 status code]: rows by due time, then key."""
        live = "(expires_at IS NULL OR expires_at > (SELECT now FROM t))"
        select = f"SELECT {ENTRY} FROM {self.e}"
        if status:
            where = f"status = $3::smallint AND {live}"
            body = f"{select} WHERE {where} ORDER BY due, key LIMIT $2::bigint"
        else:
            body = each_status(select, live, "$2::bigint")
        return f"WITH t AS MATERIALIZED (SELECT {_now()} AS now)\n{body}\n".encode()

    def head(self) -> bytes:
        """$1 offset: the earliest finite claimable time, whether a row's is not
        finite (or NULL: :data:`STRAY`), and the time."""
        e = self.e
        return f"""
SELECT (SELECT min(visible_at) FROM {e} WHERE visible_at <= {_MAXF}),
    (SELECT visible_at FROM {e} WHERE visible_at > {_MAXF} ORDER BY visible_at DESC
        LIMIT 1) IS NOT NULL OR (SELECT visible_at FROM {e} WHERE visible_at < -{_MAXF}
        ORDER BY visible_at LIMIT 1) IS NOT NULL OR EXISTS (SELECT 1 FROM {e} WHERE {STRAY}),
    {_now()}
""".encode()

    def _ended(self, what: str) -> str:
        s = self.schema
        return (
            f"(SELECT count(*) FROM (SELECT {_notify(s, 'f')} WHERE EXISTS (SELECT 1 FROM {what})"
            f" AND EXISTS (SELECT 1 FROM {s}.awaiting WHERE until > {_now()})) n)"
        )

    def cancel(self) -> bytes:
        """$1 offset, $2 key: delete a PENDING or FAILED row."""
        return f"""
WITH d AS (DELETE FROM {self.e} WHERE key = $2 AND status IN (0, 3) RETURNING 1)
SELECT (SELECT count(*) FROM d), {self._ended("d")}
""".encode()

    def abort(self) -> bytes:
        """$1 offset, $2 key: delete a PENDING or FAILED row, or request the abort
        of a RUNNING one (announced on the channel)."""
        e, s = self.e, self.schema
        return f"""
WITH d AS (DELETE FROM {e} WHERE key = $2 AND status IN (0, 3) RETURNING 1),
r AS (UPDATE {e} SET abort_requested = true WHERE key = $2 AND status = 1 RETURNING 1)
SELECT (SELECT count(*) FROM d), (SELECT count(*) FROM r), {self._ended("d")},
    (SELECT count(*) FROM (SELECT {_notify(s, "a")} WHERE EXISTS (SELECT 1 FROM r)) n)
""".encode()

    def aborts(self) -> bytes:
        """$1 keys, $2 tokens: the ordinals of those whose abort was requested."""
        return f"""
SELECT i.n FROM unnest($1::text[], $2::bigint[]) WITH ORDINALITY AS i(key, tok, n)
JOIN {self.e} x ON x.key = i.key AND x.token = i.tok AND {_RUNNING} AND x.abort_requested
""".encode()

    def retry(self) -> bytes:
        """$1 offset, $2 key: a FAILED row PENDING again, due now, attempt 1."""
        e, s = self.e, self.schema
        return f"""
WITH t AS MATERIALIZED (SELECT {_now()} AS now),
head AS MATERIALIZED (SELECT min(visible_at) AS h FROM {e} WHERE visible_at IS NOT NULL),
u AS (UPDATE {e} x SET status = 0, due = t.now, visible_at = t.now, attempt = 1,
    deliveries = 0, abort_requested = false, expires_at = NULL
    FROM t WHERE x.key = $2 AND x.status = 3 RETURNING x.visible_at)
SELECT count(*), (SELECT count(*) FROM (SELECT {_notify(s, "c")} FROM head
    WHERE (SELECT min(visible_at) FROM u) < coalesce(head.h, 'Infinity'::float8)) n)
FROM u
""".encode()

    def delete(self) -> bytes:
        """$1 offset, $2 key: delete a row that is not RUNNING."""
        return f"""
WITH d AS (DELETE FROM {self.e} WHERE key = $2 AND status <> 1
    AND (expires_at IS NULL OR expires_at > {_now()}) RETURNING 1)
SELECT (SELECT count(*) FROM d), {self._ended("d")}
""".encode()

    def purge(self) -> bytes:
        """$1 offset: delete the tombstones past their ``dedupe_ttl`` that no
        other transaction holds (those wait for the next purge): it never waits
        for a row, so it cannot deadlock with a batch replacing them in key order."""
        e = self.e
        return f"""
DELETE FROM {e} WHERE key IN (
    SELECT key FROM {e} WHERE expires_at <= {_now()} FOR UPDATE SKIP LOCKED)
""".encode()

    def awaiting(self) -> bytes:
        """$1 offset, $2 this store object's id, $3 seconds: finishes are announced
        until then; lapsed interests of others are dropped."""
        s = self.schema
        return f"""
WITH gone AS (DELETE FROM {s}.awaiting WHERE until < {_now()} - 3600)
INSERT INTO {s}.awaiting (id, until) VALUES ($2, {_now()} + $3::float8)
ON CONFLICT (id) DO UPDATE SET until = excluded.until
""".encode()

    def not_awaiting(self) -> bytes:
        """$1 this store object's id: it no longer waits for finishes."""
        return f"DELETE FROM {self.schema}.awaiting WHERE id = $1".encode()
