"""process_batch: do as much as possible before a deadline, and account for every item."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, Generic, TypeVar, overload

from anyio import current_effective_deadline

from .._exceptions import CallbackCancelled
from .._handle import CANCELLED, COMPLETED, EXPIRED, FAILED, Handle
from .._logs import core_log
from .._util import backend_clock
from ._checkpoint import Checkpoint
from ._pool import WorkerPool
from ._queue import number

__all__ = ["BatchReport", "process_batch"]

ItemT = TypeVar("ItemT")
T = TypeVar("T")

logger = core_log

_INF = math.inf
# Where each item ended up, by input index.
_NOT_DONE, _COMPLETED, _FAILED, _TIMED_OUT, _SKIPPED, _CHECKPOINTED = range(6)


@dataclass(slots=True)
class BatchReport(Generic[ItemT, T]):
    """What :func:`process_batch` did with each item.

    Every item is in exactly one of the five lists, each in input order::

        len(completed) + len(failed) + len(timed_out) + len(skipped)
            + len(checkpointed) == len(items)

    :ivar completed: ``(item, result)`` for each item the handler returned for
    :ivar failed: ``(item, exc)`` for each item the handler raised for (or that
        cancelled itself: ``exc`` is then a :exc:`CallbackCancelled`)
    :ivar timed_out: items cut off mid-run by ``item_timeout`` or by the deadline
    :ivar skipped: items never started, because they could not finish in time
    :ivar checkpointed: items the checkpoint shows an earlier run completed
    :ivar deadline_reached: whether the deadline stopped the batch short
    :ivar elapsed: seconds from the call to the return
    :ivar wasted: seconds spent running items that did not complete
    """

    completed: list[tuple[ItemT, T]] = field(default_factory=list)
    failed: list[tuple[ItemT, BaseException]] = field(default_factory=list)
    timed_out: list[ItemT] = field(default_factory=list)
    skipped: list[ItemT] = field(default_factory=list)
    checkpointed: list[ItemT] = field(default_factory=list)
    deadline_reached: bool = False
    elapsed: float = 0.0
    wasted: float = 0.0

    @property
    def total(self) -> int:
        """The number of items the batch was given: the five lists together."""
        return (
            len(self.completed)
            + len(self.failed)
            + len(self.timed_out)
            + len(self.skipped)
            + len(self.checkpointed)
        )


@overload
async def process_batch(
    items: Iterable[ItemT],
    handler: Callable[[ItemT], Coroutine[Any, Any, T]],
    *,
    workers: int = ...,
    deadline: float | None = ...,
    min_time: float = ...,
    item_timeout: float | None = ...,
    on_progress: Callable[[int, int], object] | None = ...,
    checkpoint: str | os.PathLike[str] | None = ...,
    key: Callable[[ItemT], str] | None = ...,
    margin: float = ...,
) -> BatchReport[ItemT, T]: ...


@overload
async def process_batch(
    items: Iterable[ItemT],
    handler: Callable[[ItemT], T],
    *,
    workers: int = ...,
    deadline: float | None = ...,
    min_time: float = ...,
    item_timeout: float | None = ...,
    on_progress: Callable[[int, int], object] | None = ...,
    checkpoint: str | os.PathLike[str] | None = ...,
    key: Callable[[ItemT], str] | None = ...,
    margin: float = ...,
) -> BatchReport[ItemT, T]: ...


async def process_batch(
    items: Iterable[ItemT],
    handler: Callable[[ItemT], Any],
    *,
    workers: int = 1,
    deadline: float | None = None,
    min_time: float = 0.0,
    item_timeout: float | None = None,
    on_progress: Callable[[int, int], object] | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    key: Callable[[ItemT], str] | None = None,
    margin: float = 0.01,
) -> BatchReport[ItemT, Any]:
    """Run ``handler(item)`` for as many items as fit before the deadline.

    Items run on a :class:`WorkerPool` of ``workers`` workers; with one worker
    they run one after another, in order.  The pool keeps a running estimate of
    an item's duration and never starts an item that could not finish, so
    little work is wasted.  The batch stops itself ``margin`` seconds before the
    deadline and *returns* its report, so
    ``with anyio.move_on_after(30): report = await process_batch(...)`` gets the
    partial results.

    :param items: the items (consumed into a list up front)
    :param handler: an async or sync function of one item (a sync one runs
        inline on the event loop and cannot be cut off: see :class:`WorkerPool`)
    :param workers: how many items run at once
    :param deadline: an absolute loop time (``anyio.current_time()``).  The
        deadline in effect around the call applies too; the earlier one wins.
    :param min_time: never start an item with less than this many seconds left
    :param item_timeout: seconds each item may run within the overall deadline
    :param on_progress: ``on_progress(done, total)`` each time an item
        finishes; ``done`` counts checkpointed items too.  Its exceptions are
        logged and do not stop the batch.
    :param checkpoint: a SQLite file recording the keys of completed items;
        items whose key is in it are not run again but reported as
        ``checkpointed`` (see :class:`Checkpoint` for durability)
    :param key: ``key(item) -> str`` for the checkpoint (default ``repr``)
    :param margin: seconds before the deadline at which the batch stops and returns
    :return: a :class:`BatchReport`
    :raises TypeError: for a non-callable handler, on_progress or key, a number
        of the wrong type, or a ``key`` that does not return a str
    :raises ValueError: for ``workers < 1``, a negative or non-finite
        ``margin``, a bad ``min_time``/``item_timeout``/``deadline``, or
        ``key`` without ``checkpoint``
    """
    items = list(items)
    margin = number(margin, "margin")
    if not (0.0 <= margin < _INF):
        raise ValueError(f"margin must be finite and >= 0, got {margin}")
    if on_progress is not None and not callable(on_progress):
        raise TypeError("on_progress must be callable")
    if key is not None:
        if not callable(key):
            raise TypeError("key must be callable")
        if checkpoint is None:
            raise ValueError("key= is only used with checkpoint=")
    if checkpoint is not None and not isinstance(checkpoint, str | os.PathLike):
        raise TypeError(f"checkpoint must be a path, not {type(checkpoint).__name__}")
    clock = backend_clock()
    t0 = clock()
    ambient = current_effective_deadline()
    if ambient != _INF:
        deadline = ambient if deadline is None else min(deadline, ambient)
    stop = None if deadline is None else deadline - margin
    # Validates handler, workers, min_time, item_timeout and deadline.
    pool = WorkerPool(
        handler,
        workers=workers,
        maxsize=workers,
        deadline=stop,
        min_time=min_time,
        item_timeout=item_timeout,
    )
    keys = None if checkpoint is None else _keys(items, repr if key is None else key)
    batch = _Batch(items, clock, stop, on_progress, keys)
    # Opened last: a bad argument above leaves no file behind.
    batch.ckpt = None if checkpoint is None else Checkpoint(checkpoint)
    try:
        todo = batch.resume()
        pool._observer = batch.observe
        async with pool:
            for i in todo:
                if batch.out_of_time():
                    break  # the rest are reported skipped, without making handles
                await batch.start(pool, i)
    finally:
        batch.close_checkpoint()
    return batch.report(t0)


def _keys(items: list[ItemT], keyfn: Callable[[ItemT], str]) -> list[str]:
    """The checkpoint key of each item, or TypeError if ``keyfn`` returns a non-str."""
    keys: list[str] = []
    for item in items:
        k = keyfn(item)
        if type(k) is not str:
            raise TypeError(f"key(item) must return a str, not {type(k).__name__}")
        keys.append(k)
    return keys


class _Batch(Generic[ItemT]):
    """One call of :func:`process_batch`: where each item ended up, and the report.

    Items are known by their input index.  The pool tells the batch how long
    each item ran (:meth:`observe`, just before the item finishes); the item's
    done-callback then records its outcome (:meth:`finished`).  Items never
    handed to the pool stay ``_NOT_DONE`` and are reported skipped.
    """

    __slots__ = (
        "ckpt",
        "clock",
        "done",
        "items",
        "keys",
        "kind",
        "on_progress",
        "outcome",
        "ran",
        "stop",
        "wasted",
    )

    def __init__(
        self,
        items: list[ItemT],
        clock: Callable[[], float],
        stop: float | None,
        on_progress: Callable[[int, int], object] | None,
        keys: list[str] | None,
    ) -> None:
        self.items = items
        self.clock = clock
        self.stop = stop  # the deadline less the margin, or None
        self.on_progress = on_progress
        self.keys = keys  # the checkpoint key of each item, with a checkpoint
        self.ckpt: Checkpoint | None = None
        n = len(items)
        self.kind = [_NOT_DONE] * n
        self.outcome: list[Any] = [None] * n  # the result, or the exception
        self.ran: dict[int, tuple[float, bool]] = {}  # handle id -> (seconds run, cut off)
        self.done = 0  # items finished or checkpointed, for on_progress
        self.wasted = 0.0

    def resume(self) -> Sequence[int]:
        """Mark the items the checkpoint shows done; return the indices left to run."""
        n = len(self.items)
        if self.ckpt is None or self.keys is None:
            return range(n)
        done_keys = self.ckpt.keys()
        kind = self.kind
        for i, k in enumerate(self.keys):
            if k in done_keys:
                kind[i] = _CHECKPOINTED
        todo = [i for i in range(n) if kind[i] != _CHECKPOINTED]
        self.done = n - len(todo)
        return todo

    def out_of_time(self) -> bool:
        """Whether the batch's stop time (deadline less margin) has come."""
        return self.stop is not None and self.clock() >= self.stop

    async def start(self, pool: WorkerPool[ItemT, Any], i: int) -> None:
        """Submit item ``i`` (waiting for room) and record its outcome when it ends."""
        h = await pool.submit(self.items[i])
        h.add_done_callback(partial(self.finished, i))

    def observe(self, h: Handle[Any], seconds: float, cut: bool) -> None:
        """The pool's hook: item ``h`` ran ``seconds`` and was (or not) cut off."""
        self.ran[h._id] = (seconds, cut)

    def finished(self, i: int, h: Handle[Any]) -> None:
        """Record where item ``i`` ended up, from its final handle ``h``."""
        st = h._st
        info = self.ran.pop(h._id, None)
        if st == COMPLETED:
            self.kind[i] = _COMPLETED
            self.outcome[i] = h._result
            self._record(i)
        else:
            if info is not None:
                self.wasted += info[0]
            if st == FAILED:
                self.kind[i] = _TIMED_OUT if info is not None and info[1] else _FAILED
                self.outcome[i] = h._result
            elif st == CANCELLED and info is not None:
                self.kind[i] = _FAILED
                self.outcome[i] = CallbackCancelled(f"item {i} was cancelled while running")
            else:
                assert st in (EXPIRED, CANCELLED)
                self.kind[i] = _SKIPPED
        self._progress()

    def _record(self, i: int) -> None:
        ckpt = self.ckpt
        if ckpt is None or self.keys is None:
            return
        try:
            ckpt.record(self.keys[i])
        except Exception:
            logger.exception("could not record item %d in checkpoint %s", i, ckpt.path)

    def _progress(self) -> None:
        self.done += 1
        if self.on_progress is not None:
            try:
                self.on_progress(self.done, len(self.items))
            except Exception:
                logger.exception("on_progress raised; the batch carries on")

    def close_checkpoint(self) -> None:
        if self.ckpt is not None:
            self.ckpt.close()

    def report(self, t0: float) -> BatchReport[ItemT, Any]:
        """The report, every item in exactly one list, in input order."""
        report: BatchReport[ItemT, Any] = BatchReport()
        outcome = self.outcome
        for i, (item, where) in enumerate(zip(self.items, self.kind, strict=True)):
            if where == _COMPLETED:
                report.completed.append((item, outcome[i]))
            elif where == _FAILED:
                report.failed.append((item, outcome[i]))
            elif where == _TIMED_OUT:
                report.timed_out.append(item)
            elif where == _CHECKPOINTED:
                report.checkpointed.append(item)
            else:
                report.skipped.append(item)
        now = self.clock()
        report.elapsed = now - t0
        report.wasted = self.wasted
        stop = self.stop
        report.deadline_reached = stop is not None and (bool(report.skipped) or now >= stop)
        return report
