"""The Slurm backend on a real Slurm (tests/functional/slurm_cluster.py): real sbatch, srun, torchrun's c10d
rendezvous across two network namespaces, the tiny checkpoint on gloo, real mp4s.

Renders are kept few and short: one 2-node success (compared with a one-process render), a 1-node success
beside a failure of bad input, a long render that outlives its worker (found again by its job name) and is then
cancelled, one cancelled with no worker running, and two 2-node renders that lose a rank or a whole node.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import psutil
import pytest

from flf2v_tui.worker.launchers.slurm_script import job_name
from storage.db import connect, write_tx
from tests.functional.engine_helpers import run_engine, tiny_args
from tests.functional.queue_helpers import (
    attempt_processes,
    attempt_rows,
    flf2v,
    job_row,
    start_worker,
    stop,
    wait_for,
)
from tests.functional.slurm_cluster import SlurmCluster

pytestmark = pytest.mark.slow

QUICK = ("--size", "64*64", "--frame_num", "9", "--sample_steps", "4")
# Long enough to act on mid-denoise; ended by a cancel or a kill, never waited out.
LONG = ("--size", "64*64", "--frame_num", "9", "--sample_steps", "600", "--sample_solver", "dpm++")
WORKER = ("--backend", "slurm", "--cpu-slots", "2")


def slurm_env(cluster: SlurmCluster) -> dict[str, str]:
    return {"SLURM_CONF": str(cluster.conf), "FLF2V_SLURM_POLL_S": "0.5"}


def run(home: Path, cluster: SlurmCluster, *args: str, timeout: float = 300):
    return flf2v(home, *args, timeout=timeout, env=slurm_env(cluster))


def submit(home: Path, cluster: SlurmCluster, ckpt: Path, frames: tuple[Path, Path], shape, *extra: str) -> int:
    proc = run(home, cluster, "submit", "--task", "flf2v-tiny", "--ckpt_dir", str(ckpt), "--first_frame",
               str(frames[0]), "--last_frame", str(frames[1]), "--prompt", "a small blue bird takes off",
               "--base_seed", "42", *shape, "-q", *extra)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.strip())


def denoising(home: Path, job_id: int) -> bool:
    rows = attempt_rows(home, job_id)
    return bool(rows) and rows[-1]["stage"] == "denoise" and (rows[-1]["step"] or 0) >= 2


def frames_of(video: str) -> np.ndarray:
    reader = imageio_ffmpeg.read_frames(video)
    meta = next(reader)
    width, height = meta["size"]
    return np.stack([np.frombuffer(f, np.uint8).reshape(height, width, 3) for f in reader])


def test_two_nodes_render_the_one_process_video_and_every_rank_reports(slurm, qhome, tiny_ckpt, qframes, tmp_path):
    job = submit(qhome, slurm, tiny_ckpt, qframes, QUICK, "--nodes", "2", "--gpus-per-node", "1")
    done = run(qhome, slurm, "worker", *WORKER, "--once")
    assert done.returncode == 0, done.stdout + done.stderr
    row, (attempt,) = job_row(qhome, job), attempt_rows(qhome, job)
    assert row["state"] == "succeeded", done.stdout
    assert (attempt["backend"], attempt["slurm_state"], attempt["node_list"]) == ("slurm", "COMPLETED", "flf2v-n[1-2]")
    slurm_job = attempt["slurm_job"]
    assert slurm.wait_job(slurm_job) == "COMPLETED"
    folder = Path(attempt["log_dir"])
    script = (folder / "job.sbatch").read_text()
    assert "#SBATCH --nodes=2" in script and "--rdzv-backend=c10d" in script and "srun" in script
    # Every rank's log and events land in the attempt folder, each log naming the node it ran on.
    assert "rank 0 of 2 on node flf2v-n1" in (folder / "rank0.log").read_text()
    assert "rank 1 of 2 on node flf2v-n2" in (folder / "rank1.log").read_text()
    events = [line for line in (folder / "events.jsonl").read_text().splitlines() if '"memory"' in line]
    assert any('"rank": 0' in e for e in events) and any('"rank": 1' in e for e in events)
    # The frames are the one-process render's.
    alone = tmp_path / "alone.mp4"
    args = tiny_args(tiny_ckpt, *qframes, alone, size="64*64", frame_num="9", sample_steps="4", base_seed="42",
                     prompt="a small blue bird takes off")  # fmt: skip
    assert run_engine(args, nproc=1).returncode == 0
    assert np.array_equal(frames_of(row["output_path"]), frames_of(str(alone)))
    # ls and show name the Slurm job and its nodes.
    shown = run(qhome, slurm, "show", str(job)).stdout
    assert f"slurm {slurm_job}" in shown and f"slurm      {slurm_job} COMPLETED on flf2v-n[1-2]" in shown
    assert "2 nodes × 1 rank(s)" in shown


def test_one_node_jobs_succeed_or_fail_as_user_input(slurm, qhome, tiny_ckpt, qframes):
    good = submit(qhome, slurm, tiny_ckpt, qframes, QUICK)
    bad = submit(qhome, slurm, tiny_ckpt, qframes, QUICK)
    Path(job_row(qhome, bad)["first_frame"]).unlink()  # the job's own copy of the frame goes missing
    done = run(qhome, slurm, "worker", *WORKER, "--once")  # two slots: both Slurm jobs at once
    assert done.returncode == 0, done.stdout + done.stderr
    (ok,), (failed,) = attempt_rows(qhome, good), attempt_rows(qhome, bad)
    assert (job_row(qhome, good)["state"], ok["slurm_state"], ok["node_list"] in slurm.node_names) == (
        "succeeded", "COMPLETED", True,
    )  # fmt: skip
    assert Path(job_row(qhome, good)["output_path"]).exists()
    assert re.fullmatch(r"(\d+-)?\d+:\d+:\d+", ok["slurm_elapsed"] or ""), ok  # sacct's Elapsed, kept
    assert f"elapsed {ok['slurm_elapsed']}" in run(qhome, slurm, "show", str(good)).stdout
    assert (job_row(qhome, bad)["state"], failed["failure_class"], failed["exit_code"]) == ("failed", "user_input", 2)
    assert "first frame" in failed["failure_message"] and failed["node_list"] in slurm.node_names


def slurm_jobs_named(cluster: SlurmCluster, home: Path, attempt_id: int) -> list[str]:
    """Every Slurm job that carries the attempt's job name, whatever its state: what "submitted twice" counts."""
    name = job_name(str(home), attempt_id)
    return cluster.command("squeue", "-h", "--states=all", "-n", name, "-o", "%i").stdout.split()


def test_an_sbatch_that_fails_after_queueing_the_job_is_adopted_not_submitted_again(
    slurm, qhome, tiny_ckpt, qframes, tmp_path
):
    # A real failing sbatch: it queues the job, then answers as a controller that timed out does.
    shims = tmp_path / "shims"
    shims.mkdir()
    real = shutil.which("sbatch")
    (shims / "sbatch").write_text(
        f"#!/bin/sh\n{real} \"$@\" >/dev/null\necho 'sbatch: error: Socket timed out on send/recv operation' >&2\n"
        "exit 1\n"
    )
    (shims / "sbatch").chmod(0o755)
    job = submit(qhome, slurm, tiny_ckpt, qframes, QUICK, "--retries", "2")
    env = {**slurm_env(slurm), "PATH": f"{shims}:{os.environ['PATH']}"}
    done = flf2v(qhome, "worker", *WORKER, "--once", timeout=300, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    (attempt,) = attempt_rows(qhome, job)
    assert job_row(qhome, job)["state"] == "succeeded", done.stdout
    assert "Socket timed out" in done.stdout and f"Slurm job {attempt['slurm_job']}" in done.stdout
    assert slurm_jobs_named(slurm, qhome, attempt["id"]) == [attempt["slurm_job"]]


def test_a_refused_sbatch_is_the_workers_settings_said_once_and_the_job_waits_queued(slurm, qhome, tiny_ckpt, qframes):
    job = submit(qhome, slurm, tiny_ckpt, qframes, QUICK, "--retries", "3")
    other = submit(qhome, slurm, tiny_ckpt, qframes, QUICK)
    done = run(qhome, slurm, "worker", *WORKER, "--partition", "nosuch", "--once")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sbatch refused the job" in done.stdout and "fix the worker's Slurm settings" in done.stdout
    assert "claims no more jobs" in done.stdout
    (attempt,) = attempt_rows(qhome, job)  # one try, and the other job was never claimed
    assert attempt["state"] == "interrupted" and not attempt_rows(qhome, other)
    row = job_row(qhome, job)
    assert (row["state"], row["retries_used"]) == ("queued", 0)  # no retry spent, nothing of it lost
    assert slurm_jobs_named(slurm, qhome, attempt["id"]) == []


def handed_off(home: Path, cluster: SlurmCluster, ckpt: Path, frames: tuple[Path, Path]) -> int:
    """A long 1-node render whose worker was stopped (SIGTERM) mid-denoise: its Slurm job runs on."""
    job = submit(home, cluster, ckpt, frames, LONG)
    worker = start_worker(home, *WORKER, **slurm_env(cluster))
    try:
        wait_for(lambda: denoising(home, job), timeout=240, what="the denoise stage")
    finally:
        assert stop(worker) == 0
    return job


def test_a_restarted_worker_reattaches_and_a_cancel_stops_every_process(slurm, qhome, tiny_ckpt, qframes):
    job = handed_off(qhome, slurm, tiny_ckpt, qframes)
    assert "keeps running (its Slurm job)" in (qhome / "worker.log").read_text()
    assert job_row(qhome, job)["state"] == "interrupted"
    assert attempt_processes(qhome), "the Slurm job must outlive its worker"
    # As if the worker had died between sbatch and recording the job id: the next one finds it by its name.
    slurm_job = attempt_rows(qhome, job)[0]["slurm_job"]
    conn = connect(qhome / "flf2v.db")
    with write_tx(conn):
        conn.execute("UPDATE attempts SET slurm_job = NULL")
    conn.close()
    second = start_worker(qhome, *WORKER, **slurm_env(slurm))
    try:
        wait_for(lambda: "re-attached" in (qhome / "worker.log").read_text(), timeout=60, what="a re-attach")
        step = attempt_rows(qhome, job)[0]["step"]
        wait_for(lambda: (attempt_rows(qhome, job)[0]["step"] or 0) > step, timeout=60, what="progress after it")
        assert "cancel requested" in run(qhome, slurm, "cancel", str(job)).stdout
        wait_for(lambda: job_row(qhome, job)["state"] == "cancelled", timeout=60, what="the cancel")
    finally:
        stop(second)
    (attempt,) = attempt_rows(qhome, job)  # one attempt, one Slurm job: nothing was submitted twice
    assert attempt["state"] == "cancelled" and attempt["slurm_job"] == slurm_job
    assert slurm_jobs_named(slurm, qhome, attempt["id"]) == [slurm_job]  # by the attempt's job name
    assert slurm.wait_job(attempt["slurm_job"]) == "CANCELLED"
    wait_for(lambda: not attempt_processes(qhome), timeout=15, what="no process of the render on any node")


def test_a_cancel_with_no_worker_running_scancels_the_slurm_job(slurm, qhome, tiny_ckpt, qframes):
    job = handed_off(qhome, slurm, tiny_ckpt, qframes)  # nothing watches its Slurm job now
    cancel = run(qhome, slurm, "cancel", str(job), "--kill-grace", "10", timeout=120)
    assert cancel.returncode == 0, cancel.stdout + cancel.stderr
    (attempt,) = attempt_rows(qhome, job)
    assert (
        f"scancel of its Slurm job {attempt['slurm_job']}" in cancel.stdout and f"job {job} cancelled" in cancel.stdout
    )
    assert (job_row(qhome, job)["state"], attempt["state"]) == ("cancelled", "cancelled")
    assert slurm.wait_job(attempt["slurm_job"]) == "CANCELLED"
    wait_for(lambda: not attempt_processes(qhome), timeout=15, what="no process of the render on any node")


def failing_command(folder: Path, name: str) -> dict[str, str]:
    """PATH for a Slurm client command that fails as it does when the controller is unreachable."""
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(f"#!/bin/sh\necho '{name}: error: Unable to contact slurm controller' >&2\nexit 1\n")
    (folder / name).chmod(0o755)
    return {"PATH": f"{folder}:{os.environ['PATH']}"}


def test_a_cancel_with_no_worker_finds_an_unrecorded_slurm_job_by_its_name(slurm, qhome, tiny_ckpt, qframes):
    job = handed_off(qhome, slurm, tiny_ckpt, qframes)
    (attempt,) = attempt_rows(qhome, job)
    conn = connect(qhome / "flf2v.db")
    with write_tx(conn):  # as if the worker had died between sbatch and recording the job id
        conn.execute("UPDATE attempts SET slurm_job = NULL")
    conn.close()
    cancel = run(qhome, slurm, "cancel", str(job), "--kill-grace", "10", timeout=120)
    assert f"scancel of its Slurm job {attempt['slurm_job']}" in cancel.stdout, cancel.stdout + cancel.stderr
    assert slurm.wait_job(attempt["slurm_job"]) == "CANCELLED"
    wait_for(lambda: not attempt_processes(qhome), timeout=15, what="no process of the render on any node")


def test_a_cancel_with_no_worker_waits_out_a_slurm_it_cannot_ask(slurm, qhome, tiny_ckpt, qframes, tmp_path):
    job = handed_off(qhome, slurm, tiny_ckpt, qframes)
    (attempt,) = attempt_rows(qhome, job)
    env = {**slurm_env(slurm), **failing_command(tmp_path / "shims", "squeue")}
    began = time.monotonic()
    cancel = flf2v(qhome, "cancel", str(job), "--kill-grace", "4", timeout=120, env=env)
    # Unknown is alive: the whole grace period, then the SIGKILL (scancel itself works).
    assert time.monotonic() - began >= 4, cancel.stdout
    assert f"grace period over, SIGKILL to its Slurm job {attempt['slurm_job']}" in cancel.stdout, cancel.stdout
    assert slurm.wait_job(attempt["slurm_job"]) == "CANCELLED"
    wait_for(lambda: not attempt_processes(qhome), timeout=15, what="no process of the render on any node")


def test_a_worker_restarted_while_squeue_fails_keeps_asking_and_says_so(slurm, qhome, tiny_ckpt, qframes, tmp_path):
    job = handed_off(qhome, slurm, tiny_ckpt, qframes)
    (attempt,) = attempt_rows(qhome, job)
    conn = connect(qhome / "flf2v.db")
    with write_tx(conn):  # its id unrecorded: the restarted worker must look it up by name, and cannot yet
        conn.execute("UPDATE attempts SET slurm_job = NULL")
    conn.close()
    shim = failing_command(tmp_path / "shims", "squeue")
    worker = start_worker(qhome, *WORKER, **slurm_env(slurm), **shim)
    try:
        said = "Slurm has not answered about job flf2v-"
        wait_for(lambda: said in (qhome / "worker.log").read_text(), timeout=60, what="the worker saying so")
        assert worker.poll() is None, (qhome / "worker.log").read_text()  # never a crash
        assert job_row(qhome, job)["state"] == "running"  # nor an end it cannot know
    finally:
        assert stop(worker) == 0
    # With Slurm answering again, a worker finds the same job by its name: nothing was submitted twice.
    cancel = run(qhome, slurm, "cancel", str(job), "--kill-grace", "10", timeout=120)
    assert f"scancel of its Slurm job {attempt['slurm_job']}" in cancel.stdout, cancel.stdout + cancel.stderr
    assert slurm_jobs_named(slurm, qhome, attempt["id"]) == [attempt["slurm_job"]]
    wait_for(lambda: not attempt_processes(qhome), timeout=15, what="no process of the render on any node")


def _rank_on(cluster: SlurmCluster, node: str) -> psutil.Process | None:
    for pid in cluster.node_pids(node):
        try:
            proc = psutil.Process(pid)
            if "engine.generate" in " ".join(proc.cmdline()) and proc.environ().get("RANK"):
                return proc
        except psutil.Error:
            continue
    return None


def _signal_rank1_mid_render(
    home: Path, cluster: SlurmCluster, ckpt: Path, frames: tuple[Path, Path], sig: int, timeout_s: int, wait_s: int
) -> tuple[dict, float]:
    """A 2-node render whose rank 1 (on flf2v-n2) gets `sig` mid-denoise: its attempt once the job failed, and
    the seconds from the signal to that."""
    job = submit(home, cluster, ckpt, frames, LONG, "--nodes", "2", "--gpus-per-node", "1",
                 "--collective-timeout", str(timeout_s), "--retries", "0")  # fmt: skip
    worker = start_worker(home, *WORKER, "--once", **slurm_env(cluster))
    try:
        wait_for(lambda: denoising(home, job), timeout=240, what="the denoise stage")
        rank1 = wait_for(lambda: _rank_on(cluster, "flf2v-n2"), timeout=10, what="rank 1 on flf2v-n2")
        signalled_at = time.monotonic()
        rank1.send_signal(sig)
        wait_for(lambda: job_row(home, job)["state"] == "failed", timeout=wait_s, what="the failure")
        took = time.monotonic() - signalled_at
        assert worker.wait(timeout=60) == 0
    finally:
        stop(worker)
    (attempt,) = attempt_rows(home, job)
    return attempt, took


def test_a_rank_killed_on_the_second_node_fails_the_attempt_quickly_naming_rank_and_node(
    slurm, qhome, tiny_ckpt, qframes
):
    attempt, took = _signal_rank1_mid_render(qhome, slurm, tiny_ckpt, qframes, signal.SIGKILL, 30, 60)
    assert took < 30 + 15
    assert (attempt["failure_class"], attempt["failing_rank"]) == ("killed", 1), attempt["failure_message"]
    assert "flf2v-n2" in attempt["failure_message"]
    wait_for(lambda: not attempt_processes(qhome), timeout=15, what="no process of the render on any node")


def test_a_hung_peer_fails_the_attempt_as_comm_within_the_collective_timeout(slurm, qhome, tiny_ckpt, qframes):
    # SIGSTOP: rank 1 stays alive, holding its sockets, answering nothing; its peer waits out the timeout.
    attempt, took = _signal_rank1_mid_render(qhome, slurm, tiny_ckpt, qframes, signal.SIGSTOP, 20, 80)
    message = attempt["failure_message"]
    assert attempt["failure_class"] == "comm", message
    assert took < 20 + 40, took
    rank = attempt["failing_rank"]
    node = {0: "flf2v-n1", 1: "flf2v-n2"}[rank]
    assert f"rank {rank}" in message and node in message, message
    wait_for(lambda: not attempt_processes(qhome), timeout=30, what="no process of the render on any node")


def test_a_lost_node_is_the_clusters_failure_and_retryable(slurm, qhome, tiny_ckpt, qframes):
    """The second node hangs (its slurmd killed, the rest stopped): Slurm finds it lost (SlurmdTimeout 10 s; within
    a minute here) and ends the job NODE_FAIL before the ranks' own collective timeout (180 s here) could, and
    that is recorded as worker_lost, the cluster's failure (retried by default; --retries 0 to see it end)."""
    job = submit(qhome, slurm, tiny_ckpt, qframes, LONG, "--nodes", "2", "--gpus-per-node", "1",
                 "--collective-timeout", "180", "--retries", "0")  # fmt: skip
    worker = start_worker(qhome, *WORKER, "--once", **slurm_env(slurm))
    try:
        wait_for(lambda: denoising(qhome, job), timeout=240, what="the denoise stage")
        slurm.lose_node("flf2v-n2")
        wait_for(lambda: attempt_rows(qhome, job)[0]["state"] != "running", timeout=150, what="the attempt's end")
        assert worker.wait(timeout=60) == 0
    finally:
        stop(worker)
        slurm.revive("flf2v-n2")
    wait_for(lambda: not attempt_processes(qhome), timeout=60, what="no process of the render on any node")
    (attempt,) = attempt_rows(qhome, job)
    assert (attempt["state"], attempt["failure_class"]) == ("interrupted", "worker_lost"), attempt["failure_message"]
    assert "NODE_FAIL" in attempt["failure_message"] and "the cluster's failure" in attempt["failure_message"]
    assert attempt["failure_message"].endswith("; lost: flf2v-n2")  # the node that hung, not the job's list
