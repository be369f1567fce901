"""A SQLite file of completed item keys, so a batch can resume where it stopped."""

from __future__ import annotations

import os
import sqlite3

__all__ = ["Checkpoint"]


class Checkpoint:
    """The keys of the items a batch has completed, in a SQLite file (stdlib ``sqlite3``).

    Each key is written in its own transaction (autocommit mode), so a run that
    is interrupted, cancelled or killed loses no key it had recorded, and never
    leaves a half-written one.  The file is in WAL mode with
    ``synchronous=NORMAL``: a commit does not wait for an fsync, so recording a
    key takes microseconds and is done inline on the event loop rather than in a
    worker thread.  That keeps every key across a crash of the process; only a
    power loss can drop the last few commits (SQLite's own trade-off for WAL).
    """

    __slots__ = ("_db", "path")

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._db: sqlite3.Connection | None = sqlite3.connect(self.path, isolation_level=None)
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS duetime_completed (key TEXT PRIMARY KEY)")
        except BaseException:
            self.close()
            raise

    def keys(self) -> set[str]:
        """The keys recorded so far."""
        assert self._db is not None
        return {row[0] for row in self._db.execute("SELECT key FROM duetime_completed")}

    def record(self, key: str) -> None:
        """Record ``key`` as completed, durably, before returning."""
        assert self._db is not None
        self._db.execute("INSERT OR IGNORE INTO duetime_completed (key) VALUES (?)", (key,))

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
