"""A SQLite file of completed item keys, so a batch can resume where it stopped."""

from __future__ import annotations

import os
import sqlite3
import stat
from pathlib import Path

__all__ = ["Checkpoint"]

#: ``PRAGMA application_id`` of a duetime checkpoint: the bytes ``b"duet"``.
APPLICATION_ID = 0x64756574
_TABLE = "duetime_completed"
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class Checkpoint:
    """The keys of the items a batch has completed, in a SQLite file (stdlib ``sqlite3``).

    Each key is written in its own transaction (autocommit mode), so a run that
    is interrupted, cancelled or killed loses no key it had recorded, and never
    leaves a half-written one.  The file is in WAL mode with
    ``synchronous=NORMAL``: a commit does not wait for an fsync, so recording a
    key takes microseconds and is done inline on the event loop rather than in a
    worker thread.  That keeps every key across a crash of the process; only a
    power loss can drop the last few commits (SQLite's own trade-off for WAL).

    Opening is strict, so that a batch fails before its first item rather than
    item by item:

    - a new file is created with mode 0600; a symbolic link is not followed;
    - the file must be empty or a duetime checkpoint (``PRAGMA application_id``
      ``"duet"``, or the single table ``duetime_completed (key TEXT PRIMARY
      KEY)``).  Anything else is refused before anything is written, so another
      application's database is never switched to WAL or marked;
    - a write is made at once, so a read-only file or directory fails here;
    - the connection uses SQLite's ``locking_mode=EXCLUSIVE`` and holds the file's
      lock until :meth:`close`: a second batch (in this process or another) on
      the same file is refused at once instead of running every item again.  The
      operating system drops the lock if the process dies.

    :param path: the checkpoint file
    :raises ValueError: if ``path`` is a symbolic link, is not a SQLite database,
        or is a database that is not a duetime checkpoint
    :raises BlockingIOError: if another connection (another batch, or another
        program) holds the file
    :raises OSError: if the file cannot be created, read or written
    """

    __slots__ = ("_db", "path")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._db: sqlite3.Connection | None = None
        try:
            self._db = self._connect()
            self._check_ours()
            # Only now that the file is known to be ours (or empty) is it changed.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            # A real write, at once: it takes the exclusive lock for the whole run
            # and makes an unwritable file or directory fail before any item runs.
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(f"CREATE TABLE IF NOT EXISTS {_TABLE} (key TEXT PRIMARY KEY)")
            self._db.execute(f"PRAGMA application_id={APPLICATION_ID}")
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            self.close()
            raise self._translate(exc) from exc
        except BaseException:
            self.close()
            raise

    def _connect(self) -> sqlite3.Connection:
        """Create the file (0600) if needed, check it, and connect in exclusive mode.

        No descriptor of an existing file is opened here: closing one would drop
        every POSIX lock this process holds on it, including SQLite's lock of a
        batch already running on the same file.
        """
        for suffix in ("-wal", "-journal", "-shm"):
            if os.path.islink(self.path + suffix):
                raise ValueError(
                    f"checkpoint {self.path}{suffix} is a symbolic link; duetime does not follow it"
                )
        try:
            # O_EXCL: a new file is ours alone, so closing it at once drops no lock;
            # with O_CREAT | O_EXCL a symlink, even a dangling one, is never followed.
            fd = os.open(
                self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o600
            )
        except FileExistsError:
            pass
        except OSError as exc:
            raise type(exc)(
                exc.errno, f"cannot create checkpoint {self.path}: {exc.strerror}"
            ) from exc
        else:
            os.close(fd)
        before = self._lstat()
        # mode=rw: SQLite must open the file just checked, never create one of its
        # own (with the umask's mode) if it was removed meanwhile.
        uri = Path(os.path.abspath(self.path)).as_uri() + "?mode=rw"
        db = sqlite3.connect(uri, uri=True, isolation_level=None, timeout=0)
        try:
            if self._lstat() != before:
                raise ValueError(f"checkpoint {self.path} was replaced while it was opened")
            db.execute("PRAGMA locking_mode=EXCLUSIVE")
        except BaseException:
            db.close()
            raise
        return db

    def _lstat(self) -> tuple[int, int]:
        """The file's (device, inode), without following a symlink.

        :raises ValueError: if it is a symbolic link or not a regular file
        """
        try:
            st = os.lstat(self.path)
        except OSError as exc:
            raise type(exc)(
                exc.errno, f"cannot open checkpoint {self.path}: {exc.strerror}"
            ) from exc
        if stat.S_ISLNK(st.st_mode):
            raise ValueError(
                f"checkpoint {self.path} is a symbolic link; duetime does not follow it: "
                "pass the path of the file itself"
            )
        if not stat.S_ISREG(st.st_mode):
            raise ValueError(f"checkpoint {self.path} is not a regular file")
        return st.st_dev, st.st_ino

    def _check_ours(self) -> None:
        """Raise ValueError unless the file is empty or a duetime checkpoint."""
        assert self._db is not None
        app_id = self._db.execute("PRAGMA application_id").fetchone()[0]
        objects = self._db.execute(
            "SELECT type, name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
        ).fetchall()
        if app_id not in (0, APPLICATION_ID):
            raise ValueError(
                f"checkpoint {self.path} belongs to another application "
                f"(SQLite application_id {app_id:#x}); pass a file of its own"
            )
        others = sorted(f"{kind} {name}" for kind, name in objects if name != _TABLE)
        if others:
            raise ValueError(
                f"checkpoint {self.path} is not a duetime checkpoint: it has "
                f"{', '.join(others)}; pass a file of its own"
            )
        if objects:
            columns = [
                (name, kind.upper(), pk)
                for _, name, kind, _, _, pk in self._db.execute(f"PRAGMA table_info({_TABLE})")
            ]
            if objects != [("table", _TABLE)] or columns != [("key", "TEXT", 1)]:
                raise ValueError(
                    f"checkpoint {self.path} has a {_TABLE} table of another schema "
                    f"(columns {columns}); expected (key TEXT PRIMARY KEY)"
                )

    def _translate(self, exc: sqlite3.Error) -> Exception:
        """A clear exception for a SQLite error raised while opening."""
        # sqlite_errorcode is the extended code; its low byte is the primary one.
        code = getattr(exc, "sqlite_errorcode", -1) & 0xFF
        if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
            return BlockingIOError(
                f"checkpoint {self.path} is in use by another connection (another batch "
                "with this checkpoint, in this process or another, or another program); "
                "run one batch per checkpoint file at a time"
            )
        if code == sqlite3.SQLITE_NOTADB:
            return ValueError(f"checkpoint {self.path} is not a SQLite database: {exc}")
        if code in (sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_IOERR):
            # SQLite falls back to read-only without saying why: name the likely cause.
            return PermissionError(
                f"checkpoint {self.path} cannot be written (is the file, or its directory "
                f"for the -wal file, read-only?): {exc}"
            )
        return OSError(f"checkpoint {self.path} cannot be opened: {exc}")

    def keys(self) -> set[str]:
        """The keys recorded so far."""
        assert self._db is not None
        return {row[0] for row in self._db.execute(f"SELECT key FROM {_TABLE}")}

    def record(self, key: str) -> None:
        """Record ``key`` as completed, durably, before returning."""
        assert self._db is not None
        self._db.execute(f"INSERT OR IGNORE INTO {_TABLE} (key) VALUES (?)", (key,))

    def close(self) -> None:
        """Close the file and release its lock; calling it again does nothing."""
        if self._db is not None:
            self._db.close()
            self._db = None
