"""Warm groups through the real queue: real worker processes, real torchrun on gloo, the tiny checkpoint, real
mp4s. Jobs of one engine key run in one group that loads once; failures end the job or the group by class."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import imageio_ffmpeg
import psutil
import pytest

from engine.warm_protocol import READY
from tests.functional.queue_helpers import (
    attempt_processes,
    attempt_rows,
    flf2v,
    job_row,
    start_worker,
    stop,
    wait_for,
)

pytestmark = pytest.mark.slow

# Four jobs that share an engine key and differ in everything else a job may change.
VARIED = (
    ("--size", "64*64", "--frame_num", "9", "--sample_steps", "3", "--base_seed", "1", "--prompt", "a bird"),
    ("--size", "96*64", "--frame_num", "5", "--sample_steps", "4", "--base_seed", "2", "--prompt", "a red kite",
     "--sample_solver", "dpm++"),
    ("--size", "64*64", "--frame_num", "13", "--sample_steps", "2", "--base_seed", "3", "--prompt", "two gulls",
     "--sample_shift", "8"),
    ("--size", "64*96", "--frame_num", "9", "--sample_steps", "3", "--base_seed", "4", "--prompt", "a heron",
     "--sample_guide_scale", "3.5"),
)  # fmt: skip


def submit(home: Path, ckpt: Path, frames: tuple[Path, Path], gpus: int, *args: str) -> int:
    proc = flf2v(home, "submit", "--task", "flf2v-tiny", "--ckpt_dir", str(ckpt), "--first_frame", str(frames[0]),
                 "--last_frame", str(frames[1]), "--gpus", str(gpus), "-q", *args)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.strip())


def groups_of(home: Path) -> list[Path]:
    root = home / "groups"
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def loads_of(group: Path) -> int:
    """How many times the group loaded the transformer (its own events: one load per group)."""
    lines = (group / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    return sum(1 for e in events if e.get("kind") == "stage" and e.get("name") == "load_transformer"
               and e.get("phase") == "end" and e.get("rank") == 0)  # fmt: skip


def warm_once(home: Path) -> str:
    """`flf2v worker --once` with warm groups; its output."""
    run = flf2v(home, "worker", "--once", "--cpu-slots", "1", "--keep-warm", "5", timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    return run.stdout


@pytest.mark.parametrize("ranks", [1, 2])
def test_four_varied_jobs_render_in_one_group_with_one_load(qhome, tiny_ckpt, qframes, ranks):
    jobs = [submit(qhome, tiny_ckpt, qframes, ranks, *shape) for shape in VARIED]
    out = warm_once(qhome)
    (group,) = groups_of(qhome)
    assert loads_of(group) == 1, out
    assert json.loads((group / READY).read_text())["world_size"] == ranks
    warmth = []
    for job, shape in zip(jobs, VARIED, strict=True):
        row, (attempt,) = job_row(qhome, job), attempt_rows(qhome, job)
        assert row["state"] == "succeeded", out
        frames, _ = imageio_ffmpeg.count_frames_and_secs(row["output_path"])
        assert frames == int(shape[shape.index("--frame_num") + 1])
        assert attempt["group_dir"] == str(group) and Path(attempt["log_dir"], "rank0.log").exists()
        warmth.append((attempt["group_seq"], attempt["warm"], attempt["load_saved_s"] > 0))
    assert warmth == [(1, 0, False), (2, 1, True), (3, 1, True), (4, 1, True)], out
    # --once stopped the idle group on its way out: nothing of it is left.
    assert "stopped (the worker is stopping)" in out
    # What the user sees: show's attempts table says cold or warm (and the load it saved), ls marks warm jobs.
    assert " cold " in flf2v(qhome, "show", str(jobs[0])).stdout
    assert "warm, saved " in flf2v(qhome, "show", str(jobs[1])).stdout
    listed = {line.split()[0]: line for line in flf2v(qhome, "ls").stdout.splitlines()[1:]}
    assert listed[str(jobs[1])].rstrip().endswith("· warm") and "warm" not in listed[str(jobs[0])]


def slow_one(home: Path, job: int) -> bool:
    """The job is denoising, two steps in."""
    rows = attempt_rows(home, job)
    return bool(rows) and rows[-1]["stage"] == "denoise" and (rows[-1]["step"] or 0) >= 2


# A job long enough to act on mid-denoise (many cheap steps, never sleeps).
LONG = ("--size", "64*64", "--frame_num", "9", "--sample_steps", "200", "--sample_solver", "dpm++")
QUICK = ("--size", "64*64", "--frame_num", "9", "--sample_steps", "3")


def test_a_user_input_failure_ends_only_its_job_and_the_group_stays_warm(qhome, tiny_ckpt, qframes):
    first = submit(qhome, tiny_ckpt, qframes, 1, *QUICK, "--prompt", "a bird")
    bad = submit(qhome, tiny_ckpt, qframes, 1, *QUICK, "--prompt", "a kite")
    last = submit(qhome, tiny_ckpt, qframes, 1, *QUICK, "--prompt", "a heron")
    Path(job_row(qhome, bad)["first_frame"]).write_bytes(b"not an image")  # its own copy, made at submit
    out = warm_once(qhome)
    (group,) = groups_of(qhome)
    assert loads_of(group) == 1, out
    failed, (attempt,) = job_row(qhome, bad), attempt_rows(qhome, bad)
    assert (failed["state"], failed["failure_class"], attempt["group_seq"]) == ("failed", "user_input", 2), out
    assert job_row(qhome, first)["state"] == job_row(qhome, last)["state"] == "succeeded", out
    assert [(a["group_seq"], a["warm"]) for a in attempt_rows(qhome, last)] == [(3, 1)]


def test_an_oom_tears_the_group_down_and_the_next_job_starts_cold(qhome, tiny_ckpt, qframes):
    first = submit(qhome, tiny_ckpt, qframes, 2, *QUICK, "--prompt", "a bird")
    oom = submit(qhome, tiny_ckpt, qframes, 2, *QUICK, "--prompt", "a bird eats all the memory", "--retries", "0")
    last = submit(qhome, tiny_ckpt, qframes, 2, *QUICK, "--prompt", "a heron")
    run = flf2v(qhome, "worker", "--once", "--cpu-slots", "1", "--keep-warm", "5", timeout=600,
                env={"FLF2V_TEST_OOM": "eats all the memory"})  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    assert (job_row(qhome, oom)["state"], job_row(qhome, oom)["failure_class"]) == ("failed", "oom"), run.stdout
    assert job_row(qhome, first)["state"] == job_row(qhome, last)["state"] == "succeeded", run.stdout
    before, after = groups_of(qhome)
    assert loads_of(before) == loads_of(after) == 1
    seen = [(a["group_dir"], a["group_seq"], a["warm"]) for j in (first, oom, last) for a in attempt_rows(qhome, j)]
    assert seen == [(str(before), 1, 0), (str(before), 2, 1), (str(after), 1, 0)], run.stdout


def test_a_killed_rank_tears_the_group_down_and_the_next_job_starts_cold(qhome, tiny_ckpt, qframes):
    first = submit(qhome, tiny_ckpt, qframes, 2, *QUICK, "--prompt", "a bird")
    victim = submit(qhome, tiny_ckpt, qframes, 2, *LONG, "--prompt", "a kite", "--retries", "0")
    last = submit(qhome, tiny_ckpt, qframes, 2, *QUICK, "--prompt", "a heron")
    worker = start_worker(qhome, "--cpu-slots", "1", "--keep-warm", "5")
    try:
        wait_for(lambda: slow_one(qhome, victim), timeout=300, what="the second job denoising")
        group = Path(attempt_rows(qhome, victim)[0]["group_dir"])
        ranks = [p for p in group_processes(qhome) if "LOCAL_RANK" in p.environ()]  # torchrun's workers
        assert len(ranks) == 2
        ranks[-1].kill()
        wait_for(lambda: job_row(qhome, last)["state"] == "succeeded", timeout=300, what="the last job")
    finally:
        stop(worker)
    row = job_row(qhome, victim)
    assert (row["state"], row["failure_class"]) == ("failed", "killed"), (qhome / "worker.log").read_text()
    (after,) = [a for a in attempt_rows(qhome, last)]
    assert (after["group_seq"], after["warm"]) == (1, 0) and after["group_dir"] != str(group)
    assert job_row(qhome, first)["state"] == "succeeded"


def test_a_cancelled_job_stops_at_a_step_and_the_next_job_runs_warm(qhome, tiny_ckpt, qframes):
    long = submit(qhome, tiny_ckpt, qframes, 1, *LONG, "--prompt", "a kite")
    after = submit(qhome, tiny_ckpt, qframes, 1, *QUICK, "--prompt", "a heron")
    worker = start_worker(qhome, "--cpu-slots", "1", "--keep-warm", "5")
    try:
        wait_for(lambda: slow_one(qhome, long), timeout=300, what="the long job denoising")
        assert flf2v(qhome, "cancel", str(long)).returncode == 0
        wait_for(lambda: job_row(qhome, after)["state"] == "succeeded", timeout=300, what="the next job")
    finally:
        stop(worker)
    cancelled, (attempt,) = job_row(qhome, long), attempt_rows(qhome, long)
    assert cancelled["state"] == "cancelled" and attempt["step"] < 200
    log = (Path(attempt["log_dir"]) / "rank0.log").read_text()
    assert "cancelled at step" in log
    (next_attempt,) = attempt_rows(qhome, after)
    assert (next_attempt["group_dir"], next_attempt["group_seq"], next_attempt["warm"]) == (
        attempt["group_dir"], 2, 1,
    )  # fmt: skip
    assert "did not end it in time" not in (qhome / "worker.log").read_text()  # the group stopped it itself


def test_a_worker_killed_during_a_warm_job_is_replaced_and_the_job_ends_once(qhome, tiny_ckpt, qframes):
    first = submit(qhome, tiny_ckpt, qframes, 2, *QUICK, "--prompt", "a bird")
    long = submit(qhome, tiny_ckpt, qframes, 2, *LONG, "--prompt", "a kite")
    worker = start_worker(qhome, "--cpu-slots", "1", "--keep-warm", "5")
    try:
        wait_for(lambda: slow_one(qhome, long), timeout=300, what="the warm job denoising")
    finally:
        stop(worker, signal.SIGKILL)
    (attempt,) = attempt_rows(qhome, long)
    assert (attempt["group_seq"], attempt["warm"]) == (2, 1)
    out = warm_once(qhome)
    assert f"job {long}: re-attached" in out
    row, attempts = job_row(qhome, long), attempt_rows(qhome, long)
    assert row["state"] == "succeeded" and len(attempts) == 1, out
    assert attempts[0]["worker_pid"] != worker.pid
    assert job_row(qhome, first)["state"] == "succeeded"
    done = [e for e in events_of(Path(attempts[0]["log_dir"])) if e.get("kind") == "done"]
    assert len(done) == 1  # rendered once
    assert "an earlier worker's" in out  # its group was stopped once the job ended


def test_keep_warm_0_renders_one_torchrun_per_job(qhome, tiny_ckpt, qframes):
    job = submit(qhome, tiny_ckpt, qframes, 1, *QUICK, "--prompt", "a bird")
    run = flf2v(qhome, "worker", "--once", "--cpu-slots", "1", "--keep-warm", "0", timeout=600)
    assert run.returncode == 0, run.stdout + run.stderr
    (attempt,) = attempt_rows(qhome, job)
    assert job_row(qhome, job)["state"] == "succeeded" and groups_of(qhome) == []
    assert (attempt["group_dir"], attempt["warm"], attempt["load_saved_s"]) == (None, 0, 0.0)
    assert (Path(attempt["log_dir"]) / "exit.json").exists()  # the shim of its own torchrun


def events_of(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "events.jsonl").read_text().splitlines()]


def group_processes(home: Path) -> list[psutil.Process]:
    return [p for p in attempt_processes(home) if "#group-" in p.environ().get("FLF2V_ATTEMPT", "")]


def test_a_higher_priority_job_of_another_key_goes_first_and_takes_the_idle_groups_slot(qhome, tiny_ckpt, qframes):
    """Warm preference never goes against priority: with the group of `first` idle on the one slot, a queued
    job of another key at a higher priority runs before a warm one, and the idle group is stopped for it."""
    first = submit(qhome, tiny_ckpt, qframes, 1, *QUICK, "--prompt", "a bird")
    worker = start_worker(qhome, "--cpu-slots", "1", "--keep-warm", "5")
    try:
        wait_for(lambda: slow_one(qhome, first) or job_row(qhome, first)["state"] != "queued", timeout=300,
                 what="the first job started")  # fmt: skip
        other_high = submit(qhome, tiny_ckpt, qframes, 1, *QUICK, "--prompt", "a heron", "--t5_cpu",
                            "--priority", "5")  # fmt: skip
        warm_low = submit(qhome, tiny_ckpt, qframes, 1, *QUICK, "--prompt", "a kite")
        wait_for(lambda: job_row(qhome, warm_low)["state"] == "succeeded", timeout=400, what="the warm job")
    finally:
        stop(worker)
    (a,), (high,), (low,) = (attempt_rows(qhome, j) for j in (first, other_high, warm_low))
    assert job_row(qhome, other_high)["state"] == "succeeded"
    assert high["started_at"] < low["started_at"]  # priority first
    assert (high["group_seq"], high["warm"]) == (1, 0) and high["group_dir"] != a["group_dir"]
    # The first key's group was stopped for the other key's job, so the lower-priority job started cold.
    assert (low["group_seq"], low["warm"]) == (1, 0) and len(groups_of(qhome)) == 3
    assert "its slots are wanted by a job of another key" in (qhome / "worker.log").read_text()


def test_an_idle_group_left_by_a_killed_worker_is_stopped_by_the_next_one(qhome, tiny_ckpt, qframes):
    job = submit(qhome, tiny_ckpt, qframes, 1, *QUICK, "--prompt", "a bird")
    worker = start_worker(qhome, "--cpu-slots", "1", "--keep-warm", "5")
    try:
        wait_for(lambda: job_row(qhome, job)["state"] == "succeeded", timeout=300, what="the job")
    finally:
        stop(worker, signal.SIGKILL)
    assert group_processes(qhome), "the group stays loaded after its worker died"
    out = warm_once(qhome)
    assert "an earlier worker's idle group, stopped" in out
    wait_for(lambda: not group_processes(qhome), timeout=60, what="the group's exit")
