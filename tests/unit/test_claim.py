"""The atomic claim: order, dependencies, holds, pause, back-off, fitting, and never twice."""

from __future__ import annotations

import time

from storage import ops
from storage.attempts import Outcome, finish
from storage.claim import Assignment, claim_next
from storage.db import connect
from storage.workers import WorkerIdentity, set_paused

ME = WorkerIdentity("host", 1, 1.0)


def one_cpu(ranks: int) -> Assignment | str:
    return Assignment("cpu", ("cpu0",))


def claim(conn, fit=one_cpu, **kw):
    return claim_next(conn, ME, fit, lambda j, n: f"/logs/{j}/{n}", **kw)


def claimed_ids(conn, fit=one_cpu) -> list[int]:
    out = []
    while (c := claim(conn, fit)) is not None:
        out.append(c.job["id"])
    return out


def test_priority_then_fifo(conn, queue):
    a, b, c, d = queue(), queue(priority=5), queue(), queue(priority=5)
    assert claimed_ids(conn) == [b, d, a, c]


def test_claim_marks_running_and_creates_the_attempt(conn, queue):
    job_id = queue(gpus=2)
    got = claim(conn, lambda n: Assignment("cuda", ("2", "3")))
    assert got.job["state"] == "running" and got.number == 1
    row = conn.execute("SELECT * FROM attempts WHERE id = ?", (got.attempt_id,)).fetchone()
    assert (row["job_id"], row["gpus"], row["nproc"], row["device"], row["log_dir"]) == (
        job_id, "2,3", 2, "cuda", f"/logs/{job_id}/1",
    )  # fmt: skip
    assert conn.execute("SELECT current_attempt_id FROM jobs WHERE id = ?", (job_id,)).fetchone()[0] == row["id"]


def test_held_paused_and_cancelled_jobs_are_skipped(conn, queue):
    held = queue(held=True)
    plain = queue()
    set_paused(conn, True)
    assert claim(conn) is None
    set_paused(conn, False)
    assert claimed_ids(conn) == [plain]
    ops.set_held(conn, held, False)
    queue_cancelled = queue()
    ops.cancel(conn, queue_cancelled)
    assert claimed_ids(conn) == [held]


def test_dependencies_wait_for_success(conn, queue):
    first = queue()
    second = queue(after=[first])
    assert claimed_ids(conn) == [first]
    assert claim(conn) is None  # first is running, not succeeded
    attempt = conn.execute("SELECT id FROM attempts WHERE job_id = ?", (first,)).fetchone()[0]
    finish(conn, attempt, Outcome("succeeded", exit_code=0, output_path="/v.mp4"))
    assert claimed_ids(conn) == [second]


def test_back_off_delays_a_retry(conn, queue):
    job_id = queue()
    conn.execute("UPDATE jobs SET not_before = ? WHERE id = ?", (time.time() + 60, job_id))
    assert claim(conn) is None
    assert claim(conn, now=time.time() + 61).job["id"] == job_id


def test_smaller_jobs_backfill_until_the_big_one_has_waited_long(conn, queue):
    big, small = queue(gpus=4), queue(gpus=1)

    def two_free(n: int) -> Assignment | str:
        return Assignment("cuda", tuple(str(i) for i in range(n))) if n <= 2 else "waiting for 4 GPUs: 2 free"

    assert claim(conn, two_free).job["id"] == small
    reason = conn.execute("SELECT state_reason FROM jobs WHERE id = ?", (big,)).fetchone()[0]
    assert reason == "waiting for 4 GPUs: 2 free"
    late = queue(gpus=1)
    # The big job has now waited past the reservation time: nothing may pass it.
    assert claim(conn, two_free, reserve_after_s=0.0) is None
    assert claim(conn, two_free, reserve_after_s=3600).job["id"] == late


def test_jobs_that_can_never_fit_do_not_block_others(conn, queue):
    huge, small = queue(gpus=16), queue(gpus=1)

    def eight(n: int) -> Assignment | str:
        return Assignment("cuda", ("0",)) if n <= 8 else "never: needs 16 GPUs; the worker has 8"

    assert claim(conn, eight, reserve_after_s=0.0).job["id"] == small
    reason = conn.execute("SELECT state_reason FROM jobs WHERE id = ?", (huge,)).fetchone()[0]
    assert reason == "needs 16 GPUs; the worker has 8"


def test_a_job_of_several_nodes_waits_for_a_launcher_that_has_them(conn, queue):
    wide, narrow = queue(nodes=2), queue()
    assert claim(conn).job["id"] == narrow  # the local backend's one machine: the wide job is passed over
    reason = conn.execute("SELECT state_reason FROM jobs WHERE id = ?", (wide,)).fetchone()[0]
    assert reason == (
        "needs 2 nodes; the local backend runs on one machine: start `flf2v worker --backend slurm` to run it "
        "on a Slurm cluster"
    )
    assert claim(conn, max_nodes=4).job["id"] == wide


def test_only_jobs_restricts_a_worker(conn, queue):
    a, b = queue(), queue()
    assert claim(conn, only_jobs={b}).job["id"] == b
    assert claim(conn, only_jobs={b}) is None
    assert claim(conn).job["id"] == a


def test_two_connections_never_claim_the_same_job(home, conn, queue):
    ids = [queue() for _ in range(30)]
    other = connect(home.db)
    got: list[int] = []
    for _ in range(40):
        for c in (conn, other):
            result = claim(c)
            if result:
                got.append(result.job["id"])
    assert sorted(got) == ids
    counts = conn.execute("SELECT job_id, COUNT(*) FROM attempts GROUP BY job_id HAVING COUNT(*) > 1").fetchall()
    assert counts == []
