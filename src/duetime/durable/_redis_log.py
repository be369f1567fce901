"""The coredis log records a RedisStore quiets while it is open (see :class:`_CoredisNoise`)."""

from __future__ import annotations

import logging
import threading

__all__ = ["quiet_coredis", "unquiet_coredis"]


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
