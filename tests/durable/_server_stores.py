"""The stores on a server that share the real-process scenarios: PostgresStore and RedisStore.

:func:`open_store` opens either by its kind; :data:`LABELS` names its server in
the scenarios' messages.  Imported by the scenarios and by their worker processes
(tests/durable/_store_host.py), so it imports no test plugin.
"""

from __future__ import annotations

from typing import Any

from duetime.durable import PostgresStore, RedisStore, Store

#: The kinds of store on a server, and what the scenarios call their server.
LABELS = {"postgres": "PostgreSQL", "redis": "Redis"}


def open_store(kind: str, url: str, namespace: str | None = None, **options: Any) -> Store:
    """An unopened store of ``kind`` on ``url``.

    :param kind: ``"postgres"`` or ``"redis"``
    :param namespace: the PostgreSQL schema or the Redis key prefix (the
        store's default without one: the command line's too)
    :param options: more store options (``lease``, ``poll``)
    :raises ValueError: an unknown ``kind``
    """
    if kind == "postgres":
        if namespace is not None:
            options["schema"] = namespace
        return PostgresStore(url, **options)
    if kind == "redis":
        if namespace is not None:
            options["prefix"] = namespace
        return RedisStore(url, **options)
    raise ValueError(f"kind must be one of {sorted(LABELS)}, not {kind!r}")
