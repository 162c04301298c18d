"""`flf2v submit` as a user runs it: every bad input exits 2 with one line and queues nothing."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from storage.db import connect
from tests.functional.queue_helpers import REPO, env_for, flf2v, job_row


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, qframes):
    folder = tmp_path_factory.mktemp("bad-inputs")
    (folder / "notes.png").write_text("this is text, not an image")
    (folder / "empty.png").write_bytes(b"")
    good = qframes[0].read_bytes()
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "a-folder.png").mkdir()
    return folder


@pytest.fixture(scope="module")
def broken_ckpt(tmp_path_factory, stub_ckpt):
    folder = tmp_path_factory.mktemp("broken") / "ckpt"
    shutil.copytree(stub_ckpt, folder)
    (folder / "Wan2.1_VAE.pth").unlink()
    return folder


def base_args(ckpt, frames) -> dict[str, str]:
    return {"--task": "flf2v-tiny", "--ckpt_dir": str(ckpt), "--first_frame": str(frames[0]),
            "--last_frame": str(frames[1]), "--prompt": "a bird takes off", "--gpus": "2"}  # fmt: skip


def args_list(values: dict[str, str | None]) -> list[str]:
    out: list[str] = []
    for key, value in values.items():
        if value is None:
            continue
        out += [key] if value == "" else [key, value]
    return out


BAD = {
    "no prompt": ({"--prompt": None}, "prompt is empty"),
    "blank prompt": ({"--prompt": "   "}, "prompt is empty"),
    "no first frame": ({"--first_frame": None}, "--first_frame is required"),
    "missing frame": ({"--first_frame": "/no/such/frame.png"}, "does not exist"),
    "frame is a folder": ({"--first_frame": "{bad}/a-folder.png"}, "is not a file"),
    "frame is text": ({"--last_frame": "{bad}/notes.png"}, "not an image format"),
    "empty frame": ({"--first_frame": "{bad}/empty.png"}, "is empty"),
    "truncated frame": ({"--first_frame": "{bad}/truncated.png"}, "corrupt or truncated"),
    "size off the grid": ({"--size": "100*64"}, "multiples of 16"),
    "size malformed": ({"--size": "big"}, "WIDTH\\*HEIGHT"),
    "14B size": ({"--task": "flf2v-14B", "--size": "640*640"}, "not supported by flf2v-14B"),
    "frame count": ({"--frame_num": "10"}, "4n\\+1"),
    "frame count type": ({"--frame_num": "ten"}, "frame_num.*integer"),
    "zero steps": ({"--sample_steps": "0"}, "at least 1"),
    "shift": ({"--sample_shift": "0"}, "sample_shift"),
    "guide scale": ({"--sample_guide_scale": "-1"}, "sample_guide_scale"),
    "solver": ({"--sample_solver": "euler"}, "unknown sample_solver"),
    "task": ({"--task": "t2v-1.3B"}, "unknown task"),
    "no checkpoint": ({"--task": "flf2v-14B", "--size": "1280*720", "--ckpt_dir": None}, "--ckpt_dir is required"),
    "checkpoint missing": ({"--ckpt_dir": "/no/such/ckpt"}, "does not exist"),
    "checkpoint incomplete": ({"--ckpt_dir": "{broken}"}, "Wan2.1_VAE.pth \\(missing\\)"),
    "ulysses": ({"--ulysses_size": "3"}, "needs 3 ranks, not 2: run 3 \\(flf2v --gpus 3"),
    "cfg": ({"--cfg_size": "2", "--gpus": "4"}, "needs 2 ranks, not 4"),
    "ring": ({"--ring_size": "2"}, "ring attention"),
    "offload": ({"--offload_model": "maybe"}, "True or False"),
    "no gpus": ({"--gpus": "0"}, "at least 1"),
    "no nodes": ({"--nodes": "0"}, "'--nodes': 0 must be at least 1"),
    "unknown dependency": ({"--after": "999"}, "no job 999"),
    "retry user input": ({"--retry-on": "user_input"}, "not allowed"),
    "seeds": ({"--seeds": "1,x"}, "whole numbers"),
    "sweep output": ({"--seeds": "1,2", "--save_file": "out.mp4"}, "\\{seed\\}"),
    "negative backoff": ({"--retry-backoff": "-1"}, "retry-backoff"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_exits_2_and_queues_nothing(case, qhome, stub_ckpt, qframes, bad_files, broken_ckpt):
    change, message = BAD[case]
    values = base_args(stub_ckpt, qframes)
    for key, value in change.items():
        values[key] = None if value is None else value.format(bad=bad_files, broken=broken_ckpt)
    proc = flf2v(qhome, "submit", *args_list(values))
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert re.search(message, proc.stderr), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and proc.stderr.startswith("error: ")
    conn = connect(qhome / "flf2v.db")
    assert conn.execute("SELECT COUNT(*) FROM jobs").fetchone()[0] == 0
    conn.close()
    assert not (qhome / "jobs").exists() or not list((qhome / "jobs").iterdir())


def test_submit_copies_inputs_and_sweeps(qhome, stub_ckpt, qframes, tmp_path):
    first = tmp_path / "mine.png"
    shutil.copy(qframes[0], first)
    values = {**base_args(stub_ckpt, qframes), "--first-frame": str(first), "--first_frame": None}
    proc = flf2v(qhome, "submit", *args_list(values), "--seeds", "5,6,7", "--label", "sweep", "--json")
    assert proc.returncode == 0, proc.stderr
    ids = json.loads(proc.stdout)["ids"]
    assert len(ids) == 3
    first.unlink()  # the original goes away; the jobs keep their copies
    rows = [job_row(qhome, i) for i in ids]
    assert [r["base_seed"] for r in rows] == [5, 6, 7]
    assert all(os.path.exists(r["first_frame"]) and r["first_frame_src"] == str(first) for r in rows)
    assert len({r["first_frame"] for r in rows}) == 3
    listing = json.loads(flf2v(qhome, "ls", "--label", "sweep", "--json").stdout)
    assert [j["id"] for j in listing] == ids and all(j["labels"] == ["sweep"] for j in listing)


def test_ls_and_submit_never_import_torch(qhome, stub_ckpt, qframes):
    code = (
        "import sys\n"
        "from flf2v_tui.cli import app\n"
        "for argv in (sys.argv[1:], ['ls'], ['show', '1'], ['ls', '--json']):\n"
        "    try:\n"
        "        app(argv, standalone_mode=False)\n"
        "    except SystemExit:\n"
        "        pass\n"
        "heavy = [m for m in ('torch', 'textual', 'sqlmodel', 'sqlalchemy', 'numpy') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, "submit", *args_list(base_args(stub_ckpt, qframes))],
        capture_output=True, text=True, env=env_for(qhome), cwd=REPO, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout, proc.stdout
    assert "queued job 1" in proc.stdout


def test_ls_does_not_load_the_picture_library(qhome):
    """`flf2v ls` runs often (watch, scripts): PIL is for the commands that look at frames (submit's guards)."""
    code = (
        "import sys\n"
        "from flf2v_tui.cli import app\n"
        "try:\n"
        "    app(['ls'], standalone_mode=False)\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('PIL' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env_for(qhome), cwd=REPO,
                          timeout=60)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "False", proc.stdout


def test_submit_over_several_nodes_stores_nodes_gpus_per_node_and_the_timeout(qhome, stub_ckpt, qframes):
    values = base_args(stub_ckpt, qframes)
    proc = flf2v(qhome, "submit", *args_list(values), "--nodes", "2", "--gpus-per-node", "3",
                 "--collective-timeout", "45", "-q")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    row = job_row(qhome, int(proc.stdout))
    assert (row["nodes"], row["gpus"], row["collective_timeout"]) == (2, 3, 45.0)


def test_flf_guards_warn_and_never_refuse(qhome, stub_ckpt, qframes):
    """The same frame twice, and more frames than the model knows: warnings on stderr, fields under --json,
    nothing under -q; the jobs are queued all the same."""
    from tests.functional.cli_in_process import run_cli

    base = ["submit", "--task", "flf2v-tiny", "--ckpt_dir", str(stub_ckpt), "--prompt", "x", "--other-worker"]
    same = [*base, "--first_frame", str(qframes[0]), "--last_frame", str(qframes[0]), "--frame_num", "85"]
    code, out, err = run_cli(same, qhome)
    assert code == 0 and out.strip() == "queued job 1", err
    assert err.splitlines() == [
        "warning: the first and last frame are the same picture or nearly so (they differ by 0.0%); the model "
        "tends to make a still clip from them",
        "warning: --frame_num 85 is more than the 81 frames the model was trained on; longer clips tend to repeat "
        "themselves and drift in colour",
    ]
    code, out, err = run_cli([*same, "--json"], qhome)
    assert code == 0 and err == ""
    assert [w["code"] for w in json.loads(out)["warnings"]] == ["same_frames", "long_clip"]
    code, out, err = run_cli([*same, "-q"], qhome)
    assert (code, out.strip(), err) == (0, "3", "")
    code, out, err = run_cli([*base, "--first_frame", str(qframes[0]), "--last_frame", str(qframes[1]), "--json"],
                             qhome)  # fmt: skip
    assert json.loads(out) == {"ids": [4], "warnings": []} and err == ""
