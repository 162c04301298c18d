"""SQLite connections: WAL, busy_timeout, foreign keys, a private file, and migrations on open.

The queue uses the standard sqlite3 module directly rather than an ORM: `flf2v ls` must answer within 0.3 s
with 10,000 jobs, and importing sqlmodel (with SQLAlchemy and pydantic) costs about 0.35 s of CPU before a
single row is read, so sqlmodel is not a dependency (figures in bench/RESULTS.md).

Every write goes through `write_tx`, which takes the write lock up front (BEGIN IMMEDIATE) so that concurrent
writers queue on busy_timeout instead of failing with "database is locked" when a read transaction tries to
upgrade.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from storage.schema import LATEST, MIGRATIONS


def _busy_timeout_ms() -> int:
    """60 s; FLF2V_BUSY_TIMEOUT_MS (whole milliseconds) shortens it for the tests of a lock held too long."""
    text = os.environ.get("FLF2V_BUSY_TIMEOUT_MS", "")
    return int(text) if text.isascii() and text.isdigit() else 60_000


BUSY_TIMEOUT_MS = _busy_timeout_ms()


class DatabaseError(RuntimeError):
    """The database cannot be used as it is; the message says what to do."""


# What reading or writing the queue can raise that is no bug of ours: the file unreadable, locked past the
# busy timeout, or not a database. A TUI worker thread that let one through would end the app.
STORAGE_ERRORS = (DatabaseError, sqlite3.Error, OSError)


# Never open, copy or close the database file, its -wal or its -shm outside SQLite in a process that may hold
# a connection. POSIX ties a process's fcntl locks to the file, not to a descriptor, so closing ANY descriptor
# of flf2v.db drops the locks of every SQLite connection of this process. The next process to close the
# database then believes it is the last user and deletes the WAL from under the live connections, whose later
# commits go to a file that nobody else will ever read (SQLite's "How To Corrupt An SQLite Database File",
# section 2.2). So the file is created by SQLite itself under a private umask, and modes are only ever fixed
# by path (stat and chmod open nothing).
DATABASE_SUFFIXES = ("", "-wal", "-shm")

# The umask belongs to the whole process, so two threads creating a database at once would restore each
# other's saved value. This lock orders them. Another thread creating an unrelated file in the same instant
# gets 0600 rather than 0644, which is only ever more private; it happens once per home, at creation.
_CREATING = threading.Lock()


def database_files(db: Path) -> list[Path]:
    """flf2v.db and the -wal and -shm files SQLite keeps beside it."""
    return [db.with_name(db.name + suffix) for suffix in DATABASE_SUFFIXES]


def database_file_named(path: str | os.PathLike[str], db: Path) -> Path | None:
    """Which of database_files(db) `path` is (under any name, a hard link included), by stat() alone; None when
    it is none of them. A path a user gives (a frame) is checked with this before anything opens it."""
    try:
        given = os.stat(path)
    except (OSError, ValueError):
        return None
    for candidate in database_files(db):
        try:
            known = os.stat(candidate)
        except OSError:
            continue
        if (given.st_dev, given.st_ino) == (known.st_dev, known.st_ino):
            return candidate
    return None


def _connect_private(db: Path) -> sqlite3.Connection:
    """A connection to `db`, the file created 0600 if it is new, whatever the umask; SQLite gives the -wal and
    -shm files it creates later the mode of the database file."""
    db.parent.mkdir(parents=True, exist_ok=True)
    if db.exists():
        conn = _sqlite_connect(db)
    else:
        with _CREATING:
            saved = os.umask(0o077)
            try:
                conn = _sqlite_connect(db)  # SQLite creates the file here
            finally:
                os.umask(saved)
    _tighten(db)  # an older file, or one another process created meanwhile under its own umask
    return conn


def _sqlite_connect(db: Path) -> sqlite3.Connection:
    # isolation_level=None: the module never opens transactions behind our back; we say BEGIN ourselves.
    return sqlite3.connect(db, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False)


def _tighten(db: Path) -> None:
    for path in database_files(db):
        try:
            loose = os.stat(path).st_mode & 0o077
        except FileNotFoundError:
            continue
        if loose:
            with contextlib.suppress(OSError):  # not ours to change, or read-only: SQLite still works
                os.chmod(path, 0o600)


def _configure(conn: sqlite3.Connection) -> None:
    conn.row_factory = sqlite3.Row
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    # NORMAL is durable in WAL mode except for the last transactions before a power cut, which is the
    # usual trade for a queue that writes progress several times a second.
    conn.execute("PRAGMA synchronous = NORMAL")


def connect(path: str | os.PathLike[str]) -> sqlite3.Connection:
    """Open (creating if needed) the queue database at `path`, migrated to the latest schema."""
    db = Path(path)
    conn = _connect_private(db)
    try:
        _configure(conn)
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if version > LATEST:
            raise DatabaseError(
                f"{db} has schema version {version}, newer than this flf2v understands ({LATEST}); "
                "upgrade flf2v (pip install -U flf2v-tui) or point FLF2V_HOME at another folder"
            )
        if version < LATEST or mode.lower() != "wal":
            _upgrade(conn, db)
    except sqlite3.DatabaseError as exc:
        conn.close()
        raise DatabaseError(f"{db} is not a usable SQLite database ({exc}); move it aside and run again") from exc
    except BaseException:
        conn.close()
        raise
    return conn


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on `path`, a file of its own that is never one of database_files(): POSIX locks
    belong to a (process, file) pair, so opening and closing this one leaves alone the locks that this
    process's SQLite connections hold on flf2v.db and its -shm."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _upgrade(conn: sqlite3.Connection, db: Path) -> None:
    # Switching to WAL needs an exclusive lock that busy_timeout does not always wait for, so the first
    # processes to open a new database serialise on a lock file; later opens never reach this.
    with _file_lock(db.with_name(db.name + ".lock")):
        conn.execute("PRAGMA journal_mode = WAL")
        migrate_to(conn, LATEST)


def migrate_to(conn: sqlite3.Connection, target: int) -> int:
    """Apply migrations up to `target`, each in its own write transaction; returns the final version."""
    while True:
        with write_tx(conn):
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version >= target:
                return version
            for statement in _statements(MIGRATIONS[version]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {version + 1}")


def _statements(script: str) -> list[str]:
    # executescript() would COMMIT our transaction first, so statements are run one by one instead.
    parts, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            parts.append(current.strip())
            current = ""
    if current.strip():
        raise ValueError(f"incomplete SQL statement in migration: {current.strip()[:80]}")
    return parts


@contextmanager
def write_tx(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction holding the write lock from its first statement."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


@contextmanager
def read_tx(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """A consistent snapshot across several SELECTs (WAL readers never block writers)."""
    conn.execute("BEGIN")
    try:
        yield conn
    finally:
        conn.execute("COMMIT")


def get_setting(conn: sqlite3.Connection, key: str, default: str | None = None) -> str | None:
    row = conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
    return row[0] if row else default


def set_setting(conn: sqlite3.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO settings (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )
