"""ThreadedScheduler's durable methods, called from plain threads against a SQLiteStore.

These tests are synchronous, as the programs that use a ThreadedScheduler are.
The loop runs in real time (the SQLite store reads the system clock); nothing
waits on a duration: a pending entry is an hour away, a running one waits on an
event, and an outcome is awaited by an async job on the loop (``Job.result``
with a generous timeout).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from duetime import (
    CallbackCancelled,
    Deferred,
    Entry,
    SchedulerClosed,
    SQLiteStore,
    Status,
    TaskRegistry,
    ThreadedScheduler,
)
from duetime.durable import ABORTED

BACKENDS = pytest.mark.parametrize("backend", ["asyncio", "trio"])
WAIT = 60.0  # seconds a thread waits at most for the loop (a loaded machine)


def registry(started: threading.Event | None = None) -> TaskRegistry:
    tasks = TaskRegistry()

    @tasks.task("add")
    def add(a: int, b: int) -> int:
        return a + b

    @tasks.task("boom")
    def boom() -> None:
        raise ValueError("boom")

    @tasks.task("forever")
    async def forever() -> str:
        if started is not None:
            started.set()
        await anyio.sleep(3600)
        return "never"

    return tasks


def make(backend: str, path: Path, **kwargs: Any) -> ThreadedScheduler:
    kwargs.setdefault("tasks", registry())
    return ThreadedScheduler(backend, store=SQLiteStore(path / "q.db"), **kwargs)


def outcome(s: ThreadedScheduler, d: Deferred[Any]) -> Any:
    """Await ``d`` on the loop, in an async job, and give its result (or raise)."""

    async def wait() -> Any:
        return await d

    return s.call_soon(wait).result(timeout=WAIT)


def in_thread(fn: Callable[[], Any]) -> Any:
    """Call ``fn()`` in a new plain thread and give its result (or raise)."""
    box: list[Any] = []

    def run() -> None:
        try:
            box.append(("ok", fn()))
        except BaseException as exc:
            box.append(("raised", exc))

    t = threading.Thread(target=run)
    t.start()
    t.join(WAIT)
    assert not t.is_alive()
    kind, value = box[0]
    if kind == "raised":
        raise value
    return value


@BACKENDS
def test_defer_runs_a_task_and_deferred_reads_its_entry(backend: str, tmp_path: Path) -> None:
    with make(backend, tmp_path) as s:
        d = in_thread(lambda: s.defer("add", 2, 3, key="sum"))
        assert isinstance(d, Deferred)
        assert d.key == "sum"
        assert d.entry is not None
        assert d.entry.task == "add"
        assert outcome(s, d) == 5
        e = s.deferred("sum")
        assert e is not None
        assert e.status is Status.COMPLETED
        again = s.defer("add", 2, 3, key="sum")  # "keep": the tombstone, nothing stored
        assert again.entry is not None
        assert again.entry.status is Status.COMPLETED


@BACKENDS
def test_cancel_deferred_deletes_a_pending_entry(backend: str, tmp_path: Path) -> None:
    with make(backend, tmp_path, worker=False) as s:
        s.defer("add", 1, 1, key="later", delay=3600)
        assert isinstance(s.deferred("later"), Entry)
        assert in_thread(lambda: s.cancel_deferred("later")) is True
        assert s.deferred("later") is None
        assert s.cancel_deferred("later") is False  # absent now
        assert s.cancel_deferred("never-stored", abort=True) is False


@BACKENDS
def test_cancel_deferred_aborts_a_running_entry_only_when_asked(
    backend: str, tmp_path: Path
) -> None:
    started = threading.Event()
    with make(backend, tmp_path, tasks=registry(started)) as s:
        d = s.defer("forever", key="run")
        assert started.wait(WAIT)
        assert s.cancel_deferred("run") is False  # running: left alone without abort
        assert in_thread(lambda: s.cancel_deferred("run", abort=True)) is True
        with pytest.raises(CallbackCancelled, match="aborted"):
            outcome(s, d)
        e = s.deferred("run")
    assert e is not None
    assert (e.status, e.last_error) == (Status.CANCELLED, ABORTED)


@BACKENDS
def test_the_other_durable_methods(backend: str, tmp_path: Path) -> None:
    with make(backend, tmp_path) as s:
        ds = s.defer_many("add", [(1, 2), (3, 4)], keys=["a", "b"])
        assert [d.key for d in ds] == ["a", "b"]
        assert [outcome(s, d) for d in ds] == [3, 7]
        series = s.defer_every(3600, "add", 0, 0, key="hourly", start=3600)
        assert series.entry is not None
        assert series.entry.schedule is not None
        assert [e.key for e in s.deferred_entries(status=Status.PENDING)] == ["hourly"]
        assert s.cancel_deferred("hourly") is True

        with pytest.raises(Exception, match="boom"):
            outcome(s, s.defer("boom", key="bad"))
        assert [e.key for e in s.dead_letters()] == ["bad"]
        assert s.retry_deferred("bad") is True
        with pytest.raises(Exception, match="boom"):
            outcome(s, s.deferred_handle("bad"))
        assert s.delete_deferred("bad") is True
        assert s.deferred("bad") is None
        assert s.dead_letters() == []


def test_bad_input_raises_at_the_call_site(tmp_path: Path) -> None:
    with make("asyncio", tmp_path, worker=False) as s:
        with pytest.raises(TypeError, match="key must be a str"):
            s.cancel_deferred(1)  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="abort"):
            s.cancel_deferred("k", abort="yes")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="key must be a str"):
            s.deferred_handle(1)  # type: ignore[arg-type]
        with pytest.raises(LookupError):
            s.defer("no-such-task")
        with pytest.raises(ValueError, match="delay"):
            s.defer("add", 1, 2, delay=-1)


def test_without_a_store_the_durable_methods_say_so() -> None:
    with ThreadedScheduler() as s:
        with pytest.raises(RuntimeError, match="no durable store"):
            s.cancel_deferred("k")
        with pytest.raises(RuntimeError, match="no durable store"):
            s.defer("add", 1, 2)
        with pytest.raises(RuntimeError, match="no durable store"):
            s.deferred_handle("k")


def test_store_and_tasks_go_together(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="go together"):
        ThreadedScheduler(store=SQLiteStore(tmp_path / "q.db"))
    with pytest.raises(TypeError, match="go together"):
        ThreadedScheduler(tasks=registry())


def test_before_start_and_after_shutdown_they_raise_scheduler_closed(tmp_path: Path) -> None:
    s = make("asyncio", tmp_path, worker=False)
    with pytest.raises(SchedulerClosed, match="not running"):
        s.cancel_deferred("k")
    s.start()
    s.defer("add", 1, 1, key="k", delay=3600)
    s.shutdown()
    with pytest.raises(SchedulerClosed, match="shut down"):
        s.cancel_deferred("k")
    with pytest.raises(SchedulerClosed, match="shut down"):
        s.deferred("k")
    # The entry outlived the process's scheduler: the next one finds it.
    with make("asyncio", tmp_path, worker=False) as again:
        assert again.cancel_deferred("k") is True


def test_on_the_loop_thread_a_blocking_call_refuses(tmp_path: Path) -> None:
    with make("asyncio", tmp_path, worker=False) as s:
        job = s.call_soon(lambda: s.deferred("k"), in_thread=False)  # runs on the loop
        with pytest.raises(RuntimeError, match="loop's own thread"):
            job.result(timeout=WAIT)


def test_a_store_that_cannot_be_opened_fails_start_and_stops_the_loop_thread(
    tmp_path: Path,
) -> None:
    s = ThreadedScheduler(store=SQLiteStore(tmp_path / "no" / "such" / "q.db"), tasks=registry())
    with pytest.raises(FileNotFoundError, match=r"q\.db"), s:
        pass  # never reached: entering raises
    assert not [t for t in threading.enumerate() if t.name == "duetime-scheduler"]
    with pytest.raises(SchedulerClosed, match="shut down"):
        s.call_soon(print)
    with pytest.raises(SchedulerClosed, match="shut down"):
        s.deferred("k")
    s.shutdown()  # nothing left to stop: returns at once
