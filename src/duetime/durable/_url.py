"""open_store(url): a store from a URL, for ``Scheduler(store=...)`` and the CLI."""

from __future__ import annotations

import importlib
from typing import Any, cast
from urllib.parse import unquote

from ._store import Store

__all__ = ["open_store"]

_REDIS = ("redis://", "rediss://", "unix://")


def open_store(url: str, **options: Any) -> Store:
    """Return an unopened store for ``url`` (enter it with ``async with``, or pass
    it to ``Scheduler(store=...)``).

    - ``sqlite:///relative/path.db`` and ``sqlite:////absolute/path.db``: a
      :class:`~duetime.durable._sqlite.SQLiteStore` (``%xx`` escapes are decoded);
    - ``memory://``: a ``MemoryStore`` (one process, tests);
    - ``redis://host:6379/0``, ``rediss://...`` (TLS) and ``unix://...``: a
      ``RedisStore`` from the ``redis`` extra.

    :param options: keyword arguments for the store (``lease=``, ``dedupe_ttl=``...)
    :raises TypeError: ``url`` is not a str
    :raises ValueError: an unknown scheme, or a URL without a path
    :raises ImportError: a Redis URL without the ``redis`` extra installed
    """
    if not isinstance(url, str):
        raise TypeError(f"a store URL must be a str, not {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if sep and scheme == "sqlite":
        if not rest.startswith("/") or rest in ("/", "//"):
            raise ValueError(
                "a SQLite store URL is sqlite:///relative/path or sqlite:////absolute/path,"
                f" not {url!r}"
            )
        path = unquote(rest[1:].partition("?")[0])
        from ._sqlite import SQLiteStore

        return SQLiteStore(path, **options)
    if sep and scheme == "memory":
        if rest.strip("/"):
            raise ValueError(f"a memory store URL is just memory://, not {url!r}")
        from ._memory import MemoryStore

        return MemoryStore(**options)
    if sep and url.lower().startswith(_REDIS):
        try:
            importlib.import_module("coredis")
            module = importlib.import_module("duetime.durable._redis")
        except ImportError as exc:
            raise ImportError(
                f"a Redis store ({url.split('://')[0]}://) needs the 'redis' extra:"
                f" pip install 'duetime[redis]' ({exc})"
            ) from exc
        return cast(Store, module.RedisStore(url, **options))
    raise ValueError(
        f"unknown store URL {url!r}: use sqlite:///path, redis://host:port/db, rediss://... or memory://"
    )
