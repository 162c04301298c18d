"""A warm group on 2 gloo ranks under torchrun (FSDP and Ulysses), driven through its folder: many jobs with
one load, cancel agreed by both ranks at one step, a clean stop; and the failures that end a group (a
simulated OOM, a killed rank)."""

from __future__ import annotations

import signal

import numpy as np
import pytest

from engine.telemetry import validate_event
from engine.warm_job import TEST_OOM_ENV
from engine.warm_protocol import JobEnd, Ready, request_cancel, request_stop
from tests.functional.engine_helpers import rank_process, run_engine
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
    wait_for,
    warm_group,
)

pytestmark = pytest.mark.slow

LAYOUT = ["--dit_fsdp", "--t5_fsdp", "--ulysses_size", "2"]
LONG = {"sample_steps": "400"}  # a job that is still denoising when the test acts on it


@pytest.fixture(scope="module")
def two_ranks(tiny_official_ckpt, qframes, tmp_path_factory) -> dict:
    """One 2-rank group: the four jobs, a long job cancelled after its first step, the first job again; then
    the stop file. And the first job rendered cold on 2 ranks."""
    root = tmp_path_factory.mktemp("warm-two-ranks")
    group, attempts, ends = root / "group", {}, {}
    plan = [*JOBS, {**JOBS[0], **LONG}, JOBS[0]]
    with warm_group(group, tiny_official_ckpt, 2, LAYOUT) as proc:
        for seq, job in enumerate(plan, start=1):
            attempts[seq] = root / f"attempt{seq}"
            hand(group, seq, job_argv(tiny_official_ckpt, qframes, attempts[seq], LAYOUT, **job))
            if job is plan[4]:
                wait_for(lambda: of_kind(attempts[5], "step"), "the long job's first step")
                request_cancel(group, seq)
            ends[seq] = wait_end(group, seq, proc)
        request_stop(group)
        returncode = proc.wait(timeout=60)
    cold = root / "cold"
    run = run_engine(job_argv(tiny_official_ckpt, qframes, cold, LAYOUT, **JOBS[0]), nproc=2)
    assert run.returncode == 0, run.stderr[-3000:]
    return {"group": group, "attempts": attempts, "ends": ends, "returncode": returncode, "cold": cold}


def test_four_different_jobs_render_on_two_ranks_with_one_load(two_ranks):
    group, attempts = two_ranks["group"], two_ranks["attempts"]
    ready = Ready.read(group)
    assert ready is not None and ready.world_size == 2 and ready.key["dit_fsdp"] is True
    assert load_stages(group) == 1
    for seq, job in enumerate(JOBS, start=1):
        assert two_ranks["ends"][seq] == JobEnd(seq, True, None, True)
        assert all(validate_event(e) == [] for e in events(attempts[seq]))
        assert of_kind(attempts[seq], "start")[0]["warm"] is True
        assert of_kind(attempts[seq], "done")[0]["frames"] == int(job["frame_num"])
        for rank in (0, 1):
            log = (attempts[seq] / f"rank{rank}.log").read_text()
            assert "Parallelism: 2 ranks: DiT sharded with FSDP2" in log and "Finished." in log
    assert np.array_equal(video(attempts[1]), video(two_ranks["cold"]))
    assert np.array_equal(video(attempts[6]), video(two_ranks["cold"]))
    for rank in (0, 1):
        freed = {seq: freed_memory(attempt, rank) for seq, attempt in attempts.items()}
        assert all(abs(rss - freed[1]) <= 0.015 * freed[1] for rss in freed.values()), (rank, freed)


def test_a_cancelled_job_stops_at_one_step_on_both_ranks_and_the_group_stays_warm(two_ranks):
    attempts, ends = two_ranks["attempts"], two_ranks["ends"]
    assert ends[5] == JobEnd(5, False, "cancelled", True)
    (error,) = of_kind(attempts[5], "error")  # rank 0's: both ranks saw it alike
    steps = [e["i"] for e in of_kind(attempts[5], "step")]
    assert error["class"] == "cancelled" and error["message"] == f"cancelled at step {steps[-1]}/400"
    assert steps[-1] < 400 and not (attempts[5] / "v.mp4").exists()
    for rank in (0, 1):  # each rank's last step is the one the job stopped at
        stepped = [e["step"] for e in of_kind(attempts[5], "memory") if e["rank"] == rank and "step" in e]
        assert stepped[-1] == steps[-1]
        assert f"cancelled at step {steps[-1]}/400" in (attempts[5] / f"rank{rank}.log").read_text()
    assert ends[6] == JobEnd(6, True, None, True) and of_kind(attempts[6], "start")[0]["warm"] is True


def test_the_stop_file_ends_the_group_cleanly(two_ranks):
    assert two_ranks["returncode"] == 0
    log = (two_ranks["group"] / "rank1.log").read_text()
    assert "Warm group stopped." in log and "Error" not in log


@pytest.mark.parametrize("nproc", [1, 2])
def test_an_oom_ends_the_group(tiny_official_ckpt, qframes, tmp_path, nproc):
    group, attempt = tmp_path / "group", tmp_path / "attempt1"
    flags = LAYOUT if nproc == 2 else []
    with warm_group(group, tiny_official_ckpt, nproc, flags, **{TEST_OOM_ENV: "OOM-HERE"}) as proc:
        hand(group, 1, job_argv(tiny_official_ckpt, qframes, attempt, flags, prompt="a bird OOM-HERE"))
        returncode = proc.wait(timeout=120)
    assert returncode != 0
    end = JobEnd.read(group, 1)
    errors = {e["rank"]: e["class"] for e in of_kind(attempt, "error")}
    # One process: its own OOM. Two: the OOM on rank 1 ends it, and rank 0 sees its peer gone.
    assert errors == ({0: "oom"} if nproc == 1 else {0: "comm", 1: "oom"})
    assert end is not None and (end.ok, end.healthy) == (False, False) and end.failure == errors[0]


def test_a_killed_rank_ends_the_group(tiny_official_ckpt, qframes, tmp_path):
    group, attempt = tmp_path / "group", tmp_path / "attempt1"
    with warm_group(group, tiny_official_ckpt, 2, LAYOUT) as proc:
        hand(group, 1, job_argv(tiny_official_ckpt, qframes, attempt, LAYOUT, **LONG))
        wait_for(lambda: of_kind(attempt, "step"), "the first step")
        rank_process(proc, 1).send_signal(signal.SIGKILL)
        returncode = proc.wait(timeout=60)
    assert returncode != 0
    (error,) = [e for e in of_kind(attempt, "error") if e["rank"] == 0]
    assert error["class"] == "comm" and error["message"].startswith("rank 1 (pid ")
    end = JobEnd.read(group, 1)
    assert end is not None and (end.ok, end.failure, end.healthy) == (False, "comm", False)


def test_a_rank_lost_while_idle_ends_the_group(tiny_official_ckpt, tmp_path):
    group = tmp_path / "group"
    with warm_group(group, tiny_official_ckpt, 2, LAYOUT) as proc:
        wait_for(lambda: Ready.read(group) is not None, "the group to load")
        rank_process(proc, 1).send_signal(signal.SIGKILL)
        returncode = proc.wait(timeout=60)
    assert returncode != 0
    (error,) = [e for e in events(group) if e["kind"] == "error" and e["rank"] == 0]
    assert error["class"] == "comm" and error["message"].startswith("rank 1 (pid ")
