"""A warm group on one process (engine.serve), driven through its folder as the worker drives it: many jobs,
one load, the frames of a cold run, the memory of the first job, and failures that keep it warm or end it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from engine.telemetry import STAGES, validate_event
from engine.warm_protocol import JobEnd, Ready, stop_path
from tests.functional.engine_helpers import REPO, run_engine
from tests.functional.warm_helpers import (
    JOBS,
    events,
    freed_memory,
    hand,
    job_argv,
    load_stages,
    of_kind,
    video,
    wait_end,
    warm_group,
)

pytestmark = pytest.mark.slow

LOAD_STAGES = tuple(s for s in STAGES if s.startswith("load_"))
IDLE_EXIT_S = 8.0


@pytest.fixture(scope="module")
def one_rank(tiny_official_ckpt, qframes, tmp_path_factory) -> dict:
    """One group, seven jobs: the four above, a job whose first frame is missing, a job that needs other
    models (--t5_cpu), the first job again; then it is left idle until it stops by itself."""
    root = tmp_path_factory.mktemp("warm-one-rank")
    group, attempts, ends = root / "group", {}, {}
    missing = (root / "missing.png", qframes[1])
    plan = [(job, qframes, []) for job in JOBS] + [(JOBS[0], missing, []), (JOBS[0], qframes, ["--t5_cpu"]),
                                                    (JOBS[0], qframes, [])]  # fmt: skip
    with warm_group(group, tiny_official_ckpt, 1, idle_exit_s=IDLE_EXIT_S) as proc:
        for seq, (job, frames, flags) in enumerate(plan, start=1):
            attempts[seq] = root / f"attempt{seq}"
            hand(group, seq, job_argv(tiny_official_ckpt, frames, attempts[seq], flags, **job))
            ends[seq] = wait_end(group, seq, proc)
        returncode = proc.wait(timeout=IDLE_EXIT_S + 60)
    cold = {}
    for seq in (1, 4):
        cold[seq] = root / f"cold{seq}"
        proc = run_engine(job_argv(tiny_official_ckpt, qframes, cold[seq], **JOBS[seq - 1]))
        assert proc.returncode == 0, proc.stderr[-3000:]
    return {"group": group, "attempts": attempts, "ends": ends, "returncode": returncode, "cold": cold}


def test_four_different_jobs_render_with_one_load(one_rank):
    group, attempts = one_rank["group"], one_rank["attempts"]
    ready = Ready.read(group)
    assert ready is not None and ready.world_size == 1 and ready.load_seconds > 0
    assert ready.startup_seconds is not None and ready.startup_seconds > ready.load_seconds
    assert load_stages(group) == 1
    for seq, job in enumerate(JOBS, start=1):
        assert one_rank["ends"][seq] == JobEnd(seq, True, None, True)
        assert all(validate_event(e) == [] for e in events(attempts[seq]))
        (start,) = of_kind(attempts[seq], "start")
        assert (start["warm"], start["load_saved_s"]) == (True, ready.load_seconds)
        assert start["args"]["prompt"] == job["prompt"] and start["args"]["sample_solver"] == job["sample_solver"]
        assert not [e for e in of_kind(attempts[seq], "stage") if e["name"] in LOAD_STAGES]
        (done,) = of_kind(attempts[seq], "done")
        assert done["frames"] == int(job["frame_num"]) and (attempts[seq] / "v.mp4").exists()
        assert done["width"] == int(job["size"].split("*")[0])
        assert len(of_kind(attempts[seq], "step")) == int(job["sample_steps"])
        log = (attempts[seq] / "rank0.log").read_text()
        assert f"Input prompt: {job['prompt']}" in log and "Finished." in log
    group_log = (group / "rank0.log").read_text()
    assert "Input prompt" not in group_log and "Job 4 ended: done" in group_log


def test_a_warm_job_gives_the_frames_of_the_same_job_run_cold(one_rank):
    for seq in (1, 4):
        assert np.array_equal(video(one_rank["attempts"][seq]), video(one_rank["cold"][seq]))
        (start,) = of_kind(one_rank["cold"][seq], "start")
        assert (start["warm"], start["load_saved_s"]) == (False, 0)
    assert np.array_equal(video(one_rank["attempts"][7]), video(one_rank["attempts"][1]))  # the same job again


def test_memory_after_each_job_returns_to_the_first_jobs_level(one_rank):
    freed = {seq: freed_memory(attempt) for seq, attempt in one_rank["attempts"].items()}
    for seq, rss in freed.items():
        assert abs(rss - freed[1]) <= 0.015 * freed[1], f"job {seq}: {rss / 1e6:.1f} MB vs {freed[1] / 1e6:.1f} MB"
    # Each job's peak is its own: the job that stopped at its input check peaked where the others ended.
    peaks = [e["peak_rss"] for e in of_kind(one_rank["attempts"][5], "memory")]
    assert peaks and max(peaks) <= 1.015 * freed[1]
    rendered = max(e["peak_rss"] for e in of_kind(one_rank["attempts"][4], "memory"))
    assert rendered > max(peaks)


def test_bad_input_and_a_different_engine_key_end_that_job_only(one_rank):
    attempts, ends = one_rank["attempts"], one_rank["ends"]
    assert ends[5] == JobEnd(5, False, "user_input", True)
    (error,) = of_kind(attempts[5], "error")
    assert error["class"] == "user_input" and "missing.png does not exist" in error["message"]
    assert ends[6] == JobEnd(6, False, "engine_error", True)
    (error,) = of_kind(attempts[6], "error")
    assert error["class"] == "engine_error" and "t5_cpu: False -> True" in error["message"]
    assert not of_kind(attempts[6], "start")
    assert ends[7] == JobEnd(7, True, None, True)
    assert of_kind(attempts[7], "start")[0]["warm"] is True
    assert load_stages(one_rank["group"]) == 1


def test_an_idle_group_stops_by_itself_cleanly(one_rank):
    assert one_rank["returncode"] == 0
    assert stop_path(one_rank["group"]).exists()
    assert f"No job for {IDLE_EXIT_S:g} s: the group stops" in (one_rank["group"] / "rank0.log").read_text()


@pytest.mark.parametrize(
    ("flags", "line"),
    [
        (["--idle_exit_s", "0"], "error: --idle_exit_s 0.0 must be a positive number of seconds"),
        (
            ["--ulysses_size", "2"],
            "error: cfg_size 1 x ulysses_size 2 x ring_size 1 needs 2 ranks, not 1: run 2 "
            "(flf2v --gpus 2, or --nodes x --gpus-per-node = 2; torchrun --nproc_per_node x --nnodes = 2) or change "
            "the sizes",
        ),
    ],
)
def test_bad_group_flags_exit_2_with_one_line_before_anything_loads(tiny_official_ckpt, tmp_path, flags, line):
    group = tmp_path / "group"
    args = ["--group_dir", str(group), "--task", "flf2v-tiny", "--ckpt_dir", str(tiny_official_ckpt), *flags]
    proc = subprocess.run([sys.executable, "-m", "engine.serve", *args, "--events", str(group / "events.jsonl")],
                          capture_output=True, text=True, cwd=REPO, timeout=120)  # fmt: skip
    assert (proc.returncode, proc.stderr.strip().splitlines()) == (2, [line])
    (error,) = events(group)
    assert error["class"] == "user_input" and Ready.read(group) is None
