"""The queue with the real engine: 2 CPU ranks under real torchrun, the tiny checkpoint, real mp4s.

A "slow" job is made long enough to interrupt mid-denoise with more steps and frames, never with sleeps.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio_ffmpeg
import psutil
import pytest

from engine.fidelity import PSNR_CAP_DB
from engine.telemetry import read_events, validate_event
from flf2v_tui.demo import DEMO_FRAMES
from flf2v_tui.job_text import psnr_cell, psnr_text
from tests.functional.queue_helpers import (
    HOOK,
    REPO,
    attempt_processes,
    attempt_rows,
    env_for,
    flf2v,
    job_row,
    start_worker,
    stop,
    wait_for,
)

QUICK = ("--size", "64*64", "--frame_num", "9", "--sample_steps", "4")
# dpm++: unipc fails past ~70 steps (repeated int timesteps; reported to the engine owner).
SLOW = ("--size", "128*128", "--frame_num", "17", "--sample_steps", "400", "--sample_solver", "dpm++")

pytestmark = pytest.mark.slow


def submit(home: Path, ckpt: Path, frames: tuple[Path, Path], shape: tuple[str, ...], *extra: str) -> int:
    proc = flf2v(home, "submit", "--task", "flf2v-tiny", "--ckpt_dir", str(ckpt), "--first_frame", str(frames[0]),
                 "--last_frame", str(frames[1]), "--prompt", "a small blue bird takes off", "--gpus", "2",
                 "--base_seed", "42", *shape, "-q", *extra)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.strip())


def denoising(home: Path, job_id: int, number: int = 1) -> bool:
    rows = attempt_rows(home, job_id)
    return len(rows) >= number and rows[number - 1]["stage"] == "denoise" and (rows[number - 1]["step"] or 0) >= 2


def test_end_to_end(qhome, tiny_ckpt, qframes, tmp_path):
    """Paused, the queue keeps the job; resumed, a worker renders it: the mp4, a complete attempts row, the
    finish hook, and the commands that read a finished job. (The pause rides on this render, so that it
    costs no render of its own.) Its 2 ranks run CFG-parallel: the worker passes --cfg_size on."""
    job = submit(qhome, tiny_ckpt, qframes, QUICK, "--cfg_size", "2")
    assert flf2v(qhome, "pause").returncode == 0
    assert "queue paused" in flf2v(qhome, "ls").stdout
    started = time.monotonic()
    drained = flf2v(qhome, "worker", "--once", timeout=60)
    assert drained.returncode == 0 and time.monotonic() - started < 30, drained.stdout + drained.stderr
    assert job_row(qhome, job)["state"] == "queued" and attempt_rows(qhome, job) == []
    assert flf2v(qhome, "resume").returncode == 0
    hook_out = tmp_path / "hook-"
    run = flf2v(qhome, "worker", "--once", "--on-finish", f'{sys.executable} -c "{HOOK}" {hook_out}', timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    row, (attempt,) = job_row(qhome, job), attempt_rows(qhome, job)
    assert row["state"] == "succeeded", run.stdout
    video = Path(row["output_path"])
    assert video.parent == qhome.resolve() / "videos" and video.suffix == ".mp4"
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(video))
    assert frames == 9
    complete = (
        "worker_host", "worker_pid", "worker_started", "pgid", "pgid_started", "gpus", "master_port",
        "log_dir", "save_file", "engine_version", "sec_per_it", "progress_at", "started_at", "ended_at", "attention",
    )  # fmt: skip
    assert [f for f in complete if attempt[f] in (None, "")] == []
    assert (attempt["state"], attempt["exit_code"], attempt["device"], attempt["nproc"]) == ("succeeded", 0, "cpu", 2)
    assert (attempt["step"], attempt["steps_total"], attempt["stage"]) == (4, 4, "done")
    assert attempt["failure_class"] is None and attempt["failing_rank"] is None
    assert set(json.loads(attempt["peak_memory"])) == {"0", "1"}
    stages = json.loads(attempt["stage_seconds"])
    assert {"load_transformer", "denoise", "decode", "save"} <= set(stages)
    folder = Path(attempt["log_dir"])
    assert {"rank0.log", "rank1.log", "events.jsonl", "torchrun.log", "command.txt", "exit.json"} <= {
        p.name for p in folder.iterdir()
    }
    assert "--nproc_per_node=2" in (folder / "command.txt").read_text()
    assert (
        "--cfg_size 2" in (folder / "command.txt").read_text() and "CFG-parallel" in (folder / "rank1.log").read_text()
    )
    shown = flf2v(qhome, "show", str(job))
    assert shown.returncode == 0 and "succeeded" in shown.stdout
    assert "  attention  sdpa (native)" in shown.stdout  # the kernel the attempt ran, from its start event
    # How close the end frames came to the inputs: from the done event, on the attempt and the video.
    (done,) = [e for e in read_events(folder / "events.jsonl") if e["kind"] == "done"]
    assert not validate_event(done) and 0 < done["psnr_first"] <= PSNR_CAP_DB and done["psnr_last"] > 0
    assert (attempt["psnr_first"], attempt["psnr_last"]) == (done["psnr_first"], done["psnr_last"])
    fidelity = psnr_text(done["psnr_first"], done["psnr_last"])
    assert f"psnr       {fidelity}" in shown.stdout
    assert fidelity in flf2v(qhome, "videos", "show", "1").stdout
    cell = psnr_cell(done["psnr_first"], done["psnr_last"])
    assert flf2v(qhome, "ls", "-o", "id,psnr", "-p", "--no-header").stdout.split() == [f"{job}|{cell}"]
    assert cell in flf2v(qhome, "videos", "ls").stdout
    assert "Finished." in flf2v(qhome, "logs", str(job), "--rank", "1").stdout
    merged = flf2v(qhome, "logs", str(job), "--all").stdout
    assert "[r0]" in merged and "[r1]" in merged
    assert flf2v(qhome, "wait", str(job)).returncode == 0
    hooked = json.loads(Path(f"{hook_out}{job}").read_text())
    assert (hooked["FLF2V_JOB_STATE"], hooked["FLF2V_OUTPUT"]) == ("succeeded", row["output_path"])
    assert float(hooked["FLF2V_SECONDS"]) > 0


def test_cancel_during_denoise_leaves_nothing_behind(qhome, tiny_ckpt, qframes):
    slow = submit(qhome, tiny_ckpt, qframes, SLOW)
    quick = submit(qhome, tiny_ckpt, qframes, QUICK)
    worker = start_worker(qhome, "--kill-grace", "20")
    try:
        wait_for(lambda: denoising(qhome, slow), timeout=180, what="the denoise stage")
        assert "cancel requested" in flf2v(qhome, "cancel", str(slow)).stdout
        wait_for(lambda: job_row(qhome, slow)["state"] == "cancelled", timeout=60, what="the cancel")
        tag = f"{qhome.resolve()}#{attempt_rows(qhome, slow)[0]['id']}"
        left = lambda: [p for p in attempt_processes(qhome) if p.environ().get("FLF2V_ATTEMPT") == tag]  # noqa: E731
        wait_for(lambda: not left(), timeout=10, what="no process of the cancelled render left")
        # The single CPU slot was given back: the next job runs and finishes.
        wait_for(lambda: job_row(qhome, quick)["state"] in ("succeeded", "failed"), timeout=180, what="the next job")
        assert job_row(qhome, quick)["state"] == "succeeded"
    finally:
        stop(worker)
    attempt = attempt_rows(qhome, slow)[0]
    assert attempt["state"] == "cancelled" and attempt["ended_at"]
    assert attempt_processes(qhome) == []
    # A cancel is no crash: each rank's log ends on one line naming the signal and the step, no traceback.
    for rank in (0, 1):
        log = (Path(attempt["log_dir"]) / f"rank{rank}.log").read_text()
        assert "Traceback" not in log and "engine.failures.Killed" not in log, log[-3000:]
        stopped = [line for line in log.splitlines() if "Render stopped by" in line]
        assert len(stopped) == 1 and re.search(r"Render stopped by SIGTERM in denoise after step \d+/400", stopped[0])
    # torchrun's log too (the job view's `t` tab): one line, not its SignalException traceback.
    torchrun = (Path(attempt["log_dir"]) / "torchrun.log").read_text()
    assert "Traceback" not in torchrun and "flf2v shim: torchrun stopped by SIGTERM" in torchrun, torchrun[-3000:]


def test_cancel_with_no_worker_running_stops_the_render_itself(qhome, tiny_ckpt, qframes):
    job = submit(qhome, tiny_ckpt, qframes, SLOW)
    worker = start_worker(qhome)
    try:
        wait_for(lambda: denoising(qhome, job), timeout=180, what="the denoise stage")
    finally:
        assert stop(worker) == 0  # SIGTERM: the worker goes, its render runs on
    assert attempt_processes(qhome), "the render must survive a worker stopped with SIGTERM"
    cancel = flf2v(qhome, "cancel", str(job), "--kill-grace", "20", timeout=60)
    assert cancel.returncode == 0, cancel.stdout + cancel.stderr
    assert "no worker watches it; SIGTERM" in cancel.stdout and f"job {job} cancelled" in cancel.stdout
    assert attempt_processes(qhome) == []  # nothing of it is left when the command returns
    row, (attempt,) = job_row(qhome, job), attempt_rows(qhome, job)
    assert (row["state"], row["cancel_requested"], attempt["state"]) == ("cancelled", 0, "cancelled")
    assert attempt["ended_at"] and attempt["step"] < 400
    run = flf2v(qhome, "worker", "--once", timeout=60)
    assert run.returncode == 0 and "re-attached" not in run.stdout and f"job {job}" not in run.stdout, run.stdout
    assert job_row(qhome, job)["state"] == "cancelled" and len(attempt_rows(qhome, job)) == 1


def test_worker_killed_mid_render_then_a_new_worker_reattaches(qhome, tiny_ckpt, qframes):
    job = submit(qhome, tiny_ckpt, qframes, SLOW)
    worker = start_worker(qhome)
    wait_for(lambda: denoising(qhome, job), timeout=180, what="the denoise stage")
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    step_at_kill = attempt_rows(qhome, job)[0]["step"]
    assert attempt_processes(qhome), "the render must survive its worker"
    assert "interrupted" in flf2v(qhome, "ls").stdout
    run = flf2v(qhome, "worker", "--once", timeout=300)
    assert "re-attached" in run.stdout, run.stdout
    (attempt,) = attempt_rows(qhome, job)
    assert job_row(qhome, job)["state"] == "succeeded" and attempt["state"] == "succeeded"
    assert attempt["step"] == 400 > step_at_kill
    frames, _ = imageio_ffmpeg.count_frames_and_secs(job_row(qhome, job)["output_path"])
    assert frames == 17


def test_sigterm_hands_the_render_on_and_an_end_nobody_watched_is_recorded(qhome, tiny_ckpt, qframes):
    """SIGTERM to the worker leaves the render running and the next worker re-attaches it; when that worker
    is killed too, the render finishes with nobody watching, and the worker after records its success. One
    render for all three, followed throughout by `logs --follow`."""
    job = submit(qhome, tiny_ckpt, qframes, SLOW)
    first = start_worker(qhome)
    try:
        wait_for(lambda: denoising(qhome, job), timeout=180, what="the denoise stage")
    finally:
        assert stop(first) == 0
    assert job_row(qhome, job)["state"] == "interrupted"
    assert attempt_processes(qhome), "the render should outlive the worker"
    follower = subprocess.Popen([sys.executable, "-m", "flf2v_tui.cli", "logs", str(job), "--all", "--follow"],
                                env=env_for(qhome), cwd=REPO, stdout=subprocess.PIPE, text=True)  # fmt: skip
    try:
        second = start_worker(qhome)
        try:
            wait_for(lambda: "re-attached" in (qhome / "worker.log").read_text(), timeout=60, what="a re-attach")
            assert job_row(qhome, job)["state"] == "running"
        finally:
            stop(second, signal.SIGKILL)
        folder = Path(attempt_rows(qhome, job)[0]["log_dir"])
        assert not (folder / "exit.json").exists(), "the render ended before its second worker was killed"
        wait_for(lambda: (folder / "exit.json").exists(), timeout=180, what="the render to end")
        run = flf2v(qhome, "worker", "--once", timeout=120)
        assert "succeeded while no worker watched" in run.stdout, run.stdout
        followed, _ = follower.communicate(timeout=30)  # --follow ends by itself with the attempt
    finally:
        follower.kill()
    row, (attempt,) = job_row(qhome, job), attempt_rows(qhome, job)
    assert (row["state"], attempt["state"], attempt["step"], attempt["steps_total"]) == (
        "succeeded", "succeeded", 400, 400,
    )  # fmt: skip
    frames, _ = imageio_ffmpeg.count_frames_and_secs(row["output_path"])
    assert frames == 17
    assert "[r0]" in followed and "[r1]" in followed and "Sampling 400/400" in followed


def _rank_process(home: Path, rank: int) -> psutil.Process | None:
    for proc in attempt_processes(home):
        try:
            env, cmd = proc.environ(), " ".join(proc.cmdline())
        except psutil.Error:
            continue
        if env.get("RANK") == str(rank) and "engine.generate" in cmd:
            return proc
    return None


def test_kill_one_rank_records_class_and_rank_then_retries(qhome, tiny_ckpt, qframes):
    job = submit(qhome, tiny_ckpt, qframes, SLOW, "--retry-on", "killed", "--retries", "1", "--retry-backoff", "0")
    worker = start_worker(qhome, "--once")
    try:
        wait_for(lambda: denoising(qhome, job), timeout=180, what="the denoise stage")
        rank1 = wait_for(lambda: _rank_process(qhome, 1), timeout=10, what="rank 1")
        rank1.send_signal(signal.SIGKILL)
        assert worker.wait(timeout=300) == 0
    finally:
        stop(worker)
    first, second = attempt_rows(qhome, job)
    assert (first["state"], first["failure_class"], first["failing_rank"], first["exit_code"]) == (
        "failed", "killed", 1, -9,
    )  # fmt: skip
    assert second["state"] == "succeeded" and job_row(qhome, job)["state"] == "succeeded"
    shown = flf2v(qhome, "show", str(job)).stdout
    assert "killed" in shown and "#2" in shown
    as_json = json.loads(flf2v(qhome, "show", str(job), "--json").stdout)
    assert (as_json["id"], as_json["state"], as_json["display_state"]) == (job, "succeeded", "succeeded")
    fields = ("number", "state", "failure_class", "failing_rank", "exit_code")
    assert [tuple(a[f] for f in fields) for a in as_json["attempts"]] == [
        (1, "failed", "killed", 1, -9), (2, "succeeded", None, None, 0),
    ]  # fmt: skip
    # Each attempt keeps its own logs: the first one's rank 1 was killed mid-denoise, the second finished.
    first_rank1 = flf2v(qhome, "logs", str(job), "--attempt", "1", "--rank", "1")
    assert first_rank1.returncode == 0 and "Sampling" in first_rank1.stdout + first_rank1.stderr
    assert "Finished." not in first_rank1.stdout
    assert "Finished." in flf2v(qhome, "logs", str(job), "--attempt", "2", "--rank", "1").stdout
    assert "SIGKILL" in flf2v(qhome, "logs", str(job), "--attempt", "1", "--torchrun").stdout
    assert "SIGKILL" not in flf2v(qhome, "logs", str(job), "--torchrun").stdout  # the latest: attempt 2
    missing = flf2v(qhome, "logs", str(job), "--attempt", "3")
    assert missing.returncode == 2 and "has no attempt 3" in missing.stderr


def test_demo(qhome):
    proc = flf2v(qhome, "demo", timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    video = proc.stdout.strip().splitlines()[-1].removeprefix("video: ")
    assert Path(video).exists() and video.endswith(".mp4")
    assert "succeeded" in proc.stdout and "attempts" in proc.stdout
    frames, _ = imageio_ffmpeg.count_frames_and_secs(video)
    assert frames == DEMO_FRAMES
