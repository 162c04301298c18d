"""What a user does to queued and finished jobs: cancel, hold, release, top, rm, retry.

Running jobs are only ever flagged here (cancel_requested); the worker that supervises them acts on the flag.
"""

from __future__ import annotations

import shutil
import sqlite3
import time
from typing import Any

from engine.errors import BadInputError
from storage.db import write_tx
from storage.jobs import require_job
from storage.paths import Home
from storage.states import FINISHED, STARTED


def cancel(conn: sqlite3.Connection, job_id: int) -> str:
    """Cancel a job; returns a one-line account of what happened."""
    with write_tx(conn):
        job = require_job(conn, job_id)
        state = job["state"]
        if state == "queued":
            conn.execute(
                "UPDATE jobs SET state = 'cancelled', state_reason = 'cancelled before it started', finished_at = ? "
                "WHERE id = ?",
                (time.time(), job_id),
            )
            return f"job {job_id} cancelled (it had not started)"
        if state in STARTED:
            conn.execute(
                "UPDATE jobs SET cancel_requested = 1, state_reason = 'cancel requested' WHERE id = ?", (job_id,)
            )
            return f"job {job_id}: cancel requested; the worker stops its processes (SIGTERM, then SIGKILL)"
        return f"job {job_id} is already {state}; nothing to cancel"


def set_held(conn: sqlite3.Connection, job_id: int, held: bool) -> str:
    with write_tx(conn):
        job = require_job(conn, job_id)
        if job["state"] != "queued":
            raise BadInputError(f"job {job_id} is {job['state']}; only queued jobs can be held or released")
        reason = "held by user (flf2v release ID)".replace("ID", str(job_id)) if held else None
        conn.execute("UPDATE jobs SET held = ?, state_reason = ? WHERE id = ?", (int(held), reason, job_id))
    return f"job {job_id} {'held' if held else 'released'}"


def move_to_top(conn: sqlite3.Connection, job_id: int) -> str:
    with write_tx(conn):
        job = require_job(conn, job_id)
        if job["state"] != "queued":
            raise BadInputError(f"job {job_id} is {job['state']}; only queued jobs can be moved")
        top_priority, first_seq = conn.execute(
            "SELECT MAX(priority), MIN(seq) FROM jobs WHERE state = 'queued'"
        ).fetchone()
        conn.execute(
            "UPDATE jobs SET priority = ?, seq = ? WHERE id = ?",
            (max(top_priority, job["priority"]), first_seq - 1, job_id),
        )
    return f"job {job_id} moved to the front of the queue"


def remove(conn: sqlite3.Connection, home: Home, job_id: int, keep_files: bool = False) -> str:
    """Forget a job that is not running. Its mp4 in videos/ stays (the catalogue owns it); its folder of
    input copies and logs goes unless keep_files."""
    with write_tx(conn):
        job = require_job(conn, job_id)
        if job["state"] in STARTED:
            raise BadInputError(f"job {job_id} is {job['state']}; cancel it first (flf2v cancel {job_id})")
        waiting = [
            r[0]
            for r in conn.execute(
                "SELECT d.job_id FROM job_deps d JOIN jobs j ON j.id = d.job_id "
                "WHERE d.after_id = ? AND j.state = 'queued'",
                (job_id,),
            )
        ]
        if waiting:
            listed = ", ".join(map(str, waiting))
            raise BadInputError(f"jobs {listed} wait for job {job_id}; remove or cancel them first")
        conn.execute("DELETE FROM job_deps WHERE after_id = ?", (job_id,))
        conn.execute("UPDATE jobs SET current_attempt_id = NULL WHERE id = ?", (job_id,))
        conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,))
    folder = home.job_dir(job_id)
    if not keep_files and folder.exists():
        shutil.rmtree(folder, ignore_errors=True)
        return f"job {job_id} removed with its folder {folder}"
    return f"job {job_id} removed" + (f"; its folder {folder} was kept" if folder.exists() else "")


def not_editable(job_id: int, state: str) -> str:
    """Why a job that has left the queue cannot be edited, and what to do instead."""
    return (
        f"job {job_id} is {state}; only a queued job can be edited "
        f"(flf2v retry {job_id} queues a finished one again with changes)"
    )


def update_queued(conn: sqlite3.Connection, job_id: int, changes: dict[str, Any]) -> str:
    """Apply `changes` (already validated, as a submit validates) to a job that has not started; the state is
    checked under the write lock, so a worker that claims the job first wins and the edit is refused."""
    with write_tx(conn):
        job = require_job(conn, job_id)
        if job["state"] != "queued":
            raise BadInputError(not_editable(job_id, job["state"]))
        if changes:
            assignments = ", ".join(f"{k} = :{k}" for k in changes)
            conn.execute(f"UPDATE jobs SET {assignments} WHERE id = :id", {**changes, "id": job_id})
    changed = ", ".join(sorted(changes)) or "nothing"
    return f"job {job_id} edited ({changed})"


def requeue(conn: sqlite3.Connection, job_id: int, changes: dict[str, Any]) -> str:
    """Queue a finished job again as a new attempt, with `changes` (already validated) applied."""
    with write_tx(conn):
        job = require_job(conn, job_id)
        if job["state"] not in FINISHED:
            raise BadInputError(
                f"job {job_id} is {job['state']}; only finished jobs can be retried (cancel it first if you must)"
            )
        after = changes.pop("after", None)
        sets = {
            **changes,
            "state": "queued",
            "state_reason": "retry requested by user",
            "cancel_requested": 0,
            "retries_used": 0,
            "not_before": None,
            "finished_at": None,
            "failure_class": None,
            "queued_at": time.time(),
        }
        assignments = ", ".join(f"{k} = :{k}" for k in sets)
        conn.execute(f"UPDATE jobs SET {assignments} WHERE id = :id", {**sets, "id": job_id})
        if after is not None:
            conn.execute("DELETE FROM job_deps WHERE job_id = ?", (job_id,))
            conn.executemany("INSERT INTO job_deps (job_id, after_id) VALUES (?, ?)", [(job_id, a) for a in after])
    return f"job {job_id} queued again (attempt {job['attempts_count'] + 1})"
