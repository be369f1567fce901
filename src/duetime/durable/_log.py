"""The durable wing's loggers, and the outage log of a worker's store.

The names and what each level carries are decided, for the whole package, in
``duetime._logs`` (and shown in the guide "Observing durable work"):

- ``duetime.durable``: a worker starts and stops (INFO), each run
  (DEBUG), a failed attempt that will be retried (WARNING), a dead letter
  (ERROR), lost leases and threads that outlive a timeout or a shutdown (WARNING);
- ``duetime.durable.store``: the store stops answering, and answers again
  (:class:`StoreHealth`: one line each, never a traceback per retry).

Records about one entry carry structured fields in their ``extra``: ``key``,
``task``, ``attempt``, and for a run ``lateness`` and ``duration`` (seconds).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import anyio

from .._logs import DURABLE, STORE
from ._store import StoreLost

__all__ = [
    "STORE",
    "WORKER",
    "StoreHealth",
    "describe",
    "entry_fields",
    "printable",
    "short",
    "store_log",
    "worker_log",
]

#: Runs, retries, dead letters, leases, and a worker's start and stop.
WORKER = DURABLE

worker_log = logging.getLogger(WORKER)
store_log = logging.getLogger(STORE)

#: The longest error text a log line quotes.
_MAX_TEXT = 300


def printable(text: str, limit: int = _MAX_TEXT) -> str:
    """``text`` cut to ``limit`` characters, with control characters escaped (so an
    error quoting a store's data cannot forge log lines or drive a terminal)."""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


#: The longest key or task name a log line quotes (a row another program wrote
#: may hold any length; the record's ``extra`` keeps the whole value).
_MAX_NAME = 200


def short(text: str) -> str:
    """``text`` cut to :data:`_MAX_NAME` characters (``...`` at the end), for a log
    line that quotes a key or a task name read from a store with ``%r``."""
    return text if len(text) <= _MAX_NAME else text[: _MAX_NAME - 3] + "..."


def entry_fields(key: str, task: str, attempt: int, **more: float) -> dict[str, Any]:
    """The ``extra`` of a record about one entry."""
    return {"key": key, "task": task, "attempt": attempt, **more}


def describe(exc: BaseException) -> str:
    """``"Type: message"`` of an exception, for one log line (see :func:`printable`)."""
    text = str(exc)
    name = type(exc).__qualname__
    return printable(f"{name}: {text}" if text else name)


class StoreHealth:
    """Whether a worker's calls to its store succeed, logged once per outage.

    The worker's loops report each store call: :meth:`failed` with the error,
    :meth:`ok` after a success.  The first failure logs a WARNING on
    ``duetime.durable.store`` that says which call failed and why (its traceback
    at DEBUG); later failures log nothing; the first success after them logs a
    WARNING with the outage's length and calls ``on_back`` (the claim loop cuts
    its backoff short).  A :class:`~duetime.durable.StoreLost` is no
    outage: it is handed to ``on_lost`` and logs nothing here (the store that
    raises it logs one ERROR when it notices).

    :param on_back: called with no argument when an outage ends
    :param on_lost: called with the StoreLost a store call raised (the worker stops)
    """

    __slots__ = ("_calls", "_on_back", "_on_lost", "_since")

    def __init__(
        self,
        on_back: Callable[[], object] | None = None,
        on_lost: Callable[[StoreLost], object] | None = None,
    ) -> None:
        self._on_back = on_back
        self._on_lost = on_lost
        self._since: float | None = None  # anyio time of the outage's first failure
        self._calls = 0  # failed calls in this outage

    @property
    def down(self) -> bool:
        """Whether the last store call reported failed."""
        return self._since is not None

    def failed(self, exc: BaseException, call: str) -> None:
        """Record that the store call ``call`` (e.g. ``"claim"``) raised ``exc``."""
        if isinstance(exc, StoreLost) and self._on_lost is not None:
            self._on_lost(exc)
            return
        self._calls += 1
        if self._since is not None:
            return
        self._since = anyio.current_time()
        store_log.warning(
            "durable store: %s failed (%s); retrying, logged again when the store answers",
            call,
            describe(exc),
        )
        if store_log.isEnabledFor(logging.DEBUG):
            store_log.debug("durable store: the first error of the outage", exc_info=exc)

    def ok(self) -> None:
        """Record that a store call succeeded (ends an outage)."""
        since = self._since
        if since is None:
            return
        self._since = None
        calls, self._calls = self._calls, 0
        length = anyio.current_time() - since
        store_log.warning(
            "durable store answers again after %.1f s (%d failed calls)",
            length,
            calls,
            extra={"duration": length},
        )
        if self._on_back is not None:
            self._on_back()
