"""Real Redis servers for the RedisStore tests (a pytest plugin: tests/conftest.py loads it).

- ``redis_url``: the shared server, ``$DUETIME_TEST_REDIS_URL`` (``.ci/run`` starts
  one), else a private ``redis-server`` started for the session when the binary
  is installed.  With neither, the tests skip with the reason, except under
  ``CI=true``, where they fail: CI must not silently skip Redis.
- ``redis_store``: a factory of unopened :class:`RedisStore` objects, each with a
  fresh prefix (so tests never see each other's rows), keys deleted afterwards.
- :class:`RedisServer`: a private server on a free loopback port in a temp dir,
  for tests that kill or restart it (append-only persistence on).

Nothing here reaches any address but loopback: a non-loopback URL is refused.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from duetime.durable import RedisStore

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> None:
    """Skip (locally) or fail (under CI=true) a test that needs Redis."""
    if in_ci():
        pytest.fail(f"CI=true but Redis is unavailable: {reason}")
    pytest.skip(f"no Redis server: {reason}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _resp(*args: str) -> bytes:
    out = f"*{len(args)}\r\n".encode()
    for arg in args:
        raw = arg.encode()
        out += b"$%d\r\n%s\r\n" % (len(raw), raw)
    return out


def command(host: str, port: int, *args: str, db: int = 0, timeout: float = 2.0) -> bytes:
    """Send one command in RESP (after a SELECT of ``db``) and return the raw
    replies (a tiny sync client for health checks and cleanup, so fixtures need
    no event loop)."""
    if host not in LOOPBACK:
        raise ValueError(f"tests only talk to loopback, not {host!r}")
    with socket.create_connection((host, port), timeout=timeout) as s:
        s.sendall(_resp("SELECT", str(db)) + _resp(*args))
        reply = b""
        while reply.count(b"\r\n") < 2:
            chunk = s.recv(65536)
            if not chunk:
                break
            reply += chunk
        return reply.partition(b"\r\n")[2]


def ping(host: str, port: int, *, tls: bool = False) -> bool:
    if tls:  # a TLS server answers a TLS handshake: enough to know it listens
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        try:
            with (
                socket.create_connection((host, port), timeout=0.5) as raw,
                context.wrap_socket(raw, server_hostname=host),
            ):
                return True
        except OSError:
            return False
    try:
        # +PONG, or an error such as -NOAUTH from a server that wants a password;
        # not -LOADING: a restarted server still reading its append-only file
        # refuses every command (BusyLoadingError) until it has read it.
        reply = command(host, port, "PING", timeout=0.5)
        return reply.startswith((b"+", b"-")) and not reply.startswith(b"-LOADING")
    except OSError:
        return False


class RedisServer:
    """A private redis-server on a free loopback port, its files in ``directory``.

    :param appendonly: turn on AOF with fsync on every write (``appendfsync always``),
        so a restart keeps every acknowledged write
    :param extra: more ``redis-server`` arguments
    :param tls: ``(certfile, keyfile)``: serve TLS only, on :attr:`port`
    """

    def __init__(
        self,
        directory: Path,
        *,
        appendonly: bool = False,
        extra: tuple[str, ...] = (),
        tls: tuple[Path, Path] | None = None,
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            unavailable("redis-server is not installed (apt-get install redis-server)")
        self.binary = str(binary)
        self.directory = directory
        self.appendonly = appendonly
        self.extra = extra
        self.tls = tls
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        args = [self.binary, "--bind", "127.0.0.1"]
        if self.tls is None:
            args += ["--port", str(self.port)]
        else:
            args += ["--port", "0", "--tls-port", str(self.port), "--tls-auth-clients", "no"]
            args += ["--tls-cert-file", str(self.tls[0]), "--tls-key-file", str(self.tls[1])]
        args += ["--dir", str(self.directory), "--save", "", "--daemonize", "no"]
        if self.appendonly:
            args += ["--appendonly", "yes", "--appendfsync", "always"]
        else:
            args += ["--appendonly", "no"]
        args += self.extra
        log = open(self.directory / "redis.log", "ab")  # noqa: SIM115 - closed with the process
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        deadline = time.monotonic() + 10
        while not ping("127.0.0.1", self.port, tls=self.tls is not None):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.proc.kill()
                self.proc.wait()
                self.proc = None
                text = (self.directory / "redis.log").read_text(errors="replace")
                raise RuntimeError(f"redis-server did not start:\n{text}")
            time.sleep(0.02)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop the server (SIGTERM: a clean shutdown; SIGKILL: a crash)."""
        if self.proc is not None:
            self.proc.send_signal(sig)
            self.proc.wait(timeout=10)
            self.proc = None

    def __enter__(self) -> RedisServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a reachable loopback Redis server (skips or fails if none)."""
    url = os.environ.get("DUETIME_TEST_REDIS_URL")
    if url:
        parts = urlsplit(url)
        host, port = parts.hostname or "", parts.port or 6379
        if host not in LOOPBACK:
            pytest.fail(f"DUETIME_TEST_REDIS_URL must name a loopback address, not {host!r}")
        if not ping(host, port):
            unavailable(f"nothing answers PING at {url} (DUETIME_TEST_REDIS_URL)")
        yield url
        return
    if shutil.which("redis-server") is None:
        unavailable("DUETIME_TEST_REDIS_URL is not set and redis-server is not installed")
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server.url


@pytest.fixture
def redis_store(redis_url: str) -> Iterator[Callable[..., RedisStore]]:
    """A factory of unopened RedisStores sharing one fresh prefix per test
    (pass ``prefix=`` for another); their keys are deleted after the test."""
    prefixes: set[str] = set()
    default = f"test-{uuid.uuid4().hex[:12]}"

    def make(**options: Any) -> RedisStore:
        options.setdefault("prefix", default)
        prefixes.add(options["prefix"])
        return RedisStore(redis_url, **options)

    yield make
    parts = urlsplit(redis_url)
    db = int(parts.path.strip("/") or 0)
    for prefix in prefixes:
        names = ["q", "all", "tomb", "seq", "rows", "bad", "cnt", "act", "ixv"]
        names += [f"s:{status}" for status in ("PENDING", "RUNNING", "COMPLETED", "FAILED")]
        names += ["s:CANCELLED", "running"]
        keys = [f"{{{prefix}}}:{name}" for name in names]
        command(parts.hostname or "", parts.port or 6379, "DEL", *keys, db=db)
