"""Queueing jobs and reading them back."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import sqlite3
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from engine.errors import BadInputError
from engine.flags import ENGINE_KEY_FLAGS
from storage.db import write_tx
from storage.deps import FIELDS, NEVER_ON, UNMET, WAITING_ON, check_deps, deps_of
from storage.paths import Home
from storage.spec import ENGINE_FLAGS, JobSpec
from storage.states import FINISHED, HELD, UNFINISHED, sql_list

Row = dict[str, Any]

_JOB_COLUMNS = (
    *ENGINE_FLAGS,
    "first_frame_src",
    "last_frame_src",
    "gpus",
    "nodes",
    "priority",
    "held",
    "max_retries",
    "retry_backoff",
)


def _input_name(role: str, source: str, tag: str = "") -> str:
    suffix = Path(source).suffix.lower() or ".img"
    return f"{role}{tag}{suffix}"


def stage_inputs(home: Home, first: str, last: str, tag: str = "") -> tuple[Path, Path, Path]:
    """Copy the two frames into a private staging folder; returns (folder, first copy, last copy).

    Copying happens before the write lock is taken, so a slow disk never stalls other submitters.
    """
    stage = home.jobs / f".staging-{uuid.uuid4().hex}"
    inputs = stage / "inputs"
    inputs.mkdir(parents=True)
    copies = []
    for role, source in (("first", first), ("last", last)):
        target = inputs / _input_name(role, source, tag)
        try:
            copy_input(source, target, home.jobs)
        except BaseException:
            shutil.rmtree(stage, ignore_errors=True)
            raise
        copies.append(target)
    return stage, copies[0], copies[1]


def copy_input(source: str | Path, target: Path, folder: Path) -> None:
    """Copy one input frame; a full or read-only disk is a storage error naming `folder`, anything else bad input."""
    try:
        shutil.copyfile(source, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            target.unlink(missing_ok=True)
        if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            # The disk's fault, not the input's. Named by the folder copied into (copyfile names the
            # source), so that the command can say which disk is full (storage.errors).
            raise OSError(exc.errno, exc.strerror, str(folder)) from None
        raise BadInputError(f"could not copy {source} into {folder}: {exc.strerror or exc}") from None


def _claim_folder(target: Path) -> None:
    """A folder left at a job's path by an older database is kept, under another name, never overwritten."""
    if target.exists():
        target.rename(target.with_name(f"{target.name}.orphan-{int(time.time())}-{uuid.uuid4().hex[:6]}"))


def _deps(spec: JobSpec) -> list[tuple[int, str]]:
    """(job id, kind) for each job `spec` waits for (JobSpec refuses a job named under two kinds)."""
    return sorted({dep: kind for kind, name in FIELDS.items() for dep in getattr(spec, name)}.items())


def insert_jobs(conn: sqlite3.Connection, home: Home, specs: Sequence[JobSpec]) -> list[int]:
    """Queue `specs` all together or not at all; each job gets its own copy of its input frames."""
    home.ensure()
    staged: list[tuple[Path, Path, Path]] = []
    moved: list[tuple[Path, Path]] = []
    try:
        for spec in specs:
            staged.append(
                stage_inputs(home, spec.first_frame_src or spec.first_frame, spec.last_frame_src or spec.last_frame)
            )
        now = time.time()
        ids: list[int] = []
        with write_tx(conn):
            for spec, (stage, first, last) in zip(specs, staged, strict=True):
                deps = _deps(spec)
                check_deps(conn, deps)
                job_id = _insert_row(conn, spec, now)
                final = home.job_dir(job_id)
                _claim_folder(final)
                os.rename(stage, final)
                moved.append((final, stage))
                conn.execute(
                    "UPDATE jobs SET first_frame = ?, last_frame = ? WHERE id = ?",
                    (str(final / "inputs" / first.name), str(final / "inputs" / last.name), job_id),
                )
                conn.executemany(
                    "INSERT INTO job_deps (job_id, after_id, kind) VALUES (?, ?, ?)",
                    [(job_id, d, kind) for d, kind in deps],
                )
                ids.append(job_id)
        return ids
    except BaseException:
        for final, stage in moved:
            if final.exists():
                final.rename(stage)
        for stage, _, _ in staged:
            shutil.rmtree(stage, ignore_errors=True)
        raise


def _insert_row(conn: sqlite3.Connection, spec: JobSpec, now: float) -> int:
    values: dict[str, Any] = {name: getattr(spec, name) for name in _JOB_COLUMNS}
    values["first_frame_src"] = spec.first_frame_src or spec.first_frame
    values["last_frame_src"] = spec.last_frame_src or spec.last_frame
    values["labels"] = json.dumps(sorted(set(spec.labels)))
    values["retry_on"] = ",".join(spec.retry_on)
    values["created_at"] = values["queued_at"] = now
    seq = conn.execute("SELECT COALESCE(MAX(seq), 0) + 1 FROM jobs").fetchone()[0]
    values["seq"] = seq
    names = ", ".join(values)
    marks = ", ".join(f":{n}" for n in values)
    cur = conn.execute(f"INSERT INTO jobs ({names}) VALUES ({marks})", values)
    return int(cur.lastrowid or 0)


# ---- reading --------------------------------------------------------------------------------------------


def get_job(conn: sqlite3.Connection, job_id: int) -> Row | None:
    row = conn.execute("SELECT * FROM jobs WHERE id = ?", (job_id,)).fetchone()
    if row is None:
        return None
    job = dict(row)
    job["labels"] = json.loads(job["labels"])
    job["waiting_on"], job["never_on"] = conn.execute(
        f"SELECT {WAITING_ON}, {NEVER_ON} FROM jobs j WHERE j.id = ?", (job_id,)
    ).fetchone()
    deps = deps_of(conn, job_id)
    for kind, name in FIELDS.items():
        job[name] = deps.get(kind, [])
    return job


def require_job(conn: sqlite3.Connection, job_id: int) -> Row:
    job = get_job(conn, job_id)
    if job is None:
        raise BadInputError(f"there is no job {job_id} (see flf2v ls --all)")
    return job


def attempts_of(conn: sqlite3.Connection, job_id: int) -> list[Row]:
    rows = conn.execute("SELECT * FROM attempts WHERE job_id = ? ORDER BY number", (job_id,)).fetchall()
    out = []
    for row in rows:
        attempt = dict(row)
        for key in ("memory", "peak_memory", "stage_seconds"):
            attempt[key] = json.loads(attempt[key] or "{}")
        out.append(attempt)
    return out


def get_attempt(conn: sqlite3.Connection, job_id: int, number: int | None = None) -> Row | None:
    """The job's attempt `number`, or its latest one."""
    attempts = attempts_of(conn, job_id)
    if not attempts:
        return None
    if number is None:
        return attempts[-1]
    return next((a for a in attempts if a["number"] == number), None)


_LIST_SQL = """
SELECT j.id, j.state, j.state_reason, j.held, j.cancel_requested, j.priority, j.seq, j.labels, j.gpus,
       j.task, j.size, j.frame_num, j.base_seed, {prompt} AS prompt, j.created_at, j.queued_at,
       j.started_at, j.finished_at, j.output_path, j.failure_class, j.not_before, j.attempts_count,
       a.number AS attempt, a.stage, a.step, a.steps_total, a.sec_per_it, a.eta_seconds, a.progress_at,
       a.worker_host, a.worker_pid, a.worker_started, a.failing_rank, a.exit_code, a.device,
       a.gpus AS assigned, a.started_at AS attempt_started, a.warm, a.load_saved_s, j.nodes, a.backend,
       a.slurm_job, a.slurm_state, a.slurm_reason, a.node_list,
       a.psnr_first, a.psnr_last, {waiting_on} AS waiting_on, {never_on} AS never_on
FROM jobs j LEFT JOIN attempts a ON a.id = j.current_attempt_id
"""

# Past, present, future: finished jobs by finishing time, then the running ones, then the queue in the
# order the scheduler will take it.
_ORDER = f"""
ORDER BY CASE WHEN j.state IN {sql_list(FINISHED)} THEN 0 WHEN j.state = 'queued' THEN 2 ELSE 1 END,
         CASE WHEN j.state = 'queued' THEN -j.priority ELSE 0 END,
         CASE WHEN j.state = 'queued' THEN j.seq ELSE COALESCE(j.finished_at, j.started_at, 0) END,
         j.id
"""


def list_jobs(
    conn: sqlite3.Connection,
    states: Sequence[str] = (),
    labels: Sequence[str] = (),
    recent_finished: int | None = None,
    ids: Sequence[int] = (),
    whole_prompts: bool = False,
) -> list[Row]:
    """Jobs for `ls`: filtered by state (held counts as a state) and label. With `recent_finished`, only
    that many of the most recently finished jobs are included alongside every unfinished one. Prompts are cut
    to 200 characters (a table shows fewer) unless `whole_prompts`."""
    where: list[str] = []
    params: list[Any] = []
    if states:
        parts = []
        # "held" is a queued job the scheduler skips: held by the user, or waiting for a dependency.
        held = f"(j.state = 'queued' AND (j.held OR EXISTS ({UNMET})))"
        plain = [s for s in states if s != HELD]
        if plain:
            parts.append(f"(j.state IN ({','.join('?' * len(plain))}) AND NOT {held})")
            params += plain
        if HELD in states:
            parts.append(held)
        where.append("(" + " OR ".join(parts) + ")")
    for label in labels:
        where.append("EXISTS (SELECT 1 FROM json_each(j.labels) WHERE value = ?)")
        params.append(label)
    if ids:
        where.append(f"j.id IN ({','.join('?' * len(ids))})")
        params += list(ids)
    if recent_finished is not None:
        where.append(
            f"(j.state NOT IN {sql_list(FINISHED)} OR j.id IN "
            f"(SELECT id FROM jobs WHERE state IN {sql_list(FINISHED)} ORDER BY finished_at DESC LIMIT ?))"
        )
        params.append(recent_finished)
    prompt = "j.prompt" if whole_prompts else "substr(j.prompt, 1, 200)"
    sql = (
        _LIST_SQL.format(prompt=prompt, waiting_on=WAITING_ON, never_on=NEVER_ON)
        + (" WHERE " + " AND ".join(where) if where else "")
        + _ORDER
    )
    # Plain tuples zipped with the column names: a third of the time of sqlite3.Row -> dict at 10,000 rows.
    cur = conn.cursor()
    cur.row_factory = None
    cur.execute(sql, params)
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r, strict=True)) for r in cur]
    for row in rows:
        row["labels"] = json.loads(row["labels"]) if row["labels"] != "[]" else []
    return rows


def unfinished_work(conn: sqlite3.Connection, typical: float, now: float) -> tuple[float, int, int]:
    """The queue's outstanding work in one aggregate over every unfinished job, without reading their rows:
    (GPU-seconds the running and interrupted jobs still owe, by their attempt's own ETA or else `typical`
    less the time the attempt has run; how many of them have no ETA of their own; GPUs asked for by the
    queued jobs that can start, neither held nor waiting on a dependency)."""
    sql = f"""
    SELECT COALESCE(SUM(CASE WHEN j.state != 'queued' THEN j.gpus * COALESCE(a.eta_seconds,
                        MAX(:typical - (:now - COALESCE(a.started_at, :now)), 0)) END), 0),
           COALESCE(SUM(CASE WHEN j.state != 'queued' AND a.eta_seconds IS NULL THEN 1 END), 0),
           COALESCE(SUM(CASE WHEN j.state = 'queued' AND NOT j.held AND NOT EXISTS ({UNMET}) THEN j.gpus END), 0)
    FROM jobs j LEFT JOIN attempts a ON a.id = j.current_attempt_id
    WHERE j.state IN {sql_list(UNFINISHED)}
    """
    owed, without_eta, queued_gpus = conn.execute(sql, {"typical": typical, "now": now}).fetchone()
    return float(owed), int(without_eta), int(queued_gpus)


# A queued job's engine key, as far as its row tells it (engine.flags' engine_key flags that are job columns, and
# its ranks): jobs alike in these run one after another in one warm group.
_KEY_COLUMNS = (*(name for name in ENGINE_KEY_FLAGS if name in ENGINE_FLAGS), "gpus")


def queued_by_key(conn: sqlite3.Connection) -> list[tuple[int, int]]:
    """(ranks, how many) per engine key among the queued jobs that can start (neither held nor waiting on a
    dependency): the first of each key loads the models, and with warm groups the rest find them loaded."""
    sql = (
        f"SELECT j.gpus, COUNT(*) FROM jobs j WHERE j.state = 'queued' AND NOT j.held AND NOT EXISTS ({UNMET}) "
        f"GROUP BY {', '.join('j.' + c for c in _KEY_COLUMNS)}"
    )
    return [(int(gpus), int(n)) for gpus, n in conn.execute(sql)]


def count_by_state(conn: sqlite3.Connection) -> dict[str, int]:
    """Jobs per state as `ls` names them (held: by the user or by an unmet dependency)."""
    counts: dict[str, int] = {}
    sql = f"SELECT state, held OR EXISTS ({UNMET}) AS h, COUNT(*) FROM jobs j GROUP BY state, h"
    for state, held, n in conn.execute(sql):
        key = HELD if held and state == "queued" else state
        counts[key] = counts.get(key, 0) + n
    return counts
