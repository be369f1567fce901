"""A PostgresStore's schema, checked and created, and its DSN shown safely."""

from __future__ import annotations

import logging
from functools import partial

import psycopg

from ._postgres_conn import Conn, Pool
from ._postgres_minutes import ensure_sql
from ._postgres_sql import APPLICATION, SCHEMA_VERSION, create_sql
from ._redact import redact_url
from ._sqlite_file import NotAStore

__all__ = ["open_schema", "show_dsn"]

logger = logging.getLogger("duetime.durable")

#: The relations a store's schema holds (another application's of the same name is refused).
_OURS = ("meta", "entries", "tokens", "awaiting")


def show_dsn(dsn: object) -> str:
    """``dsn`` as it may be shown in a log line or an error: a URL through
    :func:`redact_url`; a ``key=value`` string with the value of ``password``
    (and of any key naming a secret) as ``***``.  Never raises."""
    if not isinstance(dsn, str):
        return f"<a {type(dsn).__name__}, not a DSN>"
    if "://" in dsn:
        return redact_url(dsn)
    try:
        from psycopg.conninfo import conninfo_to_dict

        parts = conninfo_to_dict(dsn)
    except Exception:
        return "<a PostgreSQL DSN that cannot be parsed (hidden)>"
    shown = []
    for key, value in parts.items():
        secret = any(s in key.lower() for s in ("pass", "secret", "token", "key", "ssl"))
        shown.append(f"{key}=***" if secret and key != "sslmode" else f"{key}={value}")
    return redact_url("postgresql://?" + "&".join(shown)).partition("?")[2].replace("&", " ")


async def open_schema(pool: Pool, schema: str, *, read_only: bool, shown: str) -> None:
    """Check that ``schema`` holds a duetime store of :data:`SCHEMA_VERSION`, creating
    it if absent (not when ``read_only``), under a transaction-level advisory lock
    so that concurrent openers create it once.

    :raises NotAStore: the schema holds relations of those names that are not a
        duetime store, or a store of another version (nothing is changed);
        ``read_only`` and there is no store
    """
    where = f"schema {schema!r} of {shown}"
    async with pool.conn() as conn:
        found = await _judge(conn, schema, where)
        whole = found and (read_only or await _has_minutes(conn, schema))
    if whole:
        return
    if found:
        await pool.transaction(partial(_ensure, schema))
        return
    if read_only:
        raise NotAStore(f"there is no duetime store in {where} (read-only: nothing created)")

    async def create(conn: Conn) -> None:
        await conn.query(
            b"SELECT pg_advisory_xact_lock(hashtext($1))", [f"duetime:{schema}".encode()]
        )
        if not await _judge(conn, schema, where):
            await conn.script(create_sql(schema).encode())
            logger.info("PostgresStore: created the duetime store in %s", where)

    await pool.transaction(create)


async def _has_minutes(conn: Conn, schema: str) -> bool:
    """True if the store has its activity ring (a store an older duetime created has not)."""
    got = await conn.query(b"SELECT to_regclass($1) IS NOT NULL", [f"{schema}.minutes".encode()])
    return got.rows[0][0] == b"t"


async def _ensure(schema: str, conn: Conn) -> None:
    """Add the activity ring and the counts' index to a store that lacks them,
    under the store's advisory lock (concurrent openers add them once)."""
    await conn.query(b"SELECT pg_advisory_xact_lock(hashtext($1))", [f"duetime:{schema}".encode()])
    await conn.script(ensure_sql(schema).encode())


async def _judge(conn: Conn, schema: str, where: str) -> bool:
    """True if the schema holds our store of this version, False if none of our
    relations exist; else raise NotAStore."""
    got = await conn.query(
        b"SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
        b" WHERE n.nspname = $1 AND c.relname = ANY($2::text[])",
        [schema.encode(), ("{" + ",".join(_OURS) + "}").encode()],
    )
    found = {(r[0] or b"").decode("utf-8", "replace") for r in got.rows}
    if not found:
        return False
    meta: dict[str, str] = {}
    if "meta" in found:
        try:
            rows = await conn.query(f"SELECT k::text, v::text FROM {schema}.meta".encode())
            meta = {(r[0] or b"").decode(): (r[1] or b"").decode() for r in rows.rows}
        except psycopg.Error:
            meta = {}
    if meta.get("application") != APPLICATION or not found >= set(_OURS):
        raise NotAStore(
            f"{where} holds {', '.join(sorted(found))} of another application, not a duetime"
            " store; refusing to use it (nothing was changed): give the store another schema="
        )
    version = meta.get("schema_version")
    if version != str(SCHEMA_VERSION):
        raise NotAStore(
            f"{where} holds a duetime store of schema version {version!r}; this duetime reads"
            f" version {SCHEMA_VERSION}. Use a matching duetime version (nothing was changed)."
        )
    return True
