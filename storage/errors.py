"""Storage errors in one line: the cause (disk full, read-only, locked too long, corrupt, ...), where, and the fix.

SQLite and the OS report the same few conditions in many shapes: `database or disk is full`, `disk I/O error`
when the shared-memory file cannot grow, `[Errno 28]` from a copy, or a failed ROLLBACK whose context holds
the real cause. `storage_fault` reads them all, following an exception's cause and context, and returns None
for what is not a storage condition (a bug such as an IntegrityError keeps its traceback).
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from engine.diskspace import exception_chain, free_bytes, human_size, nearest_existing, nearly_full
from storage.db import BUSY_TIMEOUT_MS

DISK_FULL = "disk full"
READ_ONLY = "read-only"
LOCKED = "locked too long"
CORRUPT = "corrupt"
NO_PERMISSION = "permission denied"
IO_ERROR = "I/O error"
CANNOT_OPEN = "cannot open"

# The write-ahead log grows to about 1000 pages (4 MiB) between checkpoints; a write may need all of it.
DB_HEADROOM_BYTES = 4 << 20

_OS_CAUSES = {
    errno.ENOSPC: DISK_FULL,
    errno.EDQUOT: DISK_FULL,
    errno.EROFS: READ_ONLY,
    errno.EACCES: NO_PERMISSION,
    errno.EPERM: NO_PERMISSION,
    errno.EIO: IO_ERROR,
}
# SQLite's primary result codes (the low byte of an extended code).
_SQLITE_CAUSES = {13: DISK_FULL, 8: READ_ONLY, 5: LOCKED, 6: LOCKED, 11: CORRUPT, 26: CORRUPT, 10: IO_ERROR,
                  14: CANNOT_OPEN, 3: NO_PERMISSION, 23: NO_PERMISSION}  # fmt: skip
# The same, from the message, for Pythons before 3.11 (no sqlite_errorcode).
_SQLITE_WORDS = (
    ("database or disk is full", DISK_FULL),
    ("readonly database", READ_ONLY),
    ("database is locked", LOCKED),
    ("database table is locked", LOCKED),
    ("malformed", CORRUPT),
    ("not a database", CORRUPT),
    ("disk i/o error", IO_ERROR),
    ("unable to open database file", CANNOT_OPEN),
)


def files_size(paths: Iterable[str | os.PathLike[str]]) -> int:
    """Bytes in those of `paths` that are readable files (what copying them would take)."""
    total = 0
    for path in paths:
        with contextlib.suppress(OSError, ValueError):
            if os.path.isfile(path):
                total += os.path.getsize(path)
    return total


@dataclass(frozen=True)
class StorageFault:
    cause: str  # one of the names above
    path: Path | None  # the file or folder that could not be used
    detail: str  # the error's own words
    free: int | None = None  # bytes free where `path` lives, for a full disk

    @property
    def folder(self) -> Path | None:
        if self.path is None:
            return None
        return self.path if self.path.is_dir() else self.path.parent

    def summary(self) -> str:
        """The cause and where, e.g. `disk full on /data/flf2v (12.0 KiB free)`; the same for the same fault,
        so that a caller that says it once can tell a new fault from a repeat."""
        where = self.path if self.path is not None else "?"
        if self.cause == DISK_FULL:
            free = f" ({human_size(self.free)} free)" if self.free is not None else ""
            return f"disk full on {self.folder or where}{free}"
        if self.cause == LOCKED:
            return f"locked too long: {where} stayed locked by another process for over {BUSY_TIMEOUT_MS // 1000} s"
        if self.cause in (IO_ERROR, CANNOT_OPEN):
            return f"{self.cause} on {where} ({self.detail})"
        return f"{self.cause}: {where} ({self.detail})"

    def line(self, needed: int | None = None) -> str:
        """One line for a person: the summary, what is needed, and the fix."""
        if self.cause == DISK_FULL:
            need = f"; about {human_size(needed)} is needed" if needed else ""
            return f"{self.summary()}{need}; free some space there (or set FLF2V_HOME to a larger disk) and try again"
        fixes = {
            READ_ONLY: "remount it read-write, make it writable, or set FLF2V_HOME to a writable folder",
            LOCKED: "wait for that process to finish (or stop it) and try again",
            CORRUPT: "move the database aside with its -wal and -shm files and run again, or restore a backup",
            NO_PERMISSION: "give your user write access to it, or set FLF2V_HOME to a folder you own",
            IO_ERROR: "check the disk (dmesg shows device errors) and try again",
            CANNOT_OPEN: "check that its folder exists and is writable, and that the disk has room",
        }
        return f"{self.summary()}; {fixes[self.cause]}"


def _chain(exc: BaseException) -> list[BaseException]:
    return exception_chain(exc)[:8]


def _cause_of(exc: BaseException) -> str | None:
    if isinstance(exc, OSError):
        return _OS_CAUSES.get(exc.errno or 0)
    if isinstance(exc, sqlite3.IntegrityError | sqlite3.ProgrammingError | sqlite3.InterfaceError):
        return None  # our bugs, not the disk's
    if isinstance(exc, sqlite3.Error):
        code = getattr(exc, "sqlite_errorcode", None)
        if isinstance(code, int) and (code & 0xFF) in _SQLITE_CAUSES:
            return _SQLITE_CAUSES[code & 0xFF]
        text = str(exc).lower()
        return next((cause for words, cause in _SQLITE_WORDS if words in text), None)
    return None


def _refine(cause: str, path: Path | None) -> str:
    """SQLite says `disk I/O error` or `unable to open` when its shared-memory file cannot grow or be made:
    the file system then tells whether it is full or read-only."""
    if cause not in (IO_ERROR, CANNOT_OPEN) or path is None:
        return cause
    if nearly_full(path):
        return DISK_FULL
    try:
        if os.statvfs(nearest_existing(path)).f_flag & os.ST_RDONLY:
            return READ_ONLY
    except OSError:
        pass
    return cause


def storage_fault(exc: BaseException, where: str | os.PathLike[str] | None = None) -> StorageFault | None:
    """The storage condition behind `exc`, or None. `where`: the file the caller was using (the database),
    for errors that do not name one."""
    for link in _chain(exc):
        cause = _cause_of(link)
        if cause is None:
            continue
        named = getattr(link, "filename", None) if isinstance(link, OSError) else None
        path = Path(os.fsdecode(named)) if named else (Path(where) if where is not None else None)
        cause = _refine(cause, path)
        detail = link.strerror if isinstance(link, OSError) and link.strerror else str(link)
        free = free_bytes(path) if cause == DISK_FULL and path is not None else None
        return StorageFault(cause, path, detail, free)
    return None
