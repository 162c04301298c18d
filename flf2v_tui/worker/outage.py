"""Storage trouble the worker rides out: a full disk, a read-only remount, a lock held past busy_timeout.

The worker never dies of one. A failed write is rolled back and tried again later, with a back-off; the
renders keep running and are watched all along, and what could not be written (progress, an attempt's end)
is written once storage works again. Each fault is said once when it starts, not on every tick, and once
more when it is over.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from storage.errors import StorageFault, storage_fault

FIRST_RETRY_S = 1.0
MAX_RETRY_S = 5.0


def fault_of(exc: BaseException, db: Path) -> StorageFault | None:
    """The storage condition behind `exc`, or None for an error that is a bug (and must not be swallowed)."""
    if isinstance(exc, sqlite3.Error | OSError):
        return storage_fault(exc, db)
    return None


def rollback(conn: sqlite3.Connection) -> None:
    """SQLite may keep a transaction open after a failed COMMIT (a full disk): the next BEGIN would fail."""
    if conn.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            conn.execute("ROLLBACK")


def _disk_of(fault: StorageFault | None) -> object:
    """Faults on one file system are one fault, whichever file hit it and however much space is left."""
    folder = fault.folder if fault is not None else None
    if folder is None:
        return None
    for candidate in (folder, *folder.parents):
        with contextlib.suppress(OSError):
            return os.stat(candidate).st_dev
    return str(folder)


class StorageGuard:
    """The worker's writes, each run through `write`: the one place that knows whether storage is failing."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        db: Path,
        say: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.conn, self.db, self._say, self._clock = conn, db, say, clock
        self.since: float | None = None  # when the current failure began
        self._key: tuple[str, object] | None = None
        self._delay = FIRST_RETRY_S
        self._next_try = 0.0

    @property
    def failing(self) -> bool:
        return self.since is not None

    def write(self, action: Callable[[], object]) -> bool:
        """Run `action`, which writes; False when storage failed it (rolled back, said once, tried again after
        a back-off) or when an earlier failure's back-off is still running. A success shows that storage works
        again."""
        if self.since is not None and self._clock() < self._next_try:
            return False
        if not self.run(action):
            return False
        if self.since is not None:
            self._say(f"storage works again after {self._clock() - self.since:.0f} s; resuming")
            self.since, self._key = None, None
        return True

    def run(self, action: Callable[[], object]) -> bool:
        """Run `action` whatever the back-off (a whole tick, whose own writes go through `write`); a storage
        error is rolled back and recorded like a failed write, and False returned."""
        try:
            action()
        except (sqlite3.Error, OSError) as exc:
            fault = fault_of(exc, self.db)
            if fault is None and not isinstance(exc, sqlite3.OperationalError):
                raise
            rollback(self.conn)
            self._failed(fault, exc)
            return False
        return True

    def last_write(self, action: Callable[[], object], what: str, anyway: str) -> bool:
        """A write on the way out: tried once, whatever the back-off. A failure is said in one line, with
        what happens `anyway`, and never raised."""
        try:
            action()
            return True
        except (sqlite3.Error, OSError) as exc:
            rollback(self.conn)
            fault = fault_of(exc, self.db)
            self._say(f"could not write {what} ({fault.summary() if fault else exc}); {anyway}")
            return False

    def _failed(self, fault: StorageFault | None, exc: BaseException) -> None:
        now = self._clock()
        if self.since is None:
            self.since, self._delay = now, FIRST_RETRY_S
        else:
            self._delay = min(MAX_RETRY_S, self._delay * 2)
        self._next_try = now + self._delay
        key = (fault.cause, _disk_of(fault)) if fault is not None else ("database error", str(exc))
        if key != self._key:
            self._key = key
            what = fault.summary() if fault is not None else f"database error: {exc}"
            self._say(
                f"{what}; renders keep running and are watched, and what could not be written is written once "
                f"it can be (retrying every {MAX_RETRY_S:g} s at most; no new render starts meanwhile)"
            )
