"""A catalogued video's recipe as submit values, so it can be queued again with changes."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from engine.errors import BadInputError
from engine.flags import JOB_FLAGS
from engine.tasks import TASKS

# The engine flags a recipe carries that a new job takes as they are.
_FROM_RECIPE = tuple(flag.name for flag in JOB_FLAGS if flag.recipe)


def _frame(recipe: dict[str, Any], role: str, video_id: int) -> str:
    for key in (role, f"{role}_src"):
        candidate = recipe.get(key)
        if candidate and Path(candidate).is_file():
            return str(candidate)
    raise BadInputError(
        f"video {video_id}: its {role.replace('_', ' ')} is gone ({recipe.get(role)}); give one with --{role} PATH"
    )


def recipe_values(video: dict[str, Any], need_frames: bool = True) -> dict[str, Any]:
    """Engine flag values that make this video again (frames: the catalogue's own copies)."""
    recipe = video["recipe"]
    values = {name: recipe.get(name) for name in _FROM_RECIPE}
    task = TASKS.get(str(values["task"]))
    if task is not None and values.get("neg_prompt") == task.neg_prompt:
        values["neg_prompt"] = None  # the official default, stored as "default" like any submitted job
    if need_frames:
        values["first_frame"] = _frame(recipe, "first_frame", video["id"])
        values["last_frame"] = _frame(recipe, "last_frame", video["id"])
    return values


def recipe_gpus(video: dict[str, Any]) -> int:
    return int(video["recipe"].get("world_size") or video.get("world_size") or 1)


def rerun_labels(conn: sqlite3.Connection, video: dict[str, Any], given: list[str]) -> list[str]:
    """The new job's labels: the video's tags (its job's labels when it was catalogued, and the user's tags
    since), its job's labels now if the job is still there, and those given."""
    from storage.jobs import get_job

    job = get_job(conn, video["job_id"]) if video.get("job_id") is not None else None
    return sorted({*(video.get("tags") or []), *((job or {}).get("labels") or []), *given})
