"""What a RedisStore logs about its server (:func:`check_eviction`), and the
coredis log records it quiets while it is open (see :class:`_CoredisNoise`)."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from ._redact import redact_url
from ._redis_rows import text

if TYPE_CHECKING:
    import coredis

__all__ = ["check_eviction", "quiet_coredis", "unquiet_coredis"]

logger = logging.getLogger("duetime")


async def check_eviction(client: coredis.Redis[bytes], url: str) -> None:
    """Log a WARNING on the ``duetime`` logger if the server at ``url`` may evict
    keys (``maxmemory-policy`` is not ``noeviction``): an evicted row is a lost
    entry.  The URL is logged without its password."""
    from coredis.exceptions import ResponseError

    try:
        config = await client.config_get(["maxmemory-policy"])
    except ResponseError:  # CONFIG is disabled on some managed servers
        logger.info("RedisStore: cannot read maxmemory-policy (CONFIG is disabled)")
        return
    raw = config.get(b"maxmemory-policy", b"noeviction")
    policy = text(raw) if isinstance(raw, bytes | str) else "noeviction"
    if policy != "noeviction":
        logger.warning(
            "RedisStore %s: the server's maxmemory-policy is %r, not 'noeviction': "
            "under memory pressure Redis may evict durable entries (lost work)",
            redact_url(url),
            policy,
        )


class _CoredisNoise(logging.Filter):
    """Two kinds of coredis records that say nothing a RedisStore does not: a
    connection attempt "failed" because its caller was cancelled (a timeout or a
    shutdown: dropped), and a traceback-less ``exc_info`` that prints as
    ``NoneType: None`` (the line is kept, without it).

    It sits on the ``coredis`` logger only while at least one RedisStore is open
    (:func:`quiet_coredis`): importing duetime changes no other library's logging.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and not isinstance(exc, Exception):
            return False  # a cancellation (or an interrupt), not a failure
        if record.exc_info and exc is None:
            record.exc_info = None
        return True


_NOISE = _CoredisNoise()
_open_stores = 0  # RedisStores open in this process, each counted once
_open_lock = threading.Lock()  # stores may be opened on event loops in several threads


def quiet_coredis() -> None:
    """Count one more open store; the first one adds the filter."""
    global _open_stores
    with _open_lock:
        _open_stores += 1
        if _open_stores == 1:
            logging.getLogger("coredis").addFilter(_NOISE)


def unquiet_coredis() -> None:
    """Count one store fewer; the last one removes the filter."""
    global _open_stores
    with _open_lock:
        _open_stores -= 1
        if _open_stores == 0:
            logging.getLogger("coredis").removeFilter(_NOISE)
