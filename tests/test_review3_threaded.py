"""Hostile review of ThreadedScheduler's durable methods, from plain threads."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from duetime import SchedulerClosed

from .test_threaded_durable import BACKENDS, WAIT, make


def in_new_thread(fn: Callable[[], Any]) -> Any:
    """``fn()`` in a new thread: its result, or the exception it raised."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except BaseException as exc:  # handed back to the test
            out.append(exc)

    t = threading.Thread(target=run)
    t.start()
    t.join(WAIT)
    assert out, "the thread did not finish"
    return out[0]


@BACKENDS
def test_after_shutdown_a_new_thread_is_not_taken_for_the_loops(
    backend: str, tmp_path: Path
) -> None:
    # A thread started once the loop's has ended may get its ident: it must be
    # told the scheduler is closed, not that it is the loop's own thread.
    s = make(backend, tmp_path)
    s.start()
    s.defer("add", 1, 2)
    s.shutdown()
    # Many threads at once: one of them is all but sure to get the loop's ident.
    results: list[Any] = []
    lock = threading.Lock()

    def call() -> None:
        for fn in (lambda: s.defer("add", 1, 2), s.shutdown):
            got: Any
            try:
                got = fn()
            except BaseException as exc:  # handed back to the test
                got = exc
            with lock:
                results.append(got)

    for _ in range(3):
        threads = [threading.Thread(target=call) for _ in range(40)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(WAIT)
    assert len(results) == 240
    odd = [r for r in results if r is not None and not isinstance(r, SchedulerClosed)]
    assert odd == []  # each defer: SchedulerClosed; each shutdown: a no-op


@BACKENDS
def test_many_threads_deferring_through_a_shutdown(backend: str, tmp_path: Path) -> None:
    s = make(backend, tmp_path)
    s.start()
    go = threading.Event()
    lock = threading.Lock()
    stored: list[str] = []
    odd: list[BaseException] = []
    some = threading.Semaphore(0)

    def producer(n: int) -> None:
        go.wait(WAIT)
        for i in range(100):
            key = f"p{n}-{i}"
            try:
                s.defer("add", n, i, delay=3600, key=key)
            except SchedulerClosed:
                return
            except BaseException as exc:  # handed back to the test
                with lock:
                    odd.append(exc)
                return
            with lock:
                stored.append(key)
            some.release()

    threads = [threading.Thread(target=producer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    go.set()
    for _ in range(20):
        assert some.acquire(timeout=WAIT)  # some calls went through before the shutdown
    s.shutdown()
    for t in threads:
        t.join(WAIT)
    assert odd == []
    again = make(backend, tmp_path, worker=False)
    with again:
        keys = {e.key for e in again.deferred_entries(limit=10_000)}
    assert set(stored) <= keys  # every call that returned is in the store


@BACKENDS
def test_a_bad_argument_raises_in_the_calling_thread(backend: str, tmp_path: Path) -> None:
    s = make(backend, tmp_path)
    with s:
        for call in (
            lambda: s.defer("add", {1}, 2),
            lambda: s.defer("add", 1, object()),
            lambda: s.defer_many("add", [(1, 2), (1, {2})]),
            lambda: s.defer("add", 1, 2, delay="5"),  # type: ignore[call-overload]
        ):
            got = in_new_thread(call)
            assert isinstance(got, TypeError), repr(got)
        for call in (
            lambda: s.defer("add", 1, float("nan")),
            lambda: s.defer("add", 1, "\ud800"),
        ):
            got = in_new_thread(call)
            assert isinstance(got, ValueError), repr(got)
        assert s.deferred_entries(limit=10) == []
