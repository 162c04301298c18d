"""`flf2v videos rerun`, `rm` and `open` through the real CLI, against videos catalogued by the worker's own code
(tests/functional/catalogue_world.py), so no render is needed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from storage.catalogue import get_video
from storage.db import connect
from tests.functional.catalogue_world import add_videos
from tests.functional.queue_helpers import REPO, env_for, flf2v, in_terminal, job_row


def cli_options(*path: str) -> set[str]:
    """Every option spelling a command accepts, from the click command typer builds."""
    import typer.main

    from flf2v_tui.cli import app

    command = typer.main.get_command(app)
    for name in path:
        command = command.commands[name]  # type: ignore[attr-defined]
    return {spelling for p in command.params for spelling in (*p.opts, *p.secondary_opts) if spelling.startswith("-")}


def test_rerun_takes_every_flag_that_submit_takes():
    missing = cli_options("submit") - cli_options("videos", "rerun")
    assert missing == set()


def test_rerun_queue_flags_reach_the_job_row(world):
    home = world.home.root
    video = add_videos(world)[1]
    after = world.ids["queued"]
    assert flf2v(home, "videos", "tag", str(video), "tagged").returncode == 0
    proc = flf2v(home, "videos", "rerun", str(video), "--base_seed", "9", "--after", str(after), "--retries", "5",
                 "--retry-on", "oom,comm", "--retry-backoff", "7.5", "--nodes", "1", "--priority", "3",
                 "--label", "again", "--hold", "--json")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (job,) = json.loads(proc.stdout)["ids"]
    row = job_row(home, job)
    assert (row["max_retries"], row["retry_on"], row["retry_backoff"]) == (5, "oom,comm", 7.5)
    # The video's labels and tags stay with the new job, beside the one given.
    assert (row["nodes"], row["priority"], row["held"]) == (1, 3, 1)
    its_job = json.loads(job_row(home, world.ids["succeeded"])["labels"])
    assert json.loads(row["labels"]) == sorted({"again", "bird", "keeper", "tagged", *its_job})
    assert (row["base_seed"], row["gpus"]) == (9, 2)  # the seed changed; the ranks as the video was made
    conn = connect(home / "flf2v.db")
    assert [r[0] for r in conn.execute("SELECT after_id FROM job_deps WHERE job_id = ?", (job,))] == [after]
    conn.close()

    quiet = flf2v(home, "videos", "rerun", str(video), "--seeds", "3,4", "-q")
    assert quiet.returncode == 0 and [int(x) for x in quiet.stdout.split()] == [job + 1, job + 2]
    # Bad queue flags are refused by the same checks as submit's: exit 2, one line, nothing queued.
    refused = {("--nodes", "0"): "'--nodes': 0", ("--retry-on", "user_input"): "--retry-on user_input",
               ("--after", "999"): "--after 999", ("--retry-backoff", "-1"): "--retry-backoff"}  # fmt: skip
    for flags, said in refused.items():
        bad = flf2v(home, "videos", "rerun", str(video), *flags)
        assert bad.returncode == 2 and said in bad.stderr, bad.stderr
    conn = connect(home / "flf2v.db")
    assert conn.execute("SELECT max(id) FROM jobs").fetchone()[0] == job + 2
    conn.close()


def _video(home: Path, video_id: int) -> dict | None:
    conn = connect(home / "flf2v.db")
    try:
        return get_video(conn, video_id)
    finally:
        conn.close()


def _files(video: dict) -> list[Path]:
    path = Path(video["path"])
    sheet = Path(video["files"]["sheet"])
    return [path, Path(video["files"]["sidecar"]), sheet, sheet.parent]


@pytest.mark.parametrize("keep", [True, False], ids=["keep-file", "delete"])
def test_rm_removes_the_row_and_deletes_the_files_unless_kept(world, keep):
    home = world.home.root
    ids = add_videos(world)
    video = _video(home, ids[0])
    assert video is not None and all(p.exists() for p in _files(video))
    proc = flf2v(home, "videos", "rm", str(ids[0]), *(["--keep-file"] if keep else []))
    assert proc.returncode == 0, proc.stderr
    assert _video(home, ids[0]) is None
    assert [p.exists() for p in _files(video)] == [keep] * 4
    assert _video(home, ids[1]) is not None and Path(_video(home, ids[1])["path"]).is_file()  # others untouched


def test_open_without_a_display_prints_the_path(world):
    (video, *_) = add_videos(world)
    env = env_for(world.home.root)
    for name in ("DISPLAY", "WAYLAND_DISPLAY"):
        env.pop(name, None)
    proc = subprocess.run([sys.executable, "-m", "flf2v_tui.cli", "videos", "open", str(video)], capture_output=True,
                          text=True, env=env, cwd=REPO, timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == _video(world.home.root, video)["path"]


def test_videos_ls_never_cuts_a_seed(world):
    home = world.home.root
    video = add_videos(world)[1]
    conn = connect(home / "flf2v.db")
    with conn:
        conn.execute("UPDATE videos SET seed = 3435997493682481077 WHERE id = ?", (video,))
    conn.close()
    for columns in (60, 80, 200):
        screen = in_terminal(home, columns, "videos", "ls")
        header, *rows = [line for line in screen.splitlines() if not line.startswith("(")]
        assert all(len(line) <= columns for line in (header, *rows)), screen
        assert "a heron lands" in screen, screen  # the prompt, second, is never what gives way
        left_out = [c for c in ("SEED", "SIZE", "FRAMES", "PSNR", "TASK") if c not in header]
        note = f"({', '.join(c.lower() for c in left_out)} left out: terminal too narrow;"
        assert (note in screen) if left_out else ("left out" not in screen), screen
        seeds = [cell for row in rows for cell in row.split() if cell.isdigit() and len(cell) > 4]
        if "SEED" in header:  # whole, or not there at all (`videos show` has it)
            assert "3435997493682481077" in seeds and all(len(s) in (2, 19) for s in seeds), screen
    assert "SEED" in in_terminal(home, 80, "videos", "ls").splitlines()[0]
    assert "3435997493682481077" in flf2v(home, "videos", "show", str(video)).stdout
