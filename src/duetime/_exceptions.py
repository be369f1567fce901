"""The exceptions duetime raises."""

from __future__ import annotations

from anyio import ClosedResourceError

__all__ = [
    "CallbackCancelled",
    "DeadlineExpired",
    "DeferredFailed",
    "DuetimeError",
    "EntryExists",
    "SchedulerClosed",
]


class DuetimeError(Exception):
    """Base class of every exception duetime defines."""


class CallbackCancelled(DuetimeError):
    """Raised when awaiting, or reading the outcome of, a handle that was cancelled.

    This is deliberately *not* the backend's cancellation exception: a cancelled
    callback is an outcome the awaiter observes, not a cancellation of the awaiter.
    """


class DeadlineExpired(DuetimeError, TimeoutError):
    """A deadline carried into a callback (``inherit_deadline=True``) or a pool ran out.

    A handle that ends ``EXPIRED`` never started. A callback cut off mid-run by a
    deadline it inherited ends ``FAILED`` with this exception.
    """


class SchedulerClosed(DuetimeError, ClosedResourceError, RuntimeError):
    """Scheduling on a scheduler that has not been entered yet, or has been exited.

    duetime has one "closed" idiom, anyio's: a closed :class:`WorkerPool` raises
    :exc:`anyio.ClosedResourceError`, as anyio's streams do, and this is one
    too, so ``except anyio.ClosedResourceError`` catches both.  It is a
    :exc:`RuntimeError` as well, so ``except RuntimeError`` catches it too.
    """


class DeferredFailed(DuetimeError):
    """Awaiting a durable entry that FAILED (retries exhausted, poison, an unknown
    task, a bad payload), in whichever process ran it.

    The remote exception is described, never re-created from stored data.

    :ivar key: the entry's key
    :ivar error_type: the exception's qualified name (``""`` if unknown, e.g.
        an entry dead-lettered by a store as poison or malformed)
    :ivar message: the stored reason (``last_error``)
    :ivar traceback: the traceback as text (``""`` if unknown)
    """

    def __init__(self, key: str, error_type: str, message: str, traceback: str) -> None:
        super().__init__(key, error_type, message, traceback)
        self.key = key
        self.error_type = error_type
        self.message = message
        self.traceback = traceback

    def __str__(self) -> str:
        return f"durable entry {self.key!r} failed: {self.message}"


class EntryExists(DuetimeError, ValueError):
    """A durable entry with that key already exists (``on_conflict="error"``, or a
    ``"replace"`` of an entry that is running)."""
