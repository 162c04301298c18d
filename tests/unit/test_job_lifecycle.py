"""Job transitions: finishing attempts, retry policy, and what users do to jobs."""

from __future__ import annotations

import pytest

from engine.errors import BadInputError
from storage import ops
from storage.attempts import Outcome, finish, hand_off, reattach
from storage.claim import Assignment, claim_next
from storage.jobs import count_by_state, get_job, list_jobs
from storage.policy import decide
from storage.workers import WorkerIdentity

ME = WorkerIdentity("host", 1, 1.0)


def start(conn, job_id: int) -> int:
    got = claim_next(conn, ME, lambda n: Assignment("cpu", ("cpu0",)), lambda j, n: "/x", only_jobs={job_id})
    assert got is not None
    return got.attempt_id


def test_success_records_output(conn, queue):
    job_id = queue()
    assert finish(conn, start(conn, job_id), Outcome("succeeded", exit_code=0, output_path="/v.mp4")) == "succeeded"
    job = get_job(conn, job_id)
    assert job["output_path"] == "/v.mp4" and job["finished_at"] and job["state_reason"] is None


def test_finish_is_idempotent(conn, queue):
    attempt = start(conn, queue())
    assert finish(conn, attempt, Outcome("failed", failure_class="engine_error")) == "failed"
    assert finish(conn, attempt, Outcome("succeeded", exit_code=0)) is None


def test_comm_failures_retry_with_back_off_then_fail(conn, queue):
    job_id = queue(max_retries=2, retry_backoff=10.0)
    for n in (1, 2):
        state = finish(conn, start_after_backoff(conn, job_id), Outcome("failed", 1, "comm", 1, "gloo timeout"))
        assert state == "queued"
        job = get_job(conn, job_id)
        assert job["retries_used"] == n and f"retry {n} of 2" in job["state_reason"]
    assert finish(conn, start_after_backoff(conn, job_id), Outcome("failed", 1, "comm", 0, "x")) == "failed"
    job = get_job(conn, job_id)
    assert job["failure_class"] == "comm" and "gave up after 2 retries" in job["state_reason"]
    assert job["attempts_count"] == 3


def start_after_backoff(conn, job_id: int) -> int:
    conn.execute("UPDATE jobs SET not_before = NULL WHERE id = ?", (job_id,))
    return start(conn, job_id)


def test_oom_fails_with_a_hint_and_user_input_never_retries(conn, queue):
    oom = queue(retry_on=("comm", "oom"), max_retries=0)
    finish(conn, start(conn, oom), Outcome("failed", 1, "oom", 1, "CUDA out of memory"))
    reason = get_job(conn, oom)["state_reason"]
    assert "--offload_model True" in reason and "--t5_cpu" in reason and f"flf2v retry {oom}" in reason
    bad = queue(retry_on=("comm",))
    assert decide(get_job(conn, bad), "user_input").retry is False
    assert decide({**get_job(conn, bad), "retry_on": "user_input"}, "user_input").retry is False


def test_a_slurm_time_limit_fails_with_the_hint_to_raise_time(conn, queue):
    job_id = queue(max_retries=0)
    finish(conn, start(conn, job_id), Outcome("failed", failure_class="timeout", message="Slurm job 41 reached it"))
    reason = get_job(conn, job_id)["state_reason"]
    assert "longer --time" in reason and f"flf2v retry {job_id}" in reason


def test_interrupted_is_worker_lost_and_requeued(conn, queue):
    job_id = queue()
    assert finish(conn, start(conn, job_id), Outcome("interrupted")) == "queued"
    assert "worker_lost" in get_job(conn, job_id)["state_reason"]


def test_cancel_queued_running_and_finished(conn, queue):
    queued, running = queue(), queue()
    attempt = start(conn, running)
    assert "had not started" in ops.cancel(conn, queued)
    assert get_job(conn, queued)["state"] == "cancelled"
    assert "cancel requested" in ops.cancel(conn, running)
    assert get_job(conn, running)["cancel_requested"] == 1
    assert finish(conn, attempt, Outcome("failed", 143, "killed")) == "cancelled"
    assert "already cancelled" in ops.cancel(conn, running)


def test_counts_by_state(conn, queue):
    first = queue()
    queue(held=True), queue(after=[first])
    ops.cancel(conn, queue())
    assert count_by_state(conn) == {"queued": 1, "held": 2, "cancelled": 1}
    assert [j["id"] for j in list_jobs(conn, states=["queued"])] == [first]
    assert len(list_jobs(conn, states=["held"])) == 2


def test_hold_release_and_top(conn, queue):
    a, b, c = queue(), queue(), queue()
    ops.set_held(conn, a, True)
    assert [j["id"] for j in list_jobs(conn, states=["held"])] == [a]
    ops.move_to_top(conn, c)
    assert [j["id"] for j in list_jobs(conn, states=["queued"])] == [c, b]
    ops.set_held(conn, a, False)
    start(conn, c)
    with pytest.raises(BadInputError, match="only queued jobs"):
        ops.set_held(conn, c, True)


def test_rm_keeps_dependencies_and_running_jobs_safe(conn, home, queue):
    first = queue()
    second = queue(after=[first])
    with pytest.raises(BadInputError, match=f"jobs {second} wait for job {first}"):
        ops.remove(conn, home, first)
    assert home.job_dir(second).exists()
    ops.remove(conn, home, second)
    assert get_job(conn, second) is None and not home.job_dir(second).exists()
    start(conn, first)
    with pytest.raises(BadInputError, match="cancel it first"):
        ops.remove(conn, home, first)


def test_requeue_a_finished_job_with_changes(conn, queue):
    job_id = queue()
    finish(conn, start(conn, job_id), Outcome("failed", 1, "engine_error"))
    ops.requeue(conn, job_id, {"sample_steps": 9, "gpus": 2})
    job = get_job(conn, job_id)
    assert (job["state"], job["sample_steps"], job["gpus"], job["failure_class"]) == ("queued", 9, 2, None)
    assert start(conn, job_id)
    assert conn.execute("SELECT MAX(number) FROM attempts WHERE job_id = ?", (job_id,)).fetchone()[0] == 2
    with pytest.raises(BadInputError, match="only finished jobs"):
        ops.requeue(conn, job_id, {})


def test_hand_off_and_reattach(conn, queue):
    job_id = queue()
    attempt = start(conn, job_id)
    hand_off(conn, [attempt])
    assert get_job(conn, job_id)["state"] == "interrupted"
    # The old worker (pid 1 with another start time) is not alive, so a new worker may take over.
    assert reattach(conn, attempt, WorkerIdentity("host", 2, 2.0))
    assert get_job(conn, job_id)["state"] == "running"


def test_inputs_are_copied_and_deps_checked(conn, home, queue, frames):
    job_id = queue()
    job = get_job(conn, job_id)
    assert job["first_frame"].startswith(str(home.inputs_dir(job_id)))
    assert job["first_frame_src"] == str(frames[0])
    with pytest.raises(BadInputError, match="there is no job 999"):
        queue(after=[999])
    assert len(list_jobs(conn)) == 1
    assert not [p for p in home.jobs.iterdir() if p.name.startswith(".staging")]
    frames[0].unlink()  # the user deletes the original: nothing is lost
    assert (home.inputs_dir(job_id) / "first.png").exists()
    with pytest.raises(BadInputError, match=r"first\.png"):
        queue()
    assert len(list_jobs(conn)) == 1


def test_an_edit_of_a_job_a_worker_has_claimed_is_refused_under_the_lock(conn, queue):
    job_id = queue(prompt="before")
    start(conn, job_id)  # the worker claims it between the edit's first look and its write
    with pytest.raises(BadInputError, match=f"job {job_id} is running; only a queued job can be edited"):
        ops.update_queued(conn, job_id, {"prompt": "after"})
    assert get_job(conn, job_id)["prompt"] == "before"
