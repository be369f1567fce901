"""open_store(url): a store from a URL, for ``Scheduler(store=...)`` and the CLI."""

from __future__ import annotations

import importlib.util
from typing import Any
from urllib.parse import unquote

from ._redact import redact_url
from ._store import Store

__all__ = ["open_store"]

_REDIS = ("redis://", "rediss://", "unix://")
_POSTGRES = ("postgresql://", "postgres://")


def _quoted(url: str) -> str:
    shown = redact_url(url)
    return shown if shown.startswith("<") else repr(shown)


def open_store(url: str, *, read_only: bool = False, **options: Any) -> Store:
    """Return an unopened store for ``url`` (enter it with ``async with``, or pass
    it to ``Scheduler(store=...)``).

    - ``sqlite:///relative/path.db`` and ``sqlite:////absolute/path.db``: a
      :class:`~duetime.durable.SQLiteStore` (``%xx`` escapes are decoded);
    - ``memory://``: a ``MemoryStore`` (one process, tests);
    - ``redis://host:6379/0``, ``rediss://...`` (TLS) and ``unix://...``: a
      ``RedisStore`` from the ``redis`` extra;
    - ``postgresql://user:password@host:5432/db`` and ``postgres://...``: a
      ``PostgresStore`` from the ``postgres`` extra (the URL is its DSN).

    Error messages show the URL through :func:`redact_url`, never its password.

    :param read_only: open the store for listing only (``get``, ``entries``):
        a SQLite file is never created or written (it may sit on a read-only
        file or mount; a missing one raises FileNotFoundError when entered), a
        Redis or PostgreSQL store is read without writing anything to the server; a new
        ``memory://`` store is empty, so there is nothing to protect
    :param options: keyword arguments for the store (``lease=``, ``dedupe_ttl=``...)
    :raises TypeError: ``url`` is not a str
    :raises ValueError: an unknown scheme, or a URL without a path
    :raises ImportError: a Redis URL without the ``redis`` extra installed, or a
        PostgreSQL URL without the ``postgres`` extra
    """
    if not isinstance(url, str):
        raise TypeError(f"a store URL must be a str, not {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if sep and scheme == "sqlite":
        if not rest.startswith("/") or rest in ("/", "//"):
            raise ValueError(
                "a SQLite store URL is sqlite:///relative/path or sqlite:////absolute/path,"
                f" not {_quoted(url)}"
            )
        path = unquote(rest[1:].partition("?")[0])
        from ._sqlite import SQLiteStore

        if read_only:
            options["read_only"] = True
        return SQLiteStore(path, **options)
    if sep and scheme == "memory":
        if rest.strip("/"):
            raise ValueError(f"a memory store URL is just memory://, not {_quoted(url)}")
        from ._memory import MemoryStore

        return MemoryStore(**options)
    if sep and url.lower().startswith(_REDIS):
        if importlib.util.find_spec("coredis") is None:
            raise ImportError(
                f"a Redis store ({url.split('://')[0]}://) needs the 'redis' extra:"
                " pip install 'duetime[redis]'"
            )
        # Lazy: the Redis store (and coredis) load only for a Redis URL.
        from ._redis import RedisStore

        if read_only:
            options["read_only"] = True
        return RedisStore(url, **options)
    if sep and url.lower().startswith(_POSTGRES):
        if importlib.util.find_spec("psycopg") is None:
            raise ImportError(
                f"a PostgreSQL store ({url.split('://')[0]}://) needs the 'postgres' extra:"
                " pip install 'duetime[postgres]'"
            )
        # Lazy: the PostgreSQL store (and psycopg) load only for a PostgreSQL URL.
        from ._postgres import PostgresStore

        if read_only:
            options["read_only"] = True
        return PostgresStore(url, **options)
    if not sep:
        raise ValueError(
            f"not a store URL: {_quoted(url)} (a SQLite file is sqlite:///relative/path.db"
            " or sqlite:////absolute/path.db)"
        )
    raise ValueError(
        f"unknown store URL scheme {redact_url(scheme + '://')!r}: use sqlite:///path,"
        " redis://host:port/db, rediss://..., unix://..., postgresql://... or memory://"
    )
