"""`flf2v edit`: a queued job's flags changed in place with submit's checks; a started job is refused."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from tests.functional.cli_in_process import run_cli, submit_tiny
from tests.functional.queue_helpers import job_row

GUARD_WARNINGS = [
    "warning: the first and last frame are the same picture or nearly so (they differ by 0.0%)",
    "warning: --frame_num 85 is more than the 81 frames the model was trained on",
]


def test_edit_changes_a_queued_job_with_the_checks_of_submit(qhome, stub_ckpt, qframes, tmp_path):
    job = submit_tiny(qhome, stub_ckpt, qframes, "--label", "a")
    before = job_row(qhome, job)
    code, out, err = run_cli(["edit", str(job), "--prompt", "a heron takes off", "--sample_steps", "7",
                              "--priority", "5", "--label", "b", "--last_frame", str(qframes[0])], qhome)  # fmt: skip
    assert code == 0, err
    assert out.strip() == f"job {job} edited (labels, last_frame, last_frame_src, priority, prompt, sample_steps)"
    after = job_row(qhome, job)
    assert (after["prompt"], after["sample_steps"], after["priority"]) == ("a heron takes off", 7, 5)
    assert json.loads(after["labels"]) == ["b"] and after["last_frame_src"] == str(qframes[0])
    assert after["last_frame"] != before["last_frame"] and Path(after["last_frame"]).is_file()
    assert after["first_frame"] == before["first_frame"] and after["base_seed"] == before["base_seed"]
    # The same refusals as submit: one line, exit 2, nothing changed.
    for argv, words in (
        (["--sample_steps", "0"], "sample_steps"),
        (["--frame_num", "8"], "frame_num"),
        (["--first_frame", str(tmp_path / "missing.png")], "missing.png"),
        (["--priority", str(10**10)], "priority"),
        ([], "nothing to change"),
    ):
        code, out, err = run_cli(["edit", str(job), *argv], qhome)
        assert code == 2 and len(err.strip().splitlines()) == 1 and words in err, (argv, err)
    assert job_row(qhome, job) == after
    # The FLF guards of submit, as warnings: the edit is made.
    code, out, err = run_cli(["edit", str(job), "--first_frame", str(qframes[0]), "--frame_num", "85"], qhome)
    assert code == 0 and out.strip() == f"job {job} edited (first_frame, first_frame_src, frame_num)", err
    assert [line.split(";")[0] for line in err.splitlines()] == GUARD_WARNINGS
    # The copies the edits replaced are gone; the ones the job names stay (and nothing else of it is there).
    row = job_row(qhome, job)
    inputs = qhome / "jobs" / str(job) / "inputs"
    assert sorted(p.name for p in inputs.iterdir()) == sorted(Path(row[f]).name for f in ("first_frame", "last_frame"))
    assert Path(before["first_frame"]).name not in {p.name for p in inputs.iterdir()}
    code, out, err = run_cli(["edit", str(job), "--frame_num", "89", "-q"], qhome)
    assert code == 0 and err == "" and out.strip() == f"job {job} edited (frame_num)", err  # -q: no warnings


def test_retry_warns_of_the_flf_guards_as_submit_does(qhome, stub_ckpt, qframes):
    job = submit_tiny(qhome, stub_ckpt, qframes)
    run_cli(["cancel", str(job)], qhome)
    same = str(qframes[0])
    code, out, err = run_cli(["retry", str(job), "--frame_num", "85", "--first_frame", same, "--last_frame", same],
                             qhome)  # fmt: skip
    assert code == 0 and out.startswith(f"job {job} queued again"), err
    assert [line.split(";")[0] for line in err.splitlines()] == GUARD_WARNINGS
    run_cli(["cancel", str(job)], qhome)
    code, out, err = run_cli(["retry", str(job), "--frame_num", "89", "-q"], qhome)
    assert code == 0 and err == "", err


def test_edit_refuses_a_started_job(qhome, stub_ckpt, qframes):
    job = submit_tiny(qhome, stub_ckpt, qframes)
    conn = sqlite3.connect(qhome / "flf2v.db")
    with conn:
        conn.execute("UPDATE jobs SET state = 'running' WHERE id = ?", (job,))
    conn.close()
    code, _out, err = run_cli(["edit", str(job), "--prompt", "late"], qhome)
    assert code == 2 and err.strip() == (
        f"error: job {job} is running; only a queued job can be edited "
        f"(flf2v retry {job} queues a finished one again with changes)"
    )
    assert job_row(qhome, job)["prompt"] == "a heron lands"
