"""The Slurm backend's writes and reads about an attempt: its Slurm job id, state, pending reason and nodes."""

from __future__ import annotations

import sqlite3

from storage.db import write_tx


def set_submitted(conn: sqlite3.Connection, attempt_id: int, slurm_job: str, save_file: str) -> None:
    """Recorded right after sbatch answers, so that a restarted worker finds the job and never submits twice."""
    with write_tx(conn):
        conn.execute(
            "UPDATE attempts SET backend = 'slurm', slurm_job = ?, slurm_state = 'PENDING', save_file = ? WHERE id = ?",
            (slurm_job, save_file, attempt_id),
        )


def mark_slurm(conn: sqlite3.Connection, attempt_id: int) -> None:
    """Before sbatch: the attempt is the Slurm backend's, even if the worker dies before recording the job id
    (a restarted worker then looks the job up by its name)."""
    with write_tx(conn):
        conn.execute("UPDATE attempts SET backend = 'slurm' WHERE id = ?", (attempt_id,))


def set_status(
    conn: sqlite3.Connection,
    attempt_id: int,
    slurm_job: str,
    state: str,
    reason: str | None,
    node_list: str | None,
    elapsed: str | None = None,
    max_rss: str | None = None,
) -> None:
    """What squeue (or, once it ended, sacct) last said of the attempt's job (written only when it changed):
    its elapsed time and peak resident memory (sacct's MaxRSS, largest over its steps) are kept once known."""
    with write_tx(conn):
        conn.execute(
            "UPDATE attempts SET slurm_job = ?, slurm_state = ?, slurm_reason = ?, node_list = ?, "
            "slurm_elapsed = COALESCE(?, slurm_elapsed), slurm_max_rss = COALESCE(?, slurm_max_rss) "
            "WHERE id = ? AND state = 'running'",
            (slurm_job, state, reason, node_list, elapsed, max_rss, attempt_id),
        )
