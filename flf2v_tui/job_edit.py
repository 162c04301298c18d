"""Editing a queued job in place (`flf2v edit`, the TUI's `e`), as `pueue edit` and `scontrol update` do.

The changes get exactly the checks a submit makes (the engine's own parser and validate(), the frames read as
images, the queue's bounds); a job that has started is refused, under the same write lock a worker claims in.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

from engine.errors import BadInputError
from flf2v_tui.submission import retry_changes, write_with_frames
from storage.jobs import require_job
from storage.ops import not_editable, update_queued
from storage.paths import Home
from storage.spec import check_values

FRAMES = ("first_frame", "last_frame")


class NothingToChange(BadInputError):
    """An edit that changes nothing the job keeps (the TUI's form says it in its own words)."""


def edit_job(
    conn: sqlite3.Connection,
    home: Home,
    job_id: int,
    given: dict[str, Any],
    *,
    gpus: int | None = None,
    priority: int | None = None,
    labels: list[str] | None = None,
    other_worker: bool = False,
) -> str:
    """Change a queued job's engine flags (`given`: name -> value, None for unchanged), ranks, priority or
    labels; returns one line saying what changed. Raises BadInputError (one line, naming the field) for a bad
    value or a job that is no longer queued; nothing is changed then."""
    check_values({"priority": priority, "labels": labels})
    job = require_job(conn, job_id)
    if job["state"] != "queued":  # checked again under the write lock by update_queued
        raise BadInputError(not_editable(job_id, job["state"]))
    asked = sorted(k for k, v in given.items() if v is not None)
    updates, new_frames = retry_changes(job, given, gpus, home, other_worker)
    updates = {k: v for k, v in updates.items() if k in asked or k == "gpus"}
    if priority is not None:
        updates["priority"] = priority
    if labels is not None:
        updates["labels"] = json.dumps(sorted({x for x in labels if x.strip()}))
    if not updates:
        raise NothingToChange(f"nothing to change for job {job_id}; give a flag to change, e.g. --prompt or --priority")
    # A name of its own for each edit's copies: the copies the job points at now stay until the edit is written.
    tag = f"edit-{uuid.uuid4().hex[:8]}"
    said = write_with_frames(home, job, new_frames, updates, lambda: update_queued(conn, job_id, updates), tag)
    _remove_replaced(home, job, updates)
    return said


def _remove_replaced(home: Home, job: dict[str, Any], updates: dict[str, Any]) -> None:
    """Once an edit is written, the job's own copies of the frames it replaced go (the job has not started,
    so nothing reads them); a file the job still names, or one outside its inputs, is never removed."""
    inputs = home.inputs_dir(job["id"]).resolve()
    still_used = {Path(updates.get(flag, job[flag])).resolve() for flag in FRAMES}
    for flag in FRAMES:
        old = Path(job[flag]).resolve()
        if flag in updates and old.parent == inputs and old not in still_used:
            old.unlink(missing_ok=True)
