"""The database file: location, permissions, pragmas, migrations from every earlier version."""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import threading
import time

import pytest

from storage.db import DatabaseError, connect, database_files, migrate_to, write_tx
from storage.paths import Home, default_home
from storage.schema import LATEST, MIGRATIONS
from storage.states import ATTEMPT_STATES, FINISHED, HELD, JOB_STATES, LISTED, UNFINISHED, sql_list


def test_home_resolution_order(monkeypatch, tmp_path):
    monkeypatch.delenv("FLF2V_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_home() == tmp_path / ".local" / "share" / "flf2v"
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_home() == tmp_path / "xdg" / "flf2v"
    monkeypatch.setenv("FLF2V_HOME", str(tmp_path / "explicit"))
    assert default_home() == tmp_path / "explicit"
    home = Home.resolve().ensure()
    assert {p.name for p in home.root.iterdir()} >= {"jobs", "videos", "models"}
    assert stat.S_IMODE(home.root.stat().st_mode) == 0o700


def test_the_schema_stores_exactly_the_named_states(home):
    # storage.states is the one vocabulary: migration 1's CHECK constraints must list the same states.
    conn = connect(home.db)
    tables = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'table'").fetchall())
    assert f"CHECK (state IN {sql_list(JOB_STATES)})" in tables["jobs"]
    assert f"CHECK (state IN {sql_list(ATTEMPT_STATES)})" in tables["attempts"]
    assert sorted(FINISHED + UNFINISHED) == sorted(JOB_STATES)
    assert sorted(LISTED) == sorted((*JOB_STATES, HELD))


def test_new_database_is_private_wal_with_foreign_keys(home):
    conn = connect(home.db)
    assert stat.S_IMODE(home.db.stat().st_mode) == 0o600
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 30_000
    assert conn.execute("PRAGMA user_version").fetchone()[0] == LATEST
    with write_tx(conn):
        conn.execute("INSERT INTO settings (key, value) VALUES ('x', 'y')")
    wal = home.db.with_name(home.db.name + "-wal")
    assert wal.exists() and stat.S_IMODE(wal.stat().st_mode) == 0o600
    orphan = (
        "INSERT INTO attempts (job_id, number, worker_host, worker_pid, worker_started, device, gpus, nproc, log_dir, "
        "started_at) VALUES (999, 1, 'h', 1, 1.0, 'cpu', 'cpu0', 1, '/x', 1.0)"
    )
    with pytest.raises(sqlite3.IntegrityError):
        conn.execute(orphan)


def test_loose_permissions_are_tightened(home):
    home.db.touch(mode=0o644)
    home.db.chmod(0o644)
    connect(home.db).close()
    assert stat.S_IMODE(home.db.stat().st_mode) == 0o600


def test_private_under_umask_000_and_the_umask_is_restored(home):
    saved = os.umask(0)
    try:
        conn = connect(home.db)
        with write_tx(conn):
            conn.execute("INSERT INTO settings (key, value) VALUES ('x', 'y')")
        assert os.umask(0) == 0, "connect changed the process's umask"
        files = database_files(home.db)
        assert [p.name for p in files if p.exists()] == ["flf2v.db", "flf2v.db-wal", "flf2v.db-shm"]
        assert {p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {p.name: "0o600" for p in files}
        conn.close()
    finally:
        os.umask(saved)


def test_threads_creating_databases_at_once_leave_the_umask_as_it_was(tmp_path):
    saved = os.umask(0o022)
    start = threading.Barrier(8)
    made: list[sqlite3.Connection] = []

    def open_new(n: int) -> None:
        start.wait()
        made.append(connect(tmp_path / f"{n}.db"))

    try:
        threads = [threading.Thread(target=open_new, args=(n,)) for n in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert os.umask(0o022) == 0o022
    finally:
        os.umask(saved)
    assert len(made) == 8
    assert {stat.S_IMODE((tmp_path / f"{n}.db").stat().st_mode) for n in range(8)} == {0o600}
    (tmp_path / "after.txt").touch()  # files made afterwards get the user's umask again, not 077
    assert stat.S_IMODE((tmp_path / "after.txt").stat().st_mode) == 0o644
    for conn in made:
        conn.close()


def test_a_newer_database_is_refused_with_advice(home):
    conn = connect(home.db)
    conn.execute(f"PRAGMA user_version = {LATEST + 1}")
    conn.close()
    with pytest.raises(DatabaseError, match="newer than this flf2v"):
        connect(home.db)


def test_garbage_file_is_reported(home):
    home.db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(DatabaseError, match="not a usable SQLite database"):
        connect(home.db)


# Rows as each earlier version could hold them; each must survive every later migration unchanged.
def _seed_v1(conn: sqlite3.Connection) -> None:
    now = time.time()
    conn.execute(
        "INSERT INTO jobs (id, seq, task, size, frame_num, ckpt_dir, sample_solver, sample_steps, sample_shift, "
        "sample_guide_scale, base_seed, first_frame, last_frame, first_frame_src, last_frame_src, prompt, "
        "created_at, queued_at, labels, state) VALUES (7, 1, 'flf2v-tiny', '64*64', 9, '/c', 'unipc', 4, 16.0, "
        "5.0, 3, '/f', '/l', '/f0', '/l0', 'kept prompt', ?, ?, '[\"a\"]', 'succeeded')",
        (now, now),
    )
    conn.execute(
        "INSERT INTO attempts (job_id, number, state, worker_host, worker_pid, worker_started, device, gpus, nproc, "
        "log_dir, started_at, peak_memory) VALUES (7, 1, 'succeeded', 'h', 1, 1.0, 'cpu', 'cpu0', 2, '/x', ?, ?)",
        (now, json.dumps({"0": 5})),
    )


def _seed_v2(conn: sqlite3.Connection) -> None:
    conn.execute(
        "INSERT INTO videos (job_id, path, size_bytes, sha256, width, height, frames, fps, duration, task, size, "
        "prompt, seed, sample_steps, sample_shift, sample_guide_scale, sample_solver, ckpt_dir, created_at, rating) "
        "VALUES (7, '/v.mp4', 10, 'ab', 64, 64, 9, 16, 0.56, 'flf2v-tiny', '64*64', 'kept prompt', 3, 4, 16, 5, "
        "'unipc', '/c', 1.0, 4)"
    )


def _seed_v3(conn: sqlite3.Connection) -> None:
    conn.execute('UPDATE videos SET tags = \'["sunrise"]\', files = \'{"sheet": "/s.png"}\'')


def _seed_v4(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE attempts SET psnr_first = 31.5, psnr_last = 28.25")
    conn.execute("UPDATE videos SET psnr_first = 31.5, psnr_last = 28.25")


def _seed_v5(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE jobs SET collective_timeout = 30.5 WHERE id = 7")
    conn.execute(
        "UPDATE attempts SET backend = 'slurm', slurm_job = '41', slurm_state = 'RUNNING', node_list = 'n[1-2]'"
    )


def _seed_v6(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE jobs SET dtype = 'bf16' WHERE id = 7")


def _seed_v7(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE jobs SET cfg_size = 2, attn = 'cudnn', compile = 1")
    conn.execute("UPDATE attempts SET attention = 'cudnn (_native_cudnn)'")


SEEDS = {1: _seed_v1, 2: _seed_v2, 3: _seed_v3, 4: _seed_v4, 5: _seed_v5, 6: _seed_v6, 7: _seed_v7}


def _schema(conn: sqlite3.Connection) -> list[tuple[str, str]]:
    rows = conn.execute("SELECT name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY name").fetchall()
    return [(r[0], r[1]) for r in rows]


def test_every_migration_has_seed_data():
    assert set(SEEDS) == set(range(1, LATEST + 1)), "add a _seed_vN for the new schema version"


@pytest.mark.parametrize("start", range(LATEST + 1))
def test_migrations_from_every_earlier_version(tmp_path, start):
    fresh = connect(tmp_path / "fresh.db")
    old_path = tmp_path / "old.db"
    raw = sqlite3.connect(old_path, isolation_level=None)
    raw.execute("PRAGMA foreign_keys = ON")
    migrate_to(raw, start)
    for version in range(1, start + 1):
        with write_tx(raw):
            SEEDS[version](raw)
    raw.close()
    upgraded = connect(old_path)
    assert upgraded.execute("PRAGMA user_version").fetchone()[0] == LATEST
    assert _schema(upgraded) == _schema(fresh)
    if start >= 1:
        job = upgraded.execute("SELECT prompt, labels, state FROM jobs WHERE id = 7").fetchone()
        assert tuple(job) == ("kept prompt", '["a"]', "succeeded")
        assert upgraded.execute("SELECT peak_memory FROM attempts").fetchone()[0] == '{"0": 5}'
    if start >= 2:
        assert upgraded.execute("SELECT rating FROM videos").fetchone()[0] == 4
        # Rows from before the search index existed are found by it.
        found = upgraded.execute("SELECT rowid FROM videos_fts WHERE videos_fts MATCH 'kept'").fetchall()
        assert len(found) == 1
    if start >= 3:
        assert upgraded.execute("SELECT files FROM videos").fetchone()[0] == '{"sheet": "/s.png"}'
        assert upgraded.execute("SELECT rowid FROM videos_fts WHERE videos_fts MATCH 'sunrise'").fetchall()
    if start >= 4:
        assert upgraded.execute("SELECT psnr_first, psnr_last FROM videos").fetchone()[:] == (31.5, 28.25)
    if start >= 1:  # jobs from before --dtype keep the engine's default, resolved per device
        assert upgraded.execute("SELECT dtype FROM jobs WHERE id = 7").fetchone()[0] == (
            "bf16" if start >= 6 else "auto"
        )
    if 1 <= start <= 6:  # jobs from before the fast path run as they always did
        assert tuple(upgraded.execute("SELECT cfg_size, attn, compile FROM jobs").fetchone()) == (1, "auto", 0)
    if start >= 7:
        assert tuple(upgraded.execute("SELECT cfg_size, attn, compile FROM jobs").fetchone()) == (2, "cudnn", 1)
    assert upgraded.execute("PRAGMA foreign_key_check").fetchall() == []
    assert len(MIGRATIONS) == LATEST
