"""Paths that name the queue's database are known by stat() alone, so nothing opens them beside a connection."""

from __future__ import annotations

import os

from PIL import Image

from storage.db import connect, database_file_named, write_tx


def test_every_name_of_the_database_files_is_known(home, tmp_path):
    conn = connect(home.db)
    with write_tx(conn):
        conn.execute("INSERT INTO settings (key, value) VALUES ('x', 'y')")
    wal, shm = home.root / "flf2v.db-wal", home.root / "flf2v.db-shm"
    link = tmp_path / "innocent.png"
    os.link(home.db, link)
    assert [database_file_named(p, home.db) for p in (home.db, wal, shm, link)] == [home.db, wal, shm, home.db]
    other = tmp_path / "other.png"
    Image.new("RGB", (4, 4)).save(other)
    assert database_file_named(other, home.db) is None
    assert database_file_named(tmp_path / "missing.png", home.db) is None
    assert database_file_named("bad\0name", home.db) is None
    conn.close()
