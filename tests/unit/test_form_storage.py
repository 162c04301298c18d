"""The submit form (screen_data.form, without its widgets) says a storage error as `flf2v submit` does: the cause,
where, and for a full disk what is free and about what the job needs. The disk is a small tmpfs the test
mounts and fills (root only; skipped with the reason elsewhere)."""

from __future__ import annotations

import re

import pytest

from flf2v_tui.screen_data import form
from storage.db import connect
from storage.paths import Home
from tests.disk_helpers import fill, small_tmpfs
from tests.functional.queue_helpers import write_stub_checkpoint


@pytest.mark.parametrize("case", ["the copies do not fit", "the database is full after the copies"])
def test_a_full_disk_under_the_form_is_named_with_where_free_and_needed(tmp_path, frames, case):
    ckpt = write_stub_checkpoint(tmp_path / "ckpt")
    values = {name: "" for name in form.FIELDS} | {
        "first_frame": str(frames[0]), "last_frame": str(frames[1]), "prompt": "a kite", "task": "flf2v-tiny",
        "ckpt_dir": str(ckpt), "size": "64*32", "frame_num": "9", "sample_steps": "4",
    }  # fmt: skip
    with small_tmpfs(tmp_path / "home", "2m") as mount:
        roomy_jobs = tmp_path / "roomy-jobs"
        if case == "the database is full after the copies":
            # The frames are copied to another disk. The connection is open (its shared-memory file made) but
            # its log cannot grow, so the COMMIT fails: an SQLite error, said as the database's disk.
            roomy_jobs.mkdir()
            (mount / "jobs").symlink_to(roomy_jobs)
        home = Home(mount).ensure()
        conn = connect(home.db)
        try:
            fill(mount)
            ids, errors = form.submit(conn, home, values)
            assert ids == [] and list(errors) == [form.FORM_LEVEL], errors
            said = errors[form.FORM_LEVEL]
            where = re.escape(str(mount if roomy_jobs.exists() else mount / "jobs"))
            assert re.fullmatch(
                rf"disk full on {where} \([\d.]+ (B|KiB) free\); about [\d.]+ MiB is needed; "
                r"free some space there \(or set FLF2V_HOME to a larger disk\) and try again; nothing was queued",
                said,
            ), said
            assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0
        finally:
            conn.close()
