"""Several processes sharing one database file, the way flf2v is used: a TUI with two connections, a worker,
and `flf2v` commands that open, write and exit. A committed write must never vanish from anyone's view.

Opening and closing the database file outside SQLite in a process that holds a connection drops that
process's POSIX locks on it; the next process to close the database then believes it is the last user and
deletes the WAL from under the live connections (SQLite: "How To Corrupt An SQLite Database File", 2.2).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict
from typing import Any

import pytest

from storage.db import connect
from tests.functional.queue_helpers import flf2v
from tests.functional.wal_procs import ask, deleted_files, finish_actor, once, shared_lock_held, start_actor
from tests.functional.wal_soak import MIN_ROWS_CHECKED, MIN_WRITES, Soak


def test_a_second_connection_leaves_the_first_ones_lock_in_place(qhome):
    db = qhome / "flf2v.db"
    first = connect(db)
    first.execute("SELECT * FROM settings").fetchall()
    assert shared_lock_held(db), "the first connection holds SQLite's shared lock"
    second = connect(db)
    second.execute("SELECT * FROM settings").fetchall()
    assert shared_lock_held(db), "opening a second connection dropped the first one's lock"
    second.close()
    assert shared_lock_held(db), "closing the second connection dropped the first one's lock"
    first.close()
    assert not shared_lock_held(db)


def test_the_tui_decodes_no_database_file_as_a_picture(qhome, monkeypatch):
    """A preview's path comes from an events file; were it the database, decoding it would drop the locks."""
    from flf2v_tui.tui.images import load_picture

    monkeypatch.setenv("FLF2V_HOME", str(qhome))
    db = qhome / "flf2v.db"
    conn = connect(db)
    conn.execute("SELECT * FROM settings").fetchall()
    assert load_picture(db) is None and load_picture(qhome / "flf2v.db-shm") is None
    assert shared_lock_held(db)
    conn.close()


def test_two_connections_in_one_process_keep_every_write(qhome, qframes):
    db = qhome / "flf2v.db"
    once(qhome, qframes, op="list")  # the database exists before the first process opens it
    tui = start_actor(qhome, qframes)
    holder = None
    try:
        # One process opens two connections, as the TUI does (reads on one, writes on the other).
        assert ask(tui, op="list", conn="read")["jobs"] == {}
        assert ask(tui, op="list", conn="write")["jobs"] == {}
        # Another process writes and exits; a third keeps the database open; a fourth writes.
        once(qhome, qframes, op="submit", tag="from a command that exits")
        holder = start_actor(qhome, qframes)
        ask(holder, op="list")
        once(qhome, qframes, op="submit", tag="written while another process holds the file")
        # The first process writes through its second connection.
        ask(tui, op="submit", tag="from the TUI's write connection", conn="write")
        everyone = {"from a command that exits", "written while another process holds the file",
                    "from the TUI's write connection"}  # fmt: skip

        for conn in ("read", "write"):
            assert prompts(ask(tui, op="list", conn=conn)) == everyone, f"the TUI's {conn} connection"
        assert prompts(ask(holder, op="list")) == everyone, "the process that kept the database open"
        assert prompts(once(qhome, qframes, op="list")) == everyone, "a fresh process"
        for proc in (tui, holder):
            assert deleted_files(proc.pid, db) == [], f"process {proc.pid} holds unlinked database files"
    finally:
        for proc in (tui, holder):
            if proc is not None:
                finish_actor(proc)
    assert prompts(once(qhome, qframes, op="list")) == everyone, "after every process closed the database"


def prompts(answer: dict[str, Any]) -> set[str]:
    jobs = answer["jobs"].values()
    assert len({job["id"] for job in jobs}) == len(jobs)
    return {job["prompt"] for job in jobs}


@pytest.mark.slow
def test_soak_of_many_processes_loses_no_acknowledged_write(qhome, qframes):
    """FLF2V_SOAK_SECONDS lengthens the run (20 s by default); FLF2V_SOAK_SEED repeats one."""
    seconds = float(os.environ.get("FLF2V_SOAK_SECONDS", "20"))
    seed = int(os.environ.get("FLF2V_SOAK_SEED", str(time.time_ns() % 2**32)))
    soak = Soak(qhome, qframes, seconds, seed)
    try:
        figures = soak.run()
        soak.final_check(once(qhome, qframes, op="dump")["jobs"])
    finally:
        soak.close()
    conn = connect(qhome / "flf2v.db")
    integrity = conn.execute("PRAGMA integrity_check").fetchone()[0]
    conn.close()
    counts = {k: len(v) if isinstance(v, list) else v for k, v in asdict(figures).items()}
    print(f"soak seed {seed}, {seconds:g} s: {json.dumps(counts)}")
    assert figures.lost == [], f"seed {seed}: {len(figures.lost)} disagreements, first: {figures.lost[:5]}"
    assert figures.errors == [], f"seed {seed}: {len(figures.errors)} storage errors, first: {figures.errors[:5]}"
    assert figures.deleted == [], f"seed {seed}: unlinked database files held: {figures.deleted[:5]}"
    assert integrity == "ok"
    # The run did what a soak must: many writes and checks, processes killed mid-command and exiting normally.
    assert figures.writes >= MIN_WRITES and figures.rows_checked >= MIN_ROWS_CHECKED, figures
    assert figures.kills > 0 and figures.normal_exits > 0, figures


def test_the_database_given_as_a_frame_is_refused_before_it_is_opened(qhome, qframes, stub_ckpt):
    """Opened as an image, flf2v.db or its -shm would be closed beside the process's own connections (the TUI's
    form runs these checks in the TUI), dropping their locks. Found by identity, so a hard link is no way in."""
    holder = start_actor(qhome, qframes)  # keeps the -wal and -shm in place while the CLI runs
    try:
        ask(holder, op="submit", tag="kept")
        link = qhome.parent / "frame.png"
        os.link(qhome / "flf2v.db", link)
        for frame in (qhome / "flf2v.db", qhome / "flf2v.db-shm", link):
            proc = flf2v(qhome, "submit", "--task", "flf2v-tiny", "--ckpt_dir", str(stub_ckpt), "--first_frame",
                         str(qframes[0]), "--last_frame", str(frame), "--prompt", "x", "--gpus", "1")  # fmt: skip
            assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
            assert f"last frame {frame} is the queue's own database, not an image" in proc.stderr
        assert prompts(ask(holder, op="list")) == {"kept"}
        assert deleted_files(holder.pid, qhome / "flf2v.db") == []
    finally:
        finish_actor(holder)
