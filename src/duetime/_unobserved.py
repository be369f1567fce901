"""Failures nobody has looked at yet: reported when their handle goes, not when they fail.

A program that schedules several calls and then awaits each in turn handles
every failure, even one that happened before it reached its ``await``.  So an
unobserved failure is held here until someone observes it (awaits the handle,
reads ``exception``/``return_value``, adds a done-callback), and reported only
if nobody does before the handle is garbage-collected or the scheduler's block
exits.  The registry is bounded: past :data:`LIMIT` held failures the oldest is
reported at once, so a service that never looks at its handles does not
accumulate them.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from ._handle import FAILED, Extra, Handle

__all__ = ["LIMIT", "Unobserved"]

#: Failures held at most; beyond this the oldest is reported right away.
LIMIT = 1024


class Unobserved:
    """Holds failed handles nobody observed; reports them at GC, at close, or past LIMIT."""

    __slots__ = ("__weakref__", "_collected_keys", "_held", "_report", "defer")

    def __init__(self, report: Callable[[Handle[Any], BaseException], None]) -> None:
        self._report = report
        #: How a report found at garbage collection is put off to a safe place
        #: (the event loop, soon): a collection can happen in the middle of
        #: anything.  None: report at once.
        self.defer: Callable[[Callable[[], None]], object] | None = None
        self._collected_keys: list[int] = []
        # handle id -> (weak ref to the handle, its exception, its name), oldest first.
        self._held: dict[int, tuple[weakref.ref[Handle[Any]], BaseException, str]] = {}

    def __len__(self) -> int:
        return len(self._held)

    def hold(self, h: Handle[Any], exc: BaseException) -> None:
        """Hold ``h``'s failure until it is observed, collected, or flushed."""
        me = weakref.ref(self)
        key = h._id

        def collected(_ref: weakref.ref[Handle[Any]]) -> None:
            registry = me()
            if registry is not None:
                registry._collected(key)

        self._held[key] = (weakref.ref(h, collected), exc, h.name)
        h._extra().unobserved = self
        if len(self._held) > LIMIT:
            oldest = next(iter(self._held))
            self._flush_one(oldest)

    def discard(self, h: Handle[Any]) -> None:
        """``h`` was observed: forget its failure."""
        self._held.pop(h._id, None)

    def flush(self) -> None:
        """Report every failure still held (the block is exiting)."""
        while self._held:
            self._flush_one(next(iter(self._held)))

    def _flush_one(self, key: int) -> None:
        ref, exc, name = self._held.pop(key)
        h = ref()
        if h is None:
            h = _ghost(key, exc, name)
        else:
            x = h._x
            if x is not None:
                x.unobserved = None
        self._report(h, exc)

    def _collected(self, key: int) -> None:
        # Only note it here: list.append is safe wherever a collection happens.
        self._collected_keys.append(key)
        defer = self.defer
        if defer is None:
            self._report_collected()
            return
        try:
            defer(self._report_collected)
        except Exception:  # the loop is gone: report right here
            self._report_collected()

    def _report_collected(self) -> None:
        keys = self._collected_keys
        while keys:
            key = keys.pop(0)
            entry = self._held.pop(key, None)
            if entry is not None:
                _ref, exc, name = entry
                self._report(_ghost(key, exc, name), exc)


def _ghost(key: int, exc: BaseException, name: str) -> Handle[Any]:
    """A finished stand-in for a collected handle, so ``on_error`` still gets a Handle."""
    x = Extra()
    x.name = name
    h: Handle[Any] = Handle(0.0, _collected_handle, (), None, x)
    h._id = key
    h._st = FAILED
    h._result = exc
    h._func = None
    h._args = None
    return h


def _collected_handle() -> None:
    """Stands in as the callback of a handle that was garbage-collected."""
