"""An operator's error ends every command with one clear line on stderr and exit
status 2, never a traceback, and never a credential of the store URL.

Real ``python -m duetime`` processes, on SQLite files and on a private
redis-server that wants a password.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

import duetime

from .redis_server import RedisServer, free_port

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX paths and signals")

SRC = str(Path(duetime.__file__).resolve().parents[1])
SECRET = "s3cretPW"
# A line the worker's logging wrote (timestamp first), as opposed to the CLI's own.
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d")

JOBS = textwrap.dedent(
    """
    from duetime.durable import TaskRegistry

    tasks = TaskRegistry()

    @tasks.task("jobs.noop")
    async def noop() -> None: ...
    """
)


def duetime_cli(cwd: Path, *argv: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    (cwd / "jobs_mod.py").write_text(JOBS)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, str(cwd)])}
    return subprocess.run(
        [sys.executable, "-m", "duetime", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def one_line(proc: subprocess.CompletedProcess[str], command: str) -> str:
    """The single line an operator's error printed (the worker's log lines aside)."""
    assert proc.returncode == 2, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert SECRET not in proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if not LOG_LINE.match(line)]
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"duetime {command}: "), lines[0]
    return lines[0]


def worker(cwd: Path, url: str) -> str:
    return one_line(duetime_cli(cwd, "worker", "jobs_mod:tasks", "--store", url), "worker")


def entries(cwd: Path, url: str) -> str:
    return one_line(duetime_cli(cwd, "entries", "--store", url), "entries")


def test_a_path_instead_of_a_url(tmp_path: Path) -> None:
    for line in (worker(tmp_path, "jobs.db"), entries(tmp_path, "jobs.db")):
        assert "not a store URL: 'jobs.db'" in line
        assert "sqlite:///" in line  # the hint
    assert not (tmp_path / "jobs.db").exists()


def test_a_missing_directory(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/nowhere/jobs.db"
    assert "does not exist" in worker(tmp_path, url)
    line = entries(tmp_path, url)
    assert "No duetime store here" in line
    assert "does not exist" in line
    assert not (tmp_path / "nowhere").exists()


def test_files_that_are_not_stores(tmp_path: Path) -> None:
    (tmp_path / "random.bin").write_bytes(os.urandom(4096))
    (tmp_path / "text.txt").write_text("hello\n" * 100)
    # A SQLite header followed by garbage: only SQLite itself finds it malformed.
    (tmp_path / "malformed.db").write_bytes(
        b"SQLite format 3\x00" + b"\x10\x00\x01\x01" + bytes(80) + os.urandom(8192)
    )
    for name in ("random.bin", "text.txt", "malformed.db"):
        url = f"sqlite:///{tmp_path}/{name}"
        before = (tmp_path / name).read_bytes()
        worker(tmp_path, url)
        entries(tmp_path, url)
        assert (tmp_path / name).read_bytes() == before  # left untouched
    assert "not a SQLite database" in entries(tmp_path, f"sqlite:///{tmp_path}/random.bin")
    assert "is a directory" in entries(tmp_path, f"sqlite:///{tmp_path}")


def test_unknown_and_malformed_urls_never_show_the_password(tmp_path: Path) -> None:
    for url in (
        f"redis+sentinel://u:{SECRET}@127.0.0.1:26379/0",
        f"postgres://app:{SECRET}@db/x",
        f"redis:/:{SECRET}@127.0.0.1",
        f"redis://:{SECRET}@127.0.0.1:99999/0",
    ):
        line = entries(tmp_path, url)
        assert "***" in line or "hidden" in line or "redis://" not in line, line
        worker(tmp_path, url)
    line = entries(tmp_path, f"redis+sentinel://u:{SECRET}@127.0.0.1:26379/0")
    assert "unknown store URL scheme 'redis+sentinel://'" in line


@pytest.fixture(scope="module")
def redis_with_password(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(
        tmp_path_factory.mktemp("redis-auth"),
        extra=("--requirepass", SECRET, "--maxmemory-policy", "noeviction"),
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_redis_wrong_password_and_closed_port(
    tmp_path: Path, redis_with_password: RedisServer
) -> None:
    port = redis_with_password.port
    wrong = f"redis://:wrong{SECRET}@127.0.0.1:{port}/0"
    for line in (worker(tmp_path, wrong), entries(tmp_path, wrong)):
        assert "redis://:***@127.0.0.1" in line
        assert "invalid username-password" in line or "WRONGPASS" in line, line
    in_query = f"redis://127.0.0.1:{port}/0?password=wrong{SECRET}"
    assert "password=***" in entries(tmp_path, in_query)
    closed = f"redis://:{SECRET}@127.0.0.1:{free_port()}/0"
    for line in (worker(tmp_path, closed), entries(tmp_path, closed)):
        assert "ConnectionError" in line, line


def test_redis_with_the_right_password_lists(
    tmp_path: Path, redis_with_password: RedisServer
) -> None:
    url = f"redis://:{SECRET}@127.0.0.1:{redis_with_password.port}/0"
    proc = duetime_cli(tmp_path, "entries", "--store", url)
    assert proc.returncode == 0, proc.stderr
    assert "(0 entries)" in proc.stdout
    assert SECRET not in proc.stdout + proc.stderr


def test_a_store_that_does_not_answer_times_out(tmp_path: Path) -> None:
    # A listening socket that never answers: the TLS handshake waits for ever.
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        url = f"rediss://:{SECRET}@127.0.0.1:{sock.getsockname()[1]}/0"
        proc = duetime_cli(tmp_path, "entries", "--store", url, "--timeout", "1")
    line = one_line(proc, "entries")
    assert "did not answer within 1 s" in line


@pytest.mark.parametrize("where", ["userinfo", "query"])
def test_a_worker_never_logs_the_password(
    tmp_path: Path, redis_with_password: RedisServer, where: str
) -> None:
    port = redis_with_password.port
    url = (
        f"redis://:{SECRET}@127.0.0.1:{port}/0"
        if where == "userinfo"
        else f"redis://127.0.0.1:{port}/0?password={SECRET}"
    )
    (tmp_path / "jobs_mod.py").write_text(JOBS)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, str(tmp_path)])}
    proc = subprocess.Popen(
        [sys.executable, "-m", "duetime", "worker", "jobs_mod:tasks", "--store", url],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stderr is not None
        seen = []
        for line in proc.stderr:  # until the worker says it is ready (or exits)
            seen.append(line)
            if "ready" in line:
                break
        proc.send_signal(signal.SIGTERM)
        _, rest = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = "".join(seen) + rest
    assert proc.returncode == 0, text
    assert "ready" in text
    assert SECRET not in text
