"""The atomic claim: one write transaction picks the next runnable job that fits and marks it running."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any

from storage.db import write_tx
from storage.deps import UNMET
from storage.space import WAITS_FOR_SPACE, space_wait
from storage.workers import WorkerIdentity, is_paused

# A job at the head of the queue that has waited this long for GPUs stops smaller jobs behind it from
# starting ahead of it (otherwise a stream of 1-GPU jobs could starve a 4-GPU job forever).
RESERVE_AFTER_S = 600.0

_CANDIDATES = f"""
SELECT j.id, j.gpus, j.nodes, j.queued_at, j.state_reason, j.attempts_count, j.failure_class,
       a.failure_message, a.save_file, a.log_dir
FROM jobs j LEFT JOIN attempts a ON a.id = j.current_attempt_id
WHERE j.state = 'queued' AND j.held = 0 AND j.cancel_requested = 0
  AND (j.not_before IS NULL OR j.not_before <= ?)
  AND NOT EXISTS ({UNMET})
ORDER BY j.priority DESC, j.seq ASC
"""


@dataclass(frozen=True)
class Assignment:
    """What a worker hands a job: device kind and its slot names (GPU indices, or one CPU slot)."""

    device: str  # "cuda" or "cpu"
    slots: tuple[str, ...]


# The worker's pool answers, for a job of N ranks: an assignment, or why not (and whether it ever could).
Fit = Callable[[int], "Assignment | str"]


@dataclass
class Claimed:
    job: dict[str, Any]
    attempt_id: int
    number: int
    assignment: Assignment


def claim_next(
    conn: sqlite3.Connection,
    me: WorkerIdentity,
    fit: Fit,
    log_dir_for: Callable[[int, int], str],
    *,
    only_jobs: Collection[int] | None = None,
    now: float | None = None,
    reserve_after_s: float = RESERVE_AFTER_S,
    max_nodes: int = 1,
) -> Claimed | None:
    """Claim one job for this worker, or None; `max_nodes`: the most nodes its launcher can give a job. Two
    workers can never claim the same job: the pick and the state change happen under one write lock, and the
    update re-checks the state."""
    now = time.time() if now is None else now
    with write_tx(conn):
        if is_paused(conn):
            return None
        reasons: dict[int, str] = {}
        answers: dict[int, Assignment | str] = {}
        smallest_misfit: int | None = None
        chosen: tuple[dict[str, Any], Assignment] | None = None
        for row in conn.execute(_CANDIDATES, (now,)):
            job = dict(row)
            if only_jobs is not None and job["id"] not in only_jobs:
                continue
            if job["failure_class"] == WAITS_FOR_SPACE:
                wait = space_wait(job["failure_message"], job["save_file"], job["log_dir"])
                if wait is not None and not wait.ready:
                    reasons[job["id"]] = wait.note()  # and jobs behind it may run: they may write elsewhere
                    continue
            if job["nodes"] > max_nodes:
                reasons[job["id"]] = (
                    f"never: needs {job['nodes']} nodes; the local backend runs on one machine: start "
                    "`flf2v worker --backend slurm` to run it on a Slurm cluster"
                )
                continue
            gpus = job["gpus"]
            if gpus not in answers:
                answers[gpus] = fit(gpus)
            answer = answers[gpus]
            if isinstance(answer, Assignment):
                chosen = (job, answer)
                break
            if len(reasons) < 20:  # the head of the queue says why it waits; the rest need no write
                reasons[job["id"]] = answer
            if not answer.startswith("never:"):
                smallest_misfit = gpus if smallest_misfit is None else min(smallest_misfit, gpus)
                if now - job["queued_at"] > reserve_after_s or smallest_misfit == 1:
                    break  # nothing smaller can fit, or the free GPUs are kept for this long-waiting job
        for job_id, reason in reasons.items():
            reason = reason.removeprefix("never:").strip()
            conn.execute(
                "UPDATE jobs SET state_reason = ? WHERE id = ? AND state = 'queued' AND "
                "COALESCE(state_reason, '') != ?",
                (reason, job_id, reason),
            )
        if chosen is None:
            return None
        job, assignment = chosen
        number = job["attempts_count"] + 1
        cur = conn.execute(
            "INSERT INTO attempts (job_id, number, state, worker_host, worker_pid, worker_started, device, gpus, "
            "nproc, log_dir, started_at, progress_at) VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                job["id"],
                number,
                me.host,
                me.pid,
                me.started,
                assignment.device,
                ",".join(assignment.slots),
                job["gpus"],
                log_dir_for(job["id"], number),
                now,
                now,
            ),
        )
        attempt_id = int(cur.lastrowid or 0)
        updated = conn.execute(
            "UPDATE jobs SET state = 'running', state_reason = NULL, failure_class = NULL, started_at = ?, "
            "current_attempt_id = ?, attempts_count = ? WHERE id = ? AND state = 'queued'",
            (now, attempt_id, number, job["id"]),
        ).rowcount
        if updated != 1:  # cannot happen under the write lock; refuse loudly rather than run a job twice
            raise RuntimeError(f"job {job['id']} changed state during its claim")
        full = dict(conn.execute("SELECT * FROM jobs WHERE id = ?", (job["id"],)).fetchone())
    return Claimed(job=full, attempt_id=attempt_id, number=number, assignment=assignment)
