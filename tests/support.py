"""Watching duetime from outside: memory it keeps and code it runs, through no private name.

Tests use these instead of reading the scheduler's internals, so that a change of
data structure cannot break a test whose behaviour did not change.
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import duetime

_PACKAGE = str(Path(duetime.__file__).parent)
# The virtual-time event loop runs on every loop iteration, whatever the
# scheduler does: its code is not the scheduler waking up.
_TESTING = {str(Path(duetime.__file__).parent / name) for name in ("testing.py", "_virtual.py")}


@contextmanager
def memory_held() -> Iterator[Callable[[], int]]:
    """Trace allocations; yield a function giving the bytes still held since entry.

    The function collects garbage first, so only memory something still refers
    to is counted.
    """
    started = not tracemalloc.is_tracing()
    if started:
        tracemalloc.start()
    gc.collect()
    base = tracemalloc.get_traced_memory()[0]

    def held() -> int:
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - base

    try:
        yield held
    finally:
        if started:
            tracemalloc.stop()


@contextmanager
def duetime_activity() -> Iterator[Callable[[], int]]:
    """Count the calls (and coroutine resumptions) of duetime code on this thread.

    Yields a function returning the count so far.  An idle scheduler, one that
    waits for its next due entry without polling, runs no duetime code at all.
    ``duetime.testing`` (the virtual-time loop itself, in ``_virtual.py``) is not counted.
    """
    calls = 0

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        nonlocal calls
        if event == "call":
            filename = frame.f_code.co_filename
            if filename.startswith(_PACKAGE) and filename not in _TESTING:
                calls += 1

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        yield lambda: calls
    finally:
        sys.setprofile(previous)


def count_instances(cls: type) -> int:
    """How many objects of ``cls`` are alive (after a garbage collection)."""
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, cls))
