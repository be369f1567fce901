"""Entry keys: the check ``defer`` makes, and the time-ordered keys it makes up."""

from __future__ import annotations

import os
import time

__all__ = ["MAX_KEY", "check_key", "lookup_key", "new_keys"]

#: The longest key (and worker name) a store is given, in characters.
MAX_KEY = 512


def check_key(key: object, what: str = "key") -> str:
    """``key`` if it is a str of 1 to :data:`MAX_KEY` printable characters.

    :raises TypeError: not a str
    :raises ValueError: empty, too long, or not printable
    """
    if not isinstance(key, str):
        raise TypeError(f"{what} must be a str, got {key!r}")
    if not key or len(key) > MAX_KEY or not key.isprintable():
        raise ValueError(f"{what} must be 1 to {MAX_KEY} printable characters, got {key!r}")
    return key


def lookup_key(key: object) -> str:
    """A key to look up or delete: any str, even one ``defer`` would refuse (a
    store may list such keys: a row another program wrote, set aside as
    malformed, must stay reachable through the Scheduler).

    :raises TypeError: not a str
    """
    if not isinstance(key, str):
        raise TypeError(f"key must be a str, got {key!r}")
    return key


def new_keys(n: int) -> list[str]:
    """``n`` fresh keys, time-ordered like a UUIDv7: the time in milliseconds
    (12 hex digits), 80 random bits per call (20), and for a batch a counter (6).
    Ordered keys go to the right edge of a store's key index instead of random
    pages (SQLite writes about half as many pages per batch)."""
    head = f"{time.time_ns() // 1_000_000:012x}{os.urandom(10).hex()}"
    if n == 1:
        return [head]
    if n > _COUNTED:
        return [f"{head}{i:06x}" for i in range(n)]
    global _counters
    counters = _counters
    if not counters:  # written on the first batch, then reused (formatting costs more)
        counters = _counters = tuple(f"{i:06x}" for i in range(_COUNTED))
    return [head + c for c in counters[:n]]


#: The counters of a batch's first keys.
_counters: tuple[str, ...] = ()
_COUNTED = 1024
