"""The SQLite file of a SQLiteStore: its schema, its creation (mode 0600) and the
checks that refuse a file that is not a duetime store, before anything is
written to it."""

from __future__ import annotations

import errno
import os
import sqlite3
import urllib.parse

__all__ = ["APPLICATION_ID", "SCHEMA_VERSION", "NotAStore", "check_existing", "create_private"]
__all__ += [
    "schema_version",
    "file_changed",
    "file_identity",
    "init_schema",
    "open_inline",
    "open_read_only",
]
__all__ += ["open_writable"]

APPLICATION_ID = 0x64756574  #: ``PRAGMA application_id`` of a duetime store ("duet")
SCHEMA_VERSION = 3  #: ``PRAGMA user_version`` of the schema this module writes
#: Older schema versions it reads, and upgrades when it opens them for writing
#: (version 1 lacks the result columns, :data:`_UPGRADE_1`; versions 1 and 2
#: lack the abort request, :data:`_UPGRADE_2`).
_UPGRADABLE = (1, 2)
_HEADER = b"SQLite format 3\x00"
_TABLES = {"duetime_meta", "duetime_entries"}

_SCHEMA = """
CREATE TABLE duetime_meta (k TEXT PRIMARY KEY, v INTEGER NOT NULL);
CREATE TABLE duetime_entries (
    key TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    payload TEXT NOT NULL,
    status INTEGER NOT NULL,
    due REAL NOT NULL,
    visible_at REAL,          -- claimable from: due if PENDING, lease end if RUNNING, else NULL
    lease REAL NOT NULL,
    lease_until REAL,
    token INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    attempt INTEGER NOT NULL DEFAULT 1,
    deliveries INTEGER NOT NULL DEFAULT 0,
    max_deliveries INTEGER NOT NULL,
    occurrence INTEGER NOT NULL DEFAULT 0,
    schedule TEXT,
    last_error TEXT,
    expires_at REAL,          -- tombstones: deleted (lazily) from then on
    result TEXT,              -- a COMPLETED row's encoded return value
    result_until REAL,        -- ... kept until then (result_ttl)
    error_type TEXT,          -- a FAILED row's exception type
    traceback TEXT,           -- ... and its traceback text
    abort_requested INTEGER NOT NULL DEFAULT 0  -- 1: a RUNNING row's run is to be aborted
);
CREATE INDEX duetime_entries_visible ON duetime_entries (visible_at) WHERE visible_at IS NOT NULL;
CREATE INDEX duetime_entries_expires ON duetime_entries (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX duetime_entries_due ON duetime_entries (status, due);
CREATE INDEX duetime_entries_abort ON duetime_entries (visible_at) WHERE abort_requested = 1;
INSERT INTO duetime_meta (k, v) VALUES ('token', 0);
"""


# Version 1 to 2: the result and failure columns (added NULL: nothing to rewrite).
_UPGRADE_1 = (
    "ALTER TABLE duetime_entries ADD COLUMN result TEXT",
    "ALTER TABLE duetime_entries ADD COLUMN result_until REAL",
    "ALTER TABLE duetime_entries ADD COLUMN error_type TEXT",
    "ALTER TABLE duetime_entries ADD COLUMN traceback TEXT",
)

# Version 2 to 3: the abort request (every row 0: nothing to rewrite), and the
# partial index the claim uses to end the aborted rows whose lease lapsed.
_UPGRADE_2 = (
    "ALTER TABLE duetime_entries ADD COLUMN abort_requested INTEGER NOT NULL DEFAULT 0",
    "CREATE INDEX duetime_entries_abort ON duetime_entries (visible_at) WHERE abort_requested = 1",
)


class NotAStore(ValueError):
    """The file exists but is not a duetime store of this schema version (left untouched)."""


def create_private(path: str) -> bool:
    """Create ``path`` empty with mode 0600 if absent; True if this call created it."""
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def check_existing(path: str) -> None:
    """Refuse a file that is not a duetime store from its header alone (nothing is
    written).  A SQLite file of unknown application id 0 is checked again, by its
    tables, inside the first transaction (:func:`_init_schema`)."""
    try:
        with open(path, "rb") as f:
            header = f.read(100)
    except IsADirectoryError:
        raise NotAStore(f"{path!r} is a directory, not a duetime store") from None
    if not header:
        return  # an empty file: a new database
    if not header.startswith(_HEADER) or len(header) < 100:
        raise NotAStore(f"{path!r} is not a SQLite database; refusing to use it as a duetime store")
    version = int.from_bytes(header[60:64], "big", signed=True)
    app = int.from_bytes(header[68:72], "big", signed=True)
    if app not in (0, APPLICATION_ID) or (app == APPLICATION_ID and not _readable(version)):
        _judge(path, app, version, None)


def _readable(version: int) -> bool:
    return version == SCHEMA_VERSION or version in _UPGRADABLE


def schema_version(conn: sqlite3.Connection) -> int:
    """The schema version of the store ``conn`` holds (``PRAGMA user_version``)."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def _check_identity(conn: sqlite3.Connection, path: str) -> bool:
    """True if ``conn`` holds a duetime store, False if it is empty; else raise NotAStore."""
    app = conn.execute("PRAGMA application_id").fetchone()[0]
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_schema WHERE type = 'table'")}
    return _judge(path, app, version, tables)


def _judge(path: str, app: int, version: int, tables: set[str] | None) -> bool:
    """True for a duetime store, False for an empty database; else raise NotAStore."""
    if app == APPLICATION_ID:
        if not _readable(version):
            raise NotAStore(
                f"{path!r} is a duetime store of schema version {version}; this duetime reads"
                f" versions {', '.join(map(str, (*_UPGRADABLE, SCHEMA_VERSION)))}. Use a"
                " matching duetime version (the file was left untouched)."
            )
        if tables is not None and not tables >= _TABLES:
            raise NotAStore(
                f"{path!r} claims to be a duetime store but lacks its tables; refusing to use it"
            )
        return True
    if app == 0 and version == 0 and tables is not None and not tables:
        return False
    what = f"application_id={app}" + (f", tables {sorted(tables)[:5]}" if tables else "")
    raise NotAStore(
        f"{path!r} is a SQLite database of another application ({what}); refusing to use it"
        " as a duetime store (the file was left untouched)"
    )


def init_schema(conn: sqlite3.Connection, path: str) -> None:
    """Inside BEGIN IMMEDIATE: check the file again (another process may have won a
    race), create the schema if the database is empty, or upgrade an older one."""
    if _check_identity(conn, path):
        version = schema_version(conn)
        if version < SCHEMA_VERSION:
            for statement in (*(_UPGRADE_1 if version == 1 else ()), *_UPGRADE_2):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        return
    # (executescript would COMMIT first: run the statements one by one)
    for statement in _SCHEMA.split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")


def open_read_only(path: str) -> sqlite3.Connection:
    """Open an existing duetime store for reading only: the database is never written.

    The connection is a ``mode=ro`` URI (SQLite still shares the ``-shm`` index
    with writers, so it reads their latest commits; in a writable directory
    where no writer has the file open, SQLite creates the empty ``-wal`` and
    ``-shm`` files, with the database's mode and, run as root, its owner).  A WAL database in a
    directory it cannot write, with no ``-shm`` file, cannot be opened that way;
    when it has no ``-wal`` content either (every writer closed cleanly), the
    database file alone holds every row and is opened ``immutable=1`` (no
    locking, no change detection: a snapshot, as on a read-only mount).

    :raises FileNotFoundError: there is no file at ``path``
    :raises NotAStore: the file is empty, not SQLite or not a duetime store
    :raises PermissionError: the file cannot be read
    :raises sqlite3.OperationalError: SQLite cannot read it (e.g. a ``-wal`` file
        with commits in a directory where the ``-shm`` file cannot be created)
    """
    try:
        size = os.stat(path).st_size
    except FileNotFoundError:
        raise FileNotFoundError(
            errno.ENOENT, "No duetime store here (opening it read-only never creates one)", path
        ) from None
    check_existing(path)
    if size == 0:
        raise NotAStore(f"{path!r} is an empty file, not a duetime store")
    uri = "file:" + urllib.parse.quote(os.path.abspath(path)) + "?mode=ro"
    try:
        conn = _checked(uri, path)
    except sqlite3.OperationalError:
        try:
            wal = os.stat(path + "-wal").st_size
        except FileNotFoundError:
            wal = 0
        if wal:
            raise sqlite3.OperationalError(
                f"cannot open {path!r} read-only: its -wal file holds commits and SQLite"
                " cannot create the -shm index next to it (a read-only directory or mount);"
                " open it once with write access to checkpoint it"
            ) from None
        conn = _checked(uri + "&immutable=1", path)
    return conn


def _checked(uri: str, path: str) -> sqlite3.Connection:
    conn = sqlite3.connect(uri, uri=True, isolation_level=None, check_same_thread=False)
    try:
        conn.execute("PRAGMA query_only = 1")
        if not _check_identity(conn, path):
            raise NotAStore(f"{path!r} is an empty SQLite database, not a duetime store")
    except BaseException:
        conn.close()
        raise
    return conn


def open_writable(path: str, busy_ms: int) -> sqlite3.Connection:
    """Open (creating it with mode 0600 if absent) the store at ``path`` for
    reading and writing: the schema checked or created in one transaction,
    then WAL with ``synchronous=NORMAL``.

    :raises NotAStore: the file is not a duetime store of this schema version
    """
    created = create_private(path)
    if not created:
        check_existing(path)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.execute(f"PRAGMA busy_timeout = {busy_ms}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            init_schema(conn, path)
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
    except BaseException:
        conn.close()
        raise
    return conn


def open_inline(path: str) -> sqlite3.Connection:
    """The connection ``SQLiteStore._write_inline`` uses on the loop thread:
    it never waits for a lock and never checkpoints."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        if conn.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            raise RuntimeError(f"{path!r} is not in WAL mode")
        conn.execute("PRAGMA busy_timeout = 0")
        conn.execute("PRAGMA synchronous = NORMAL")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
    except BaseException:
        conn.close()
        raise
    return conn


def file_identity(path: str) -> tuple[int, int]:
    """The identity of the file at ``path`` (device and inode)."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def file_changed(path: str, identity: tuple[int, int] | None) -> str | None:
    """None if the file at ``path`` is still the one of ``identity`` (one stat),
    else what happened to it ("was deleted", "was replaced by another file")."""
    try:
        now = file_identity(path)
    except FileNotFoundError:
        return "was deleted"
    return None if now == identity else "was replaced by another file"
