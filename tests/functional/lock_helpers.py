"""The queue database's write lock, held by another process: a real `BEGIN EXCLUSIVE`, as a person's sqlite3
shell or a stuck program would hold it, for the tests of a lock held past the busy timeout."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

# Takes the write lock, says so, and keeps it until the file named second exists.
_LOCKER = """
import os, sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
while not os.path.exists(sys.argv[2]):
    time.sleep(0.02)
conn.execute("COMMIT")
"""


@contextlib.contextmanager
def held_lock(db: Path, release: Path) -> Iterator[None]:
    """The write lock of `db`, held by another process until `release` exists (made on leaving if not before;
    on leaving, the lock is gone)."""
    locker = subprocess.Popen([sys.executable, "-c", _LOCKER, str(db), str(release)], stdout=subprocess.PIPE, text=True)
    try:
        assert locker.stdout is not None and locker.stdout.readline().strip() == "locked"
        yield
    finally:
        release.touch()
        locker.wait(timeout=30)
