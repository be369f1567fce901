"""``python -m duetime worker`` honours SIGTERM and SIGINT at any moment: while
its store does not answer, after the store came back from a restart, and a
second time while the shutdown waits for a sync task's thread.

Real processes, a private redis-server, real time: every wait has a generous
deadline, no assertion is about a duration.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import anyio
import pytest

import duetime
from duetime import Status
from duetime.durable import RedisStore, SQLiteStore, Store, TaskRegistry

from .redis_server import RedisServer

pytestmark = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="POSIX signals, /proc/PID/status"
)

T = TypeVar("T")

SRC = str(Path(duetime.__file__).resolve().parents[1])

JOBS = textwrap.dedent(
    """
    import os
    import time
    from duetime.durable import TaskRegistry, current_entry

    tasks = TaskRegistry()

    @tasks.task("jobs.note")
    async def note(path: str) -> None:
        with open(path, "a") as f:
            f.write(current_entry().key + "\\n")

    @tasks.task("jobs.block", lease=2)
    def block(started: str, gate: str) -> None:
        open(started, "w").close()
        while not os.path.exists(gate):  # a thread the worker cannot interrupt
            time.sleep(0.05)
    """
)

producer = TaskRegistry()
producer.task("jobs.note")(lambda path: None)
producer.task("jobs.block", lease=2)(lambda started, gate: None)


class Worker:
    """A ``python -m duetime worker`` process whose stderr is collected by a thread."""

    def __init__(self, cwd: Path, url: str, *extra: str) -> None:
        (cwd / "jobs_mod.py").write_text(JOBS)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, str(cwd)])}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "duetime", "worker", "jobs_mod:tasks", "--store", url, *extra],
            cwd=cwd,
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def text(self) -> str:
        return "".join(self.lines)

    def wait_for(self, what: str | Callable[[], bool], limit: float = 60.0) -> None:
        deadline = time.monotonic() + limit
        while not (what() if callable(what) else what in self.text):
            if self.proc.poll() is not None and not callable(what):
                self._reader.join(5)
                if what in self.text:
                    return
                raise AssertionError(f"the worker exited ({self.proc.returncode}):\n{self.text}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what!r}:\n{self.text}")
            time.sleep(0.02)

    def handles_sigterm(self) -> bool:
        """Whether the process catches SIGTERM yet (its handler is installed)."""
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        caught = int(
            next(ln for ln in status.splitlines() if ln.startswith("SigCgt:")).split()[1], 16
        )
        return bool(caught & (1 << (signal.SIGTERM - 1)))

    def exit_status(self, limit: float = 60.0) -> int:
        try:
            status = self.proc.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"still running {limit} s after the signal:\n{self.text}"
            ) from None
        self._reader.join(5)
        return status

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    directory = tmp_path / "redis"
    directory.mkdir()
    server = RedisServer(directory, appendonly=True)
    server.start()
    try:
        yield server
    finally:
        if server.proc is not None:
            server.proc.send_signal(signal.SIGCONT)
        server.stop()


def run(fn: Callable[..., Awaitable[T]], *args: object) -> T:
    return anyio.run(fn, *args, backend="asyncio")


async def defer_and_wait(store: Store, key: str, note: Path) -> Status:
    async with duetime.Scheduler(store=store, tasks=producer, worker=False) as r:
        await r.defer("jobs.note", str(note), key=key)
        with anyio.fail_after(60):
            while True:
                e = await r.deferred(key)
                assert e is not None
                if e.status is not Status.PENDING and e.status is not Status.RUNNING:
                    return e.status
                await anyio.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_while_the_store_does_not_answer_stops_the_worker(
    tmp_path: Path, redis_server: RedisServer, sig: signal.Signals
) -> None:
    assert redis_server.proc is not None
    redis_server.proc.send_signal(signal.SIGSTOP)  # accepts connections, never answers
    worker = Worker(tmp_path, redis_server.url)
    try:
        worker.wait_for(worker.handles_sigterm)
        worker.proc.send_signal(sig)
        status = worker.exit_status()
    finally:
        worker.kill()
    assert status == 0, worker.text
    assert f"{sig.name} while opening the store: not starting" in worker.text
    assert "stopped before the store redis://127.0.0.1:" in worker.text
    assert "ready" not in worker.text


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_a_worker_that_reconnected_after_a_redis_restart_stops_on_sigterm(
    tmp_path: Path, redis_server: RedisServer, backend: str
) -> None:
    worker = Worker(tmp_path, redis_server.url, "--backend", backend)
    try:
        worker.wait_for("ready")
        note = tmp_path / "notes.txt"
        assert run(defer_and_wait, RedisStore(redis_server.url), "before", note) is Status.COMPLETED
        redis_server.stop()
        time.sleep(3)  # the outage (the scenario, not a wait for something)
        redis_server.start()  # the same port, the same append-only file
        assert run(defer_and_wait, RedisStore(redis_server.url), "after", note) is Status.COMPLETED
        worker.proc.send_signal(signal.SIGTERM)
        status = worker.exit_status()
    finally:
        worker.kill()
    assert status == 0, worker.text
    assert "SIGTERM: stopping" in worker.text
    assert " stopped" in worker.text
    assert note.read_text().split() == ["before", "after"]
    # The outage: one line when it started and one when it ended.
    assert worker.text.count("durable store answers again after") <= 1


def test_sigterm_waits_for_a_thread_and_a_second_one_exits_at_once(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    url = f"sqlite:///{db}"
    started, gate = tmp_path / "started", tmp_path / "gate"

    async def defer() -> None:
        async with duetime.Scheduler(store=SQLiteStore(db), tasks=producer, worker=False) as r:
            await r.defer("jobs.block", str(started), str(gate), key="b")

    async def status() -> tuple[Status, int]:
        async with SQLiteStore(db) as store:
            e = await store.get("b")
            assert e is not None
            return e.status, e.deliveries

    worker = Worker(tmp_path, url, "--grace", "0.5")
    try:
        worker.wait_for("ready")
        run(defer)
        worker.wait_for(started.exists)
        worker.proc.send_signal(signal.SIGTERM)
        worker.wait_for("'jobs.block' (entry 'b') still runs in a thread")
        time.sleep(3)  # past the grace and the 2 s lease (the scenario, not a wait)
        assert worker.proc.poll() is None
        assert run(status) == (Status.RUNNING, 1)  # still leased: renewed by the worker
        worker.proc.send_signal(signal.SIGTERM)
        code = worker.exit_status()
    finally:
        gate.touch()
        worker.kill()
    assert code == 128 + signal.SIGTERM, worker.text
    assert "second SIGTERM" in worker.text
    assert "1 task thread(s) abandoned" in worker.text


def test_sigterm_waits_for_a_thread_and_records_its_outcome(tmp_path: Path) -> None:
    db = tmp_path / "jobs.db"
    url = f"sqlite:///{db}"
    started, gate = tmp_path / "started", tmp_path / "gate"

    async def defer() -> None:
        async with duetime.Scheduler(store=SQLiteStore(db), tasks=producer, worker=False) as r:
            await r.defer("jobs.block", str(started), str(gate), key="b")

    async def status() -> tuple[Status, int]:
        async with SQLiteStore(db) as store:
            e = await store.get("b")
            assert e is not None
            return e.status, e.deliveries

    worker = Worker(tmp_path, url, "--grace", "0.5")
    try:
        worker.wait_for("ready")
        run(defer)
        worker.wait_for(started.exists)
        worker.proc.send_signal(signal.SIGTERM)
        worker.wait_for("still runs in a thread")
        gate.touch()
        code = worker.exit_status()
    finally:
        gate.touch()
        worker.kill()
    assert code == 0, worker.text
    assert run(status) == (Status.COMPLETED, 1)
