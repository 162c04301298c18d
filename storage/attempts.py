"""The worker's writes about one attempt: launched, progress, and how it ended."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from storage.db import write_tx
from storage.policy import decide
from storage.space import WAITS_FOR_SPACE, space_wait
from storage.states import STARTED, sql_list
from storage.workers import WorkerIdentity

PROGRESS_FIELDS = (
    "stage",
    "step",
    "steps_total",
    "sec_per_it",
    "eta_seconds",
    "progress_at",
    "memory",
    "peak_memory",
    "stage_seconds",
    "engine_version",
    "attention",
    "psnr_first",
    "psnr_last",
    "warm",
    "load_saved_s",
)


@dataclass
class Outcome:
    """How an attempt ended. `state` is the attempt's: succeeded, failed, cancelled or interrupted."""

    state: str
    exit_code: int | None = None
    failure_class: str | None = None
    failing_rank: int | None = None
    message: str = ""
    output_path: str | None = None
    requeue_always: bool = False  # the worker stopped it on purpose (--stop-jobs): not the job's fault


def set_launched(
    conn: sqlite3.Connection,
    attempt_id: int,
    pgid: int,
    pgid_started: float,
    master_port: int | None,
    save_file: str,
    group_dir: str | None = None,
    group_seq: int | None = None,
) -> None:
    """The render's process group (a warm group's, with the job's number there), recorded before a warm group
    is handed the job: a later worker re-attaches by it, or requeues the job if the group died first."""
    with write_tx(conn):
        conn.execute(
            "UPDATE attempts SET pgid = ?, pgid_started = ?, master_port = ?, save_file = ?, group_dir = ?, "
            "group_seq = ? WHERE id = ?",
            (pgid, pgid_started, master_port, save_file, group_dir, group_seq, attempt_id),
        )


def write_progress(conn: sqlite3.Connection, attempt_id: int, progress: dict[str, Any]) -> None:
    values = {k: progress[k] for k in PROGRESS_FIELDS if k in progress}
    for key in ("memory", "peak_memory", "stage_seconds"):
        if key in values:
            values[key] = json.dumps(values[key], sort_keys=True)
    if not values:
        return
    assignments = ", ".join(f"{k} = :{k}" for k in values)
    with write_tx(conn):
        conn.execute(
            f"UPDATE attempts SET {assignments} WHERE id = :id AND state = 'running'", {**values, "id": attempt_id}
        )


def running_attempts(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT a.*, j.state AS job_state, j.cancel_requested, j.nodes FROM attempts a JOIN jobs j ON j.id = a.job_id "
        "WHERE a.state = 'running' ORDER BY a.id"
    )
    return [dict(r) for r in rows]


def cancel_requests(conn: sqlite3.Connection, job_ids: list[int]) -> set[int]:
    if not job_ids:
        return set()
    marks = ",".join("?" * len(job_ids))
    rows = conn.execute(f"SELECT id FROM jobs WHERE id IN ({marks}) AND cancel_requested = 1", job_ids)
    return {r[0] for r in rows}


def reattach(conn: sqlite3.Connection, attempt_id: int, me: WorkerIdentity) -> bool:
    """Take over supervision of a live attempt whose worker is gone; False if another worker did first."""
    with write_tx(conn):
        row = conn.execute(
            "SELECT job_id, worker_host, worker_pid, worker_started FROM attempts WHERE id = ? AND state = 'running'",
            (attempt_id,),
        ).fetchone()
        if row is None:
            return False
        from storage.workers import process_alive

        if (row["worker_pid"], row["worker_started"]) != (me.pid, me.started) and process_alive(
            row["worker_host"], row["worker_pid"], row["worker_started"]
        ):
            return False
        conn.execute(
            "UPDATE attempts SET worker_host = ?, worker_pid = ?, worker_started = ? WHERE id = ?",
            (me.host, me.pid, me.started, attempt_id),
        )
        conn.execute(
            f"UPDATE jobs SET state = 'running', state_reason = NULL WHERE id = ? AND state IN {sql_list(STARTED)}",
            (row["job_id"],),
        )
    return True


def hand_off(conn: sqlite3.Connection, attempt_ids: list[int]) -> None:
    """The worker is stopping and leaves these renders alive for the next worker to re-attach."""
    with write_tx(conn):
        for attempt_id in attempt_ids:
            conn.execute(
                "UPDATE jobs SET state = 'interrupted', state_reason = "
                "'worker stopped; the render continues and the next flf2v worker re-attaches it' "
                "WHERE current_attempt_id = ? AND state = 'running'",
                (attempt_id,),
            )


def finish(conn: sqlite3.Connection, attempt_id: int, outcome: Outcome, now: float | None = None) -> str | None:
    """Record the end of an attempt and move its job on; returns the job's new state, or None when the
    attempt had already been finished (by another worker reconciling it)."""
    now = time.time() if now is None else now
    with write_tx(conn):
        attempt = conn.execute("SELECT * FROM attempts WHERE id = ? AND state = 'running'", (attempt_id,)).fetchone()
        if attempt is None:
            return None
        job = dict(conn.execute("SELECT * FROM jobs WHERE id = ?", (attempt["job_id"],)).fetchone())
        conn.execute(
            "UPDATE attempts SET state = ?, exit_code = ?, failure_class = ?, failing_rank = ?, failure_message = ?, "
            "ended_at = ? WHERE id = ?",
            (
                outcome.state,
                outcome.exit_code,
                outcome.failure_class,
                outcome.failing_rank,
                outcome.message[:4000] or None,
                now,
                attempt_id,
            ),
        )
        new_state, reason, extra = _job_transition(job, dict(attempt), outcome, now)
        sets = {"state": new_state, "state_reason": reason, **extra}
        assignments = ", ".join(f"{k} = :{k}" for k in sets)
        conn.execute(f"UPDATE jobs SET {assignments} WHERE id = :id", {**sets, "id": job["id"]})
    return new_state


def _job_transition(
    job: dict[str, Any], attempt: dict[str, Any], outcome: Outcome, now: float
) -> tuple[str, str | None, dict[str, Any]]:
    if outcome.state == "succeeded":
        done = {"finished_at": now, "output_path": outcome.output_path, "failure_class": None, "cancel_requested": 0}
        return "succeeded", None, done
    if outcome.state == "cancelled" or job["cancel_requested"]:
        return "cancelled", outcome.message or "cancelled by user", {"finished_at": now, "cancel_requested": 0}
    failure = outcome.failure_class or ("worker_lost" if outcome.state == "interrupted" else "engine_error")
    rank = f" (rank {outcome.failing_rank})" if outcome.failing_rank is not None else ""
    if outcome.requeue_always:
        return "queued", f"requeued: {outcome.message or 'the worker stopped it'}", {"queued_at": now}
    decision = decide(job, failure, outcome.message + rank if outcome.message else rank.strip())
    if decision.retry:
        extra = {"not_before": now + decision.delay_s, "retries_used": job["retries_used"] + 1, "queued_at": now}
        if failure != WAITS_FOR_SPACE:
            return "queued", decision.reason, extra
        # Kept on the queued job, so that the claim leaves it until there is room (storage/space.py).
        extra["failure_class"] = failure
        wait = space_wait(outcome.message, attempt["save_file"], attempt["log_dir"])
        return "queued", wait.note() if wait is not None and not wait.ready else decision.reason, extra
    return "failed", decision.reason, {"finished_at": now, "failure_class": failure}
