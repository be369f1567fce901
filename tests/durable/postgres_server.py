"""Real PostgreSQL servers for the PostgresStore tests (a pytest plugin: conftest.py loads it).

- ``postgres_url``: the shared server, ``$DUETIME_TEST_POSTGRES_URL`` (``.ci/run``
  starts one), else a private cluster started for the session when the server's
  binaries are installed (Debian's ``postgresql-15``).  With neither, the tests
  skip with the reason, except under ``CI=true``, where they fail: CI must not
  silently skip PostgreSQL.
- ``postgres_database``: the URL of a fresh database per test (``CREATE DATABASE``
  from ``template0``), dropped afterwards, connections and all.
- ``postgres_schema``: a fresh schema name per test in the ``postgres_url``
  database (cheaper than a database: pass it as a store's ``schema=``), dropped
  afterwards with everything in it.
- ``postgres_store``: a factory of unopened ``PostgresStore`` objects on
  ``postgres_url``, each with the test's fresh schema unless told otherwise.
- :class:`PostgresServer`: a private cluster on a free loopback port in a temp
  dir, for tests that kill it (``kill -9`` of the whole server), restart it
  immediately (crash recovery on start, as ``pg_ctl restart -m immediate``), or
  freeze and thaw it (SIGSTOP / SIGCONT).

The server refuses to run as root: as root, a private cluster runs as the
``postgres`` user, otherwise as the current user.  Nothing here reaches any
address but loopback: a non-loopback URL is refused.
"""

from __future__ import annotations

import contextlib
import glob
import importlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

LOOPBACK = {"127.0.0.1", "localhost", "::1"}

# Each stopping mode's signal to the postmaster, as pg_ctl sends it.
STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def unavailable(reason: str) -> None:
    """Skip (locally) or fail (under CI=true) a test that needs PostgreSQL."""
    if in_ci():
        pytest.fail(f"CI=true but PostgreSQL is unavailable: {reason}")
    pytest.skip(f"no PostgreSQL server: {reason}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def find_bindir() -> Path | None:
    """The directory holding ``initdb``, ``postgres`` and ``pg_isready``:
    ``$DUETIME_PG_BINDIR``, else Debian's newest ``/usr/lib/postgresql/N/bin``,
    else the one on ``PATH``; None when the server is not installed."""
    candidates = []
    if os.environ.get("DUETIME_PG_BINDIR"):
        candidates.append(Path(os.environ["DUETIME_PG_BINDIR"]))
    debian = [Path(p) for p in glob.glob("/usr/lib/postgresql/*/bin")]
    candidates += sorted(debian, key=lambda p: int(p.parent.name), reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).parent)
    for directory in candidates:
        if all((directory / name).is_file() for name in ("initdb", "postgres", "pg_isready")):
            return directory
    return None


def _stat_fields(stat: Path) -> list[str] | None:
    try:
        # "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after ")".
        return stat.read_text().rpartition(")")[2].split()
    except OSError:
        return None  # it ended while we looked


def server_pids(postmaster: int) -> set[int]:
    """The postmaster and its children (its backends and auxiliary processes),
    those that run (zombies do not count); empty where ``/proc`` is not there.
    PostgreSQL's children each call ``setsid()``, so the postmaster's process
    group does not hold them: they are found by their parent."""
    pids = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        fields = _stat_fields(stat)
        if fields is None or len(fields) < 2 or fields[0] == "Z":
            continue
        pid = int(stat.parent.name)
        if pid == postmaster or int(fields[1]) == postmaster:
            pids.add(pid)
    return pids


def _running(pids: set[int]) -> bool:
    for pid in pids:
        fields = _stat_fields(Path(f"/proc/{pid}/stat"))
        if fields is not None and fields and fields[0] != "Z":
            return True
    return False


def check_loopback(url: str, variable: str = "DUETIME_TEST_POSTGRES_URL") -> None:
    host = urlsplit(url).hostname or ""
    if host not in LOOPBACK:
        pytest.fail(f"{variable} must name a loopback address, not {host!r}")


def with_database(url: str, dbname: str) -> str:
    """``url`` with its database (the path) replaced by ``dbname``."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


def psycopg_module() -> Any:
    """psycopg, or a skip (a fail under CI=true) when it is not installed."""
    try:
        return importlib.import_module("psycopg")
    except ImportError:
        unavailable('psycopg is not installed (pip install -e ".[test]")')
        raise  # unreachable: unavailable() raises


def admin(url: str, *statements: str) -> None:
    """Run each statement on its own in autocommit (CREATE/DROP DATABASE refuse
    a transaction block): a tiny sync helper, so fixtures need no event loop."""
    psycopg = psycopg_module()
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        for statement in statements:
            conn.execute(statement)


def reachable(url: str) -> bool:
    psycopg = psycopg_module()
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


class PostgresServer:
    """A private PostgreSQL cluster on a free loopback port, its data directory,
    socket and log in a temp dir of its own (removed by :meth:`close`).

    Trust authentication on loopback, superuser ``postgres``.  The postmaster
    runs in a session of its own, so :meth:`kill`, :meth:`pause` and
    :meth:`resume` reach every server process (its backends too), as a crash or
    a frozen machine would.

    :param fsync: keep ``fsync`` on (off by default: commits still write the WAL
        to the operating system before they return, so a crash of the server,
        even ``kill -9``, loses nothing committed; only a crash of the machine
        would)
    :param settings: more server settings, ``{"name": "value"}``
    """

    def __init__(self, *, fsync: bool = False, settings: dict[str, str] | None = None) -> None:
        bindir = find_bindir()
        if bindir is None:
            unavailable("the PostgreSQL server is not installed (apt-get install postgresql-15)")
            raise AssertionError("unreachable")
        self.bindir = bindir
        self.user = "postgres" if os.geteuid() == 0 else None
        self.directory = Path(tempfile.mkdtemp(prefix="duetime-pg-"))
        if self.user is not None:
            entry = pwd.getpwnam(self.user)
            os.chown(self.directory, entry.pw_uid, entry.pw_gid)
        self.data = self.directory / "data"
        self.log = self.directory / "postgres.log"
        self.port = free_port()
        self.settings = {
            "listen_addresses": "127.0.0.1",
            "port": str(self.port),
            "unix_socket_directories": str(self.directory),
            "fsync": "on" if fsync else "off",
            "full_page_writes": "on" if fsync else "off",
            "max_connections": "200",
            **(settings or {}),
        }
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The URL of its ``postgres`` database, as the ``postgres`` superuser."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    @property
    def pid(self) -> int:
        """The postmaster's process id (it leads the server's process group)."""
        if self.proc is None:
            raise RuntimeError("the server is not running")
        return self.proc.pid

    def _run(self, args: list[str]) -> None:
        done = subprocess.run(args, capture_output=True, user=self.user, check=False)
        if done.returncode != 0:
            output = (done.stdout + done.stderr).decode(errors="replace")
            raise RuntimeError(f"{Path(args[0]).name} failed:\n{output}")

    def start(self) -> None:
        """Start the server (initialising the cluster the first time) and
        return once it accepts connections; a start after :meth:`kill` or an
        immediate stop runs crash recovery first.

        :raises RuntimeError: the server did not come up within 60 s (its log
            is in the message)
        """
        if self.proc is not None:
            raise RuntimeError("the server is already running")
        if not self.data.exists():
            initdb = [str(self.bindir / "initdb"), "-D", str(self.data), "-U", "postgres"]
            self._run([*initdb, "--auth=trust", "-E", "UTF8", "--no-sync"])
        args = [str(self.bindir / "postgres"), "-D", str(self.data)]
        for name, value in self.settings.items():
            args += ["-c", f"{name}={value}"]
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                args, stdout=log, stderr=subprocess.STDOUT, user=self.user, start_new_session=True
            )
        isready = [str(self.bindir / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port)]
        deadline = time.monotonic() + 60
        while subprocess.run([*isready, "-t", "1"], check=False).returncode != 0:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._reap(signal.SIGKILL)
                text = self.log.read_text(errors="replace")
                raise RuntimeError(f"postgres did not start:\n{text}")
            time.sleep(0.05)

    def _reap(self, sig: int) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if sig == signal.SIGKILL:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
        else:
            proc.send_signal(sig)
        proc.wait(timeout=60)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server as ``pg_ctl stop -m MODE`` does and wait for it:
        ``smart`` waits for clients, ``fast`` disconnects them, ``immediate``
        quits at once (recovery runs at the next start).

        :raises ValueError: ``mode`` is not one of those three
        """
        if mode not in STOP_SIGNALS:
            raise ValueError(f"mode must be one of {sorted(STOP_SIGNALS)}, not {mode!r}")
        if self.proc is not None:
            self.resume()  # a frozen server would never see the signal
            self._reap(STOP_SIGNALS[mode])

    def kill(self) -> None:
        """``kill -9`` every process of the server (postmaster and backends) at
        once: a crash.  Returns once none of them runs any more (a backend is
        not this process's child: its death is seen in ``/proc``).
        :meth:`start` recovers.

        :raises RuntimeError: a server process still ran 30 s after the signal
        """
        if self.proc is None:
            return
        pids = server_pids(self.proc.pid)
        for pid in pids - {self.proc.pid}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self._reap(signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _running(pids):
            if time.monotonic() > deadline:
                raise RuntimeError(f"server processes {sorted(pids)} outlived kill -9")
            time.sleep(0.01)

    def restart(self, mode: str = "immediate") -> None:
        """Stop (``immediate``: no shutdown checkpoint, as ``pg_ctl restart -m
        immediate``) and start again on the same port and data.

        :raises ValueError: ``mode`` is not ``smart``, ``fast`` or ``immediate``
        """
        self.stop(mode)
        self.start()

    def pause(self) -> None:
        """SIGSTOP every server process: connections stay open, nothing answers."""
        if self.proc is not None:
            self._signal_all(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT every server process (after :meth:`pause`)."""
        if self.proc is not None:
            self._signal_all(signal.SIGCONT)

    def _signal_all(self, sig: int) -> None:
        assert self.proc is not None
        for pid in server_pids(self.proc.pid) | {self.proc.pid}:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)

    def close(self) -> None:
        """Stop the server if it runs (immediately: its data is thrown away)
        and remove its directory."""
        if self.proc is not None:
            self.stop("immediate")
        shutil.rmtree(self.directory, ignore_errors=True)

    def __enter__(self) -> PostgresServer:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """The URL of a reachable loopback PostgreSQL server, its ``postgres``
    database, as a superuser (skips or fails if none)."""
    url = os.environ.get("DUETIME_TEST_POSTGRES_URL")
    if url:
        check_loopback(url)
        if not reachable(url):
            unavailable("nothing answers at DUETIME_TEST_POSTGRES_URL")
        yield url
        return
    psycopg_module()
    if find_bindir() is None:
        unavailable("DUETIME_TEST_POSTGRES_URL is unset and the PostgreSQL server is not installed")
    with PostgresServer() as server:
        yield server.url


def unique_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def postgres_database(postgres_url: str) -> Iterator[str]:
    """The URL of a fresh, empty database of its own for this test, dropped
    afterwards (with any connection still open to it)."""
    name = unique_name("duetime_test")
    admin(postgres_url, f'CREATE DATABASE "{name}" TEMPLATE template0')
    try:
        yield with_database(postgres_url, name)
    finally:
        admin(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_schema(postgres_url: str) -> Iterator[str]:
    """A fresh schema name for this test (not created: a store creates its own),
    dropped afterwards with everything in it."""
    name = unique_name("test")
    try:
        yield name
    finally:
        admin(postgres_url, f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def postgres_store(postgres_url: str, postgres_schema: str) -> Iterator[Callable[..., Any]]:
    """A factory of unopened PostgresStores on ``postgres_url`` sharing the
    test's fresh schema (pass ``schema=`` for another, dropped afterwards too
    when it starts with ``test_``)."""
    store_class = importlib.import_module("duetime.durable").PostgresStore
    extra: set[str] = set()

    def make(**options: Any) -> Any:
        options.setdefault("schema", postgres_schema)
        if options["schema"] != postgres_schema and options["schema"].startswith("test_"):
            extra.add(options["schema"])
        return store_class(postgres_url, **options)

    yield make
    for name in extra:
        admin(postgres_url, f'DROP SCHEMA IF EXISTS "{name}" CASCADE')
