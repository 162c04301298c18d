"""Cataloguing a finished render: check the mp4, make thumbnails, keep the inputs, write the row and sidecar.

Everything a video needs to be understood and made again sits beside it: `<name>.mp4` (its recipe also in
the container's comment tag), `<name>.json` (the sidecar: the catalogue row) and `<name>.files/` (thumbnails,
contact sheet, and copies of the two input frames, so that deleting the job loses nothing).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

from engine.recipe import RECIPE_FLAGS, read_recipe
from flf2v_tui.catalogue.media import VideoCheckError, check_video, make_thumbnails, sha256_file
from storage.catalogue import add_video, require_video, update_user_fields
from storage.errors import storage_fault

# Recipe keys that are also columns of their own (the recipe's name first, the column's second).
RECIPE_COLUMNS = {
    "task": "task", "size": "size", "prompt": "prompt", "neg_prompt": "neg_prompt", "base_seed": "seed",
    "sample_steps": "sample_steps", "sample_shift": "sample_shift", "sample_guide_scale": "sample_guide_scale",
    "sample_solver": "sample_solver", "ckpt_dir": "ckpt_dir", "ckpt_fingerprint": "ckpt_fingerprint",
    "engine_version": "engine_version", "world_size": "world_size", "ulysses_size": "ulysses_size",
    "t5_fsdp": "t5_fsdp", "dit_fsdp": "dit_fsdp",
}  # fmt: skip


def sidecar_path(video: Path) -> Path:
    return video.with_suffix(".json")


def files_dir(video: Path) -> Path:
    return video.with_name(video.stem + ".files")


def recipe_from_job(job: dict[str, Any], world_size: int) -> dict[str, Any]:
    """For an mp4 without an embedded recipe (an older engine): the job's own stored values."""
    recipe = {name: job.get(name) for name in RECIPE_FLAGS}
    recipe.update(base_seed=job["base_seed"], world_size=world_size, engine_version=None, ckpt_fingerprint=None)
    return recipe


def _copy_inputs(job: dict[str, Any], folder: Path) -> dict[str, str]:
    copies = {}
    for role in ("first_frame", "last_frame"):
        source = Path(job[role])
        target = folder / f"input-{role.split('_')[0]}{source.suffix.lower() or '.img'}"
        shutil.copyfile(source, target)
        copies[role] = str(target)
    return copies


def prepare_row(
    job: dict[str, Any], attempt_id: int | None, done: dict[str, Any], stage_seconds: dict[str, float],
    peak_memory: dict[str, int], world_size: int,
) -> dict[str, Any]:  # fmt: skip
    """The catalogue row for a render the engine reports done; raises VideoCheckError if the file disagrees."""
    path = Path(done["output"])
    info = check_video(path, done)
    embedded = read_recipe(path)
    if done.get("recipe") and embedded != done["recipe"]:
        raise VideoCheckError(f"{path.name}: the recipe inside the file is not the one the engine reported")
    recipe = dict(embedded or done.get("recipe") or recipe_from_job(job, world_size))
    folder = files_dir(path)
    try:
        files = make_thumbnails(path, info, folder)
        files.update(_copy_inputs(job, folder))
    except OSError as exc:
        if storage_fault(exc, folder) is not None:
            # The disk's fault (full, read-only, ...), not the video's: the caller retries once it can. A
            # failed write names no file, and the fault must name this folder, not the database's.
            if exc.filename is None:
                raise OSError(exc.errno, exc.strerror, str(folder)) from exc
            raise
        raise VideoCheckError(f"could not write the thumbnails and input copies into {folder}: {exc}") from None
    files["sidecar"] = str(sidecar_path(path))
    recipe.update(
        first_frame=files["first_frame"],
        last_frame=files["last_frame"],
        first_frame_src=job.get("first_frame_src"),
        last_frame_src=job.get("last_frame_src"),
    )
    row: dict[str, Any] = {column: recipe.get(key) for key, column in RECIPE_COLUMNS.items()}
    row["neg_prompt"] = row["neg_prompt"] or job.get("neg_prompt")
    row.update(
        job_id=job["id"],
        attempt_id=attempt_id,
        path=str(path),
        size_bytes=path.stat().st_size,
        sha256=sha256_file(path),
        width=info.width,
        height=info.height,
        frames=info.frames,
        fps=info.fps,
        duration=info.duration,
        recipe=recipe,
        stage_seconds=stage_seconds,
        total_seconds=done.get("seconds"),
        psnr_first=done.get("psnr_first"),
        psnr_last=done.get("psnr_last"),
        peak_memory=peak_memory,
        tags=list(job.get("labels") or []),
        files=files,
        created_at=time.time(),
    )
    return row


def write_sidecar(video: dict[str, Any]) -> Path:
    """The row as JSON beside the mp4, replaced atomically, so the folder alone tells what each video is."""
    path = Path(video["files"].get("sidecar") or sidecar_path(Path(video["path"])))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(video, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path


def catalogue(conn: sqlite3.Connection, row: dict[str, Any]) -> dict[str, Any]:
    video = require_video(conn, add_video(conn, row))
    write_sidecar(video)
    return video


def save_user_fields(conn: sqlite3.Connection, video_id: int, **changes: Any) -> dict[str, Any]:
    """Rating, favourite, tags or notes, in the row and in its sidecar."""
    video = update_user_fields(conn, video_id, **changes)
    if Path(video["path"]).parent.is_dir():
        write_sidecar(video)
    return video
