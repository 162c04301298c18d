"""Supervision under faults the real engine cannot produce on CPU, with the scripted stand-in under real
torchrun, real shims and a real worker process. Every happy path is in test_worker_engine.py, on the real
engine: a success, pause and resume, the finish hook of a success, SIGTERM hand-off and re-attach, and a
render that ends while no worker watches."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

from tests.functional.queue_helpers import (
    HOOK,
    SCRIPTED,
    attempt_processes,
    attempt_rows,
    flf2v,
    job_row,
    start_worker,
    stop,
    wait_for,
)


def submit(home: Path, ckpt: Path, frames: tuple[Path, Path], script: str, *extra: str) -> int:
    args = ["--task", "flf2v-tiny", "--ckpt_dir", str(ckpt), "--first_frame", str(frames[0]),
            "--last_frame", str(frames[1]), "--prompt", f"script: {script}", "--gpus", "2", "-q"]  # fmt: skip
    proc = flf2v(home, "submit", *args, *extra)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.strip())


def run_once(home: Path, *args: str, timeout: float = 120) -> str:
    proc = flf2v(home, "worker", "--once", *args, engine=SCRIPTED, timeout=timeout)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_failures_are_classified_and_retried_by_policy(qhome, stub_ckpt, qframes, tmp_path):
    oom = submit(qhome, stub_ckpt, qframes, "steps=4 fail=oom fail_rank=1 fail_at=2", "--retry-on", "comm,oom",
                 "--retries", "0")  # fmt: skip
    killed = submit(qhome, stub_ckpt, qframes, "steps=6 fail=sigkill fail_rank=1 fail_at=2")
    flaky = submit(qhome, stub_ckpt, qframes, "steps=3 fail=exit fail_rank=0 fail_at=2",
                   "--retry-on", "engine_error", "--retries", "1", "--retry-backoff", "0")  # fmt: skip
    bad = submit(qhome, stub_ckpt, qframes, "fail=badinput", "--retry-on", "comm,engine_error,killed")
    hook_out = tmp_path / "hook-"
    log = run_once(qhome, "--cpu-slots", "3", "--on-finish", f'{sys.executable} -c "{HOOK}" {hook_out}')

    row = job_row(qhome, oom)
    (a,) = attempt_rows(qhome, oom)
    assert (row["state"], row["failure_class"], a["failing_rank"]) == ("failed", "oom", 1), log
    assert "--offload_model True" in row["state_reason"] and "--t5_cpu" in row["state_reason"]

    row, attempts = job_row(qhome, killed), attempt_rows(qhome, killed)
    assert (row["state"], row["failure_class"], len(attempts)) == ("failed", "killed", 1)
    assert attempts[0]["failing_rank"] == 1 and "SIGKILL" in attempts[0]["failure_message"]
    assert attempts[0]["exit_code"] == -9

    row, attempts = job_row(qhome, flaky), attempt_rows(qhome, flaky)
    assert (row["state"], len(attempts), row["retries_used"]) == ("failed", 2, 1)
    assert [a["failure_class"] for a in attempts] == ["engine_error", "engine_error"]

    row, attempts = job_row(qhome, bad), attempt_rows(qhome, bad)
    assert (row["state"], row["failure_class"], len(attempts), attempts[0]["exit_code"]) == (
        "failed", "user_input", 1, 2,
    )  # fmt: skip

    hooked = {job: json.loads(Path(f"{hook_out}{job}").read_text()) for job in (oom, killed, flaky, bad)}
    assert {h["FLF2V_JOB_STATE"] for h in hooked.values()} == {"failed"}
    assert hooked[oom]["FLF2V_FAILURE_CLASS"] == "oom" and float(hooked[oom]["FLF2V_SECONDS"]) > 0

    shown = flf2v(qhome, "show", str(oom))
    assert shown.returncode == 1 and "oom" in shown.stdout
    merged = flf2v(qhome, "logs", str(killed), "--all").stdout
    assert "[r0]" in merged and "[r1]" in merged
    assert "Root Cause" in flf2v(qhome, "logs", str(killed), "--torchrun").stdout
    waited = flf2v(qhome, "wait", str(killed), str(oom))
    assert waited.returncode == 1


def test_a_stalled_job_is_stopped(qhome, stub_ckpt, qframes):
    job = submit(qhome, stub_ckpt, qframes, "steps=8 step_s=0.1 fail=hang fail_rank=0 fail_at=2", "--retries", "0")
    log = run_once(qhome, "--stall-timeout", "0.05", "--kill-grace", "2")
    row, (attempt,) = job_row(qhome, job), attempt_rows(qhome, job)
    assert row["state"] == "failed" and attempt["failure_class"] == "comm", log
    assert "stalled" in attempt["failure_message"]
    assert attempt_processes(qhome) == []


def test_a_lost_render_is_requeued_as_worker_lost(qhome, stub_ckpt, qframes):
    job = submit(qhome, stub_ckpt, qframes, "steps=30 step_s=0.1", "--retry-backoff", "0")
    worker = start_worker(qhome, engine=SCRIPTED)
    wait_for(lambda: (attempt_rows(qhome, job) or [{}])[0].get("step"), what="the render's first step")
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    for proc in attempt_processes(qhome):  # the machine "loses" the render too
        proc.kill()
    wait_for(lambda: not attempt_processes(qhome), what="the render to die")
    run_once(qhome)
    attempts = attempt_rows(qhome, job)
    assert [a["state"] for a in attempts] == ["interrupted", "succeeded"]
    assert attempts[0]["failure_class"] == "worker_lost"
    assert job_row(qhome, job)["state"] == "succeeded"


def test_stop_jobs_stops_and_requeues(qhome, stub_ckpt, qframes):
    job = submit(qhome, stub_ckpt, qframes, "steps=100 step_s=0.1")
    worker = start_worker(qhome, "--stop-jobs", "--kill-grace", "5", engine=SCRIPTED)
    wait_for(lambda: (attempt_rows(qhome, job) or [{}])[0].get("step"), what="the render's first step")
    assert stop(worker) == 0
    row, (attempt,) = job_row(qhome, job), attempt_rows(qhome, job)
    assert (row["state"], attempt["state"]) == ("queued", "interrupted")
    assert attempt_processes(qhome) == []


def test_fake_gpus_disjoint_sets_and_foreign_processes(qhome, stub_ckpt, qframes, tmp_path):
    gpus = tmp_path / "gpus.json"

    def hardware(busy: dict[int, int]) -> None:
        gpus.write_text(json.dumps([
            {"index": i, "name": "FakeGPU", "uuid": f"GPU-{i}", "memory_total": 80 << 30, "memory_used": 0,
             "processes": [{"pid": busy[i], "used_bytes": 1 << 30}] if i in busy else []}
            for i in range(4)
        ]))  # fmt: skip

    hardware({3: 4242})
    a = submit(qhome, stub_ckpt, qframes, "steps=30 step_s=0.1")
    b = submit(qhome, stub_ckpt, qframes, "steps=3 step_s=0.1")
    worker = start_worker(qhome, "--once", engine=SCRIPTED, FLF2V_FAKE_GPUS=str(gpus))
    wait_for(lambda: job_row(qhome, a)["state"] == "running", what="job a to start")
    reason = wait_for(lambda: job_row(qhome, b)["state_reason"], what="job b's reason")
    assert "GPU 3 is used by another program (pid 4242)" in reason
    listing = flf2v(qhome, "ls").stdout
    assert "GPU 3 is used by another program" in listing
    hardware({})
    assert worker.wait(timeout=120) == 0, (qhome / "worker.log").read_text()
    slots = [attempt_rows(qhome, j)[0]["gpus"] for j in (a, b)]
    assert slots[0] == "0,1" and slots[1] in ("2,3",) and set(slots[0].split(",")).isdisjoint(slots[1].split(","))
    command = (Path(attempt_rows(qhome, a)[0]["log_dir"]) / "command.txt").read_text()
    assert "CUDA_VISIBLE_DEVICES=0,1" in command and "--device cuda" in command
