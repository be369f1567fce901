"""PostgresStore's worker path: claims, lease renewals, finishes, and both at once.

A claim is one statement (:meth:`Sql.claim <._postgres_sql.Sql.claim>`), a
group of finishes one statement per key repetition (:meth:`Sql.finish
<._postgres_sql.Sql.finish>`), each finish fenced by its token.
:meth:`WorkMixin.finish_and_claim` runs the finishes and then the claim in one
transaction: one commit, so one wait for the WAL flush where the two calls
wait for two, and the claim sees what the finishes changed (READ COMMITTED:
each statement reads what the ones before it wrote).  Every commit here waits
for the flush (``synchronous_commit`` on): a finish reported to an awaiter, or
a claim, lost in a server crash would let an entry run twice.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

import psycopg.errors

from . import _postgres_rows as rows
from ._postgres_conn import Conn, Pool, Rows, array, text_or_none
from ._postgres_minutes import RETIRED, retire_sql, stray_sql
from ._postgres_sql import Sql
from ._store import (
    RESULT_DROPPED,
    Aborted,
    Claim,
    Dead,
    Done,
    NextOccurrence,
    Outcome,
    Release,
    RetryAt,
)
from ._wakeup import Wakeup

__all__ = ["KINDS", "WorkMixin", "ensure_indexes", "finish_fields", "params"]

logger = logging.getLogger("duetime.durable")

_Fields = tuple[int, float | None, str | None, str | None, str | None, str | None]
_Run = Callable[[bytes, list[bytes | None]], Awaitable[Rows]]


def params(*values: Any) -> list[bytes | None]:
    """Query parameters in libpq's text format (a list is an array)."""
    return [array(v) if type(v) is list else text_or_none(v) for v in values]


def _groups(items: Sequence[tuple[str, int, Outcome]]) -> list[list[int]]:
    """The item indexes in statements: one statement changes a row once, so a
    key repeated in a call goes in a later statement (its token is then no
    longer current, unless the first item's was not)."""
    out: list[list[int]] = []
    pending = list(range(len(items)))
    while pending:
        seen: set[str] = set()
        now: list[int] = []
        later: list[int] = []
        for i in pending:
            (later if items[i][0] in seen else now).append(i)
            seen.add(items[i][0])
        out.append(now)
        pending = later
    return out


class WorkMixin:
    """The claim, extend and finish methods of :class:`~._postgres.PostgresStore`."""

    _offset: float
    dedupe_ttl: float
    result_ttl: float
    _sql: Sql
    _claim: bytes
    _finish: bytes
    _finished: Wakeup
    _changed: Wakeup

    if TYPE_CHECKING:  # PostgresStore's

        def _check_writable(self) -> None: ...

        def _work_pool(self) -> Pool: ...

        async def _lease_q(self, sql: bytes, *values: Any) -> Rows: ...

    async def claim(self, owner: str, limit: int) -> list[Claim]:
        """Lease up to ``limit`` claimable rows, earliest first, each with a new token,
        in one statement (see ``Store.claim``).

        Poison rows and malformed rows among them are dead-lettered in the same
        statement, alone, and so are rows that no time makes due (``visible_at``
        not a finite number, or NULL); a row whose payload the codec cannot
        decode (or whose text is not UTF-8) right after, fenced by its token.  A
        lapsed row with an abort request ends CANCELLED instead of being handed out.

        :raises ValueError: a negative limit
        :raises ReadOnlyStore: the store was opened ``read_only``
        """
        if limit < 0:
            raise ValueError(f"claim limit must be >= 0, not {limit!r}")
        self._check_writable()
        if limit == 0:
            return []
        pool = self._work_pool()
        got = await pool.query(self._claim, self._claim_params(owner, limit))
        return await self._claimed(got)

    def _claim_params(self, owner: str, limit: int) -> list[bytes | None]:
        return params(self._offset, limit, owner, self.dedupe_ttl)

    async def _claimed(self, got: Rows) -> list[Claim]:
        """The claims of a claim statement's rows; the undecodable ones dead-lettered."""
        claims: list[Claim] = []
        bad: list[tuple[str, int, Outcome]] = []
        ended = False
        for r in got.rows:
            if r[3] != b"1":
                ended = True  # dead-lettered or cancelled by the statement
                continue
            c = rows.claim(r)
            if isinstance(c, str):
                bad.append((rows.text(r[0]), int(r[11] or b"0"), Dead(c)))
            else:
                claims.append(c)
        if bad:
            await self.finish_many(bad)
        if ended or (got.rows and got.rows[0][-1] not in (b"0", None)):
            self._finished.notify()
        return claims

    async def extend(self, claims: Sequence[tuple[str, int]]) -> list[bool]:
        """Renew the leases of ``(key, token)`` pairs to now + each row's lease, in one statement.

        :raises ReadOnlyStore: the store was opened ``read_only``
        """
        self._check_writable()
        if not claims:
            return []
        keys = [k for k, _ in claims]
        tokens = [int(t) for _, t in claims]
        got = await self._lease_q(self._sql.extend(), self._offset, keys, tokens)
        hit = {int(r[0] or b"0") for r in got.rows}
        renewed = {(keys[n - 1], tokens[n - 1]) for n in hit}
        return [(k, t) in renewed for k, t in zip(keys, tokens, strict=True)]

    async def finish_many(self, items: Sequence[tuple[str, int, Outcome]]) -> list[bool]:
        """Apply each ``(key, token, outcome)`` whose token is still current, in one
        statement; each item is fenced by its own token and gets its own result.

        :raises TypeError: an outcome that is not one of the outcome types
            (nothing is applied)
        :raises ReadOnlyStore: the store was opened ``read_only``
        """
        fields = [finish_fields(outcome) for _, _, outcome in items]
        self._check_writable()
        if not items:
            return []
        pool = self._work_pool()
        out = [False] * len(items)
        for group in _groups(items):
            await self._finish_group(pool.query, items, fields, group, out)
        return out

    async def finish_and_claim(
        self, items: Sequence[tuple[str, int, Outcome]], owner: str, limit: int
    ) -> tuple[list[bool], list[Claim]]:
        """``finish_many(items)`` then ``claim(owner, limit)`` in one transaction
        (one commit): the same fencing and results as the two calls.

        :raises TypeError: an outcome that is not one of the outcome types
            (nothing is applied)
        :raises ValueError: a negative limit (nothing is applied)
        :raises ReadOnlyStore: the store was opened ``read_only``
        """
        if limit < 0:
            raise ValueError(f"claim limit must be >= 0, not {limit!r}")
        fields = [finish_fields(outcome) for _, _, outcome in items]
        self._check_writable()
        if not items or not limit:
            return await self.finish_many(items), await self.claim(owner, limit)
        pool = self._work_pool()
        out = [False] * len(items)
        claim = self._claim_params(owner, limit)

        async def work(conn: Conn) -> Rows:
            for group in _groups(items):
                await self._finish_group(conn.query, items, fields, group, out)
            return await conn.query(self._claim, claim)

        got = await pool.transaction(work)
        return out, await self._claimed(got)

    async def _finish_group(
        self,
        run: _Run,
        items: Sequence[tuple[str, int, Outcome]],
        fields: list[_Fields],
        group: list[int],
        out: list[bool],
    ) -> None:
        values: list[Any] = [self._offset, self.dedupe_ttl, self.result_ttl]
        values.append([items[i][0] for i in group])
        values.append([int(items[i][1]) for i in group])
        for col in range(6):
            values.append([fields[i][col] for i in group])
        got = await run(self._finish, params(*values))
        ended = woke = False
        for r in got.rows:
            out[group[int(r[0] or b"0") - 1]] = True
            ended = ended or r[1] == b"t"
            woke = woke or r[3] not in (b"0", None)
        if ended:
            self._finished.notify()
        if woke:
            self._changed.notify()


async def ensure_indexes(pool: Pool, schema: str) -> None:
    """Give a store an older duetime created this duetime's indexes: create
    ``entries_stray`` if absent (without it every claim would look for stray
    rows among all the PENDING ones) and drop the :data:`RETIRED
    <._postgres_minutes.RETIRED>` ones if present (each would cost every claim
    and finish an index entry), in one transaction under the store's advisory
    lock, so that concurrent openers change the store once (one that finds the
    lock taken leaves the change to its holder and does not wait).  A store
    with this layout costs one query.

    Dropping an index waits for the transactions that use the table; the wait
    is bounded (:data:`_LOCK_TIMEOUT`, or half the pool's call timeout if that
    is shorter, so that the open does not time out) so that a long transaction (a caller's
    own, holding a transactional enqueue) does not queue every claim behind
    the drop: the store is then left as it is, told in a WARNING, and the next
    open tries again.  A role that may not change the indexes (not the tables'
    owner) is told so in a WARNING too, and the store works on (its claims and
    finishes cost more).

    :raises psycopg.Error: the server failed otherwise
    """
    # Read from pg_class with the statement's snapshot (to_regclass reads the
    # backend's catalog cache, which may not yet show another opener's drop).
    probe = (
        b"SELECT count(*) FILTER (WHERE c.relname = 'entries_stray') = 0"
        b" OR count(*) FILTER (WHERE c.relname <> 'entries_stray') > 0"
        b" FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        b" WHERE n.nspname = $1 AND c.relname = ANY($2::text[])"
    )
    names = params(schema, ["entries_stray", *RETIRED])
    if (await pool.query(probe, names)).rows[0][0] != b"t":
        return

    # Within the store's own call timeout, so that the open fails on neither wait:
    # the drop's, and another opener's (which is changing the store meanwhile).
    wait = min(_LOCK_TIMEOUT, pool.timeout / 2)

    async def change(conn: Conn) -> bool:
        lock = [f"duetime:{schema}".encode()]
        got = await conn.query(b"SELECT pg_try_advisory_xact_lock(hashtext($1))", lock)
        if got.rows[0][0] != b"t":
            return False  # another opener holds the lock: it changes the store
        if (await conn.query(probe, names)).rows[0][0] != b"t":
            return False  # another opener changed it meanwhile
        await conn.query(f"SET LOCAL lock_timeout = '{max(1, int(wait * 1000))}ms'".encode())
        await conn.script((retire_sql(schema) + stray_sql(schema)).encode())
        return True

    why = ""
    try:
        changed = await pool.transaction(change)
    except psycopg.errors.InsufficientPrivilege:
        why = "only the tables' owner may: open it once as that role"
    except psycopg.errors.LockNotAvailable:
        why = (
            f"a transaction held the table for over {wait:g} s; the next open"
            " for writing tries again"
        )
    else:
        if changed:
            logger.info("PostgresStore: updated the indexes of the store in schema %r", schema)
        return
    logger.warning(
        "PostgresStore: could not bring the indexes of the store in schema %r up to date"
        " (add entries_stray, drop %s): %s; until then its claims and finishes cost more",
        schema,
        " and ".join(RETIRED),
        why,
    )


#: How long the index change of :func:`ensure_indexes` waits for the table at
#: most (seconds; half the store's call timeout if that is shorter).
_LOCK_TIMEOUT = 2.0


#: ``finish`` kinds of the outcomes, by class name.
KINDS = {"Done": 0, "RetryAt": 1, "NextOccurrence": 2, "Dead": 3, "Release": 4, "Aborted": 5}


def finish_fields(
    outcome: Outcome,
) -> tuple[int, float | None, str | None, str | None, str | None, str | None]:
    """An outcome as the finish statement's fields: kind, time, error, result,
    error type, traceback (a NUL in a text, which PostgreSQL text cannot hold,
    written as ``\\x00``; a result is the codec's JSON, which has none)."""
    return _without_nul(_fields(outcome))


def _without_nul(
    f: tuple[int, float | None, str | None, str | None, str | None, str | None],
) -> tuple[int, float | None, str | None, str | None, str | None, str | None]:
    kind, at, err, res, etype, tb = f

    def clean(text: str | None) -> str | None:
        return text.replace("\x00", "\\x00") if text is not None and "\x00" in text else text

    return kind, at, clean(err), res, clean(etype), clean(tb)


def _fields(
    outcome: Outcome,
) -> tuple[int, float | None, str | None, str | None, str | None, str | None]:
    match outcome:
        case Done(result=res, dropped=dropped):
            err = None if dropped is None else RESULT_DROPPED + dropped
            return KINDS["Done"], None, err, res, None, None
        case RetryAt(at=when, error=err):
            return KINDS["RetryAt"], float(when), err, None, None, None
        case NextOccurrence(due=when, error=err):
            return KINDS["NextOccurrence"], float(when), err, None, None, None
        case Dead(error=err, error_type=etype, traceback=tb):
            return KINDS["Dead"], None, err, None, etype, tb
        case Release():
            return KINDS["Release"], None, None, None, None, None
        case Aborted(reason=reason):
            return KINDS["Aborted"], None, reason, None, None, None
    raise TypeError(f"finish() takes an outcome (Done, RetryAt, ...), not {outcome!r}")
