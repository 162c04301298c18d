"""Storage errors read from real SQLite and OS failures: one cause, where, and (for a full disk) the free space.

The full-disk cases use a small tmpfs the test mounts (root only; skipped with the reason elsewhere).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from flf2v_tui.worker.outage import StorageGuard
from storage.db import DatabaseError, connect, write_tx
from storage.errors import CORRUPT, DISK_FULL, LOCKED, READ_ONLY, storage_fault
from tests.disk_helpers import fill, small_tmpfs


def fault_from(action, where: Path):
    with pytest.raises((sqlite3.Error, OSError, DatabaseError)) as caught:
        action()
    return storage_fault(caught.value, where)


def test_locked_past_the_busy_timeout(tmp_path):
    db = tmp_path / "q.db"
    holder = connect(db)
    holder.execute("BEGIN IMMEDIATE")
    waiter = sqlite3.connect(db, timeout=0, isolation_level=None)
    fault = fault_from(lambda: waiter.execute("BEGIN IMMEDIATE"), db)
    assert fault is not None and fault.cause == LOCKED
    assert fault.line().startswith(f"locked too long: {db} stayed locked by another process for over 60 s; wait")


def test_read_only_database(tmp_path):
    db = tmp_path / "q.db"
    connect(db).close()
    reader = sqlite3.connect(f"file:{db}?mode=ro", uri=True, isolation_level=None)
    fault = fault_from(lambda: reader.execute("INSERT INTO settings (key, value) VALUES ('a', 'b')"), db)
    assert fault is not None and fault.cause == READ_ONLY
    assert fault.line().startswith(f"read-only: {db} (attempt to write a readonly database); remount")


def test_corrupt_database(tmp_path):
    db = tmp_path / "q.db"
    db.write_bytes(b"this is no database, only text that fills the header and more" * 100)
    fault = fault_from(lambda: connect(db), db)
    assert fault is not None and fault.cause == CORRUPT and str(db) in fault.line()


def test_bugs_are_not_storage_errors(tmp_path):
    conn = connect(tmp_path / "q.db")
    conn.execute("INSERT INTO settings (key, value) VALUES ('a', 'b')")
    integrity = fault_from(lambda: conn.execute("INSERT INTO settings (key, value) VALUES ('a', 'c')"), tmp_path)
    assert integrity is None
    assert storage_fault(ValueError("no"), tmp_path) is None


def test_disk_full_from_sqlite_and_from_the_os(tmp_path):
    mount = tmp_path / "small"
    with small_tmpfs(mount, "1m"):
        db = mount / "q.db"
        connect(db).close()
        ballast = fill(mount)
        # A new connection cannot make its shared-memory file: SQLite says "disk I/O error" and connect that
        # the file is no usable database. The cause is space.
        fault = fault_from(lambda: connect(db), db)
        assert fault is not None and fault.cause == DISK_FULL
        ballast.unlink()

        conn = connect(db)
        ballast = fill(mount)

        def write_a_page() -> None:
            with write_tx(conn):
                conn.execute("INSERT INTO settings (key, value) VALUES ('big', ?)", ("x" * 20000,))

        fault = fault_from(write_a_page, db)
        assert fault is not None and fault.cause == DISK_FULL
        assert fault.folder == mount and fault.free is not None and fault.free < 4096
        assert fault.line(needed=5 << 20).startswith(f"disk full on {mount} (0 B free); about 5.0 MiB is needed; free")

        with open(mount / "copy.bin", "wb", buffering=0) as fh:
            os_fault = fault_from(lambda: fh.write(b"x" * 8192), mount / "copy.bin")
        assert os_fault is not None and os_fault.cause == DISK_FULL and os_fault.path == mount / "copy.bin"
        conn.close()
        ballast.unlink()


def test_the_worker_says_a_full_disk_once_and_again_when_it_is_over(tmp_path):
    mount = tmp_path / "small"
    with small_tmpfs(mount, "1m"):
        db = mount / "q.db"
        conn = connect(db)
        said: list[str] = []
        now = [0.0]
        guard = StorageGuard(conn, db, said.append, clock=lambda: now[0])

        calls = []

        def write() -> None:
            calls.append(now[0])
            with write_tx(conn):
                conn.execute("INSERT INTO settings (key, value) VALUES (?, ?)", (f"k{now[0]}", "x" * 20000))

        ballast = fill(mount)
        tries = []
        for _ in range(20):  # a minute of ticks, 3 s apart
            tries.append(guard.write(write))
            now[0] += 3.0
        assert not any(tries) and guard.failing
        assert len(said) == 1 and said[0].startswith(f"disk full on {mount} (0 B free); renders keep running")
        # Backing off 1, 2, 4, then 5 s at most: tried at 0, 3, 6, 12, 18, ... not on every tick.
        assert calls[:4] == [0.0, 3.0, 6.0, 12.0] and len(calls) == 11
        ballast.unlink()
        now[0] += 10.0
        assert guard.write(write) and not guard.failing
        assert said[1] == "storage works again after 70 s; resuming"
        assert conn.execute("SELECT count(*) FROM settings WHERE key LIKE 'k%'").fetchone()[0] == 1
