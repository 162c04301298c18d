"""The catalogue screen without its widgets: reading videos, the recipe beside the selection, the re-run form."""

from __future__ import annotations

import sqlite3
from typing import Any

from engine.diskspace import human_size
from engine.tasks import TASKS
from flf2v_tui.catalogue.rerun import recipe_gpus, recipe_values
from flf2v_tui.catalogue.views import stars
from flf2v_tui.job_text import psnr_cell, psnr_text
from flf2v_tui.screen_data.form import SWITCHES, prefill_from_job
from flf2v_tui.term import clock, duration, inert_row, one_line
from storage.catalogue import VideoFilter, search

SORT_CYCLE = ("new", "rating", "old", "prompt")
SORT_NAMES = {"new": "newest first", "rating": "best rated first", "old": "oldest first", "prompt": "by prompt"}
MAX_LISTED = 2000


def read_videos(conn: sqlite3.Connection, text: str, sort: str) -> list[dict[str, Any]]:
    return search(conn, VideoFilter(text=text, sort=sort, limit=MAX_LISTED))


def next_sort(sort: str) -> str:
    return SORT_CYCLE[(SORT_CYCLE.index(sort) + 1) % len(SORT_CYCLE)] if sort in SORT_CYCLE else SORT_CYCLE[0]


def row_cells(video: dict[str, Any]) -> tuple[str, ...]:
    return (
        str(video["id"]),
        stars(video.get("rating")),
        "♥" if video.get("favourite") else "",
        one_line(video["prompt"]),
        psnr_cell(video.get("psnr_first"), video.get("psnr_last")),
        clock(video["created_at"])[:16],
        one_line(",".join(video.get("tags") or [])),
        f"{video['width']}x{video['height']}",
        str(video["seed"]),
    )


def recipe_rows(video: dict[str, Any]) -> list[tuple[str, str]]:
    """What the side panel lists for the selected video: how it was made, what it is, what it cost."""
    video = inert_row(video)
    recipe = video.get("recipe") or {}
    layout = f"{recipe.get('world_size') or 1} rank(s), ulysses {recipe.get('ulysses_size') or 1}"
    if (recipe.get("cfg_size") or 1) > 1:  # CFG-parallel: the two guidance branches on two halves of the ranks
        layout += f", cfg {recipe['cfg_size']}"
    if recipe.get("attn"):  # the kernel the run used (`auto` is recorded as what it picked)
        layout += f", attention {recipe['attn']}"
    flags = [name for name in SWITCHES if recipe.get(name)]
    peaks = video.get("peak_memory") or {}
    rows = [
        ("prompt", one_line(video["prompt"])),
        ("seed", str(video["seed"])),
        ("task", f"{video['task']} {video['size']}, {recipe.get('frame_num', video['frames'])} frames"),
        ("sampler", f"{video['sample_solver']}, {video['sample_steps']} steps, shift {video['sample_shift']:g}, "
                    f"guide {video['sample_guide_scale']:g}"),
        ("layout", layout + (", " + ", ".join(flags) if flags else "")),
        ("video", f"{video['width']}x{video['height']}, {video['frames']} frames at {video['fps']:g} fps, "
                  f"{human_size(video['size_bytes'])}"),
        ("psnr", fidelity_text(video)),
        ("took", duration(video.get("total_seconds"))),
        ("peak memory", ", ".join(f"r{r} {human_size(b)}" for r, b in sorted(peaks.items())) or "-"),
        ("checkpoint", f"{video['ckpt_dir']} ({video.get('ckpt_fingerprint') or 'no fingerprint'})"),
        ("rating", f"{stars(video.get('rating'))}{'  ♥ favourite' if video.get('favourite') else ''}"),
        ("tags", ", ".join(video.get("tags") or []) or "-"),
        ("notes", video.get("notes") or "-"),
        ("made", f"{clock(video['created_at'])} by job {video.get('job_id') or '-'}"),
        ("file", str(video["path"])),
    ]  # fmt: skip
    neg = recipe.get("neg_prompt")
    if neg:
        task = TASKS.get(str(video["task"]))
        official = task is not None and neg == task.neg_prompt
        rows.insert(1, ("negative", "the official default" if official else one_line(neg)))
    return rows


def fidelity_text(row: dict[str, Any]) -> str:
    """How close a render's first and last frames came to the inputs (PSNR), for a video or an attempt."""
    said = psnr_text(row.get("psnr_first"), row.get("psnr_last"))
    return f"{said} (end frames vs inputs)" if said else "-"


def prefill_from_video(video: dict[str, Any]) -> dict[str, str]:
    """The submit form's field texts for making this video again: its recipe, ranks and tags as labels.
    The frames are the user's originals when they still exist, else the catalogue's copies; a frame gone from
    both places leaves its path for the form to flag, rather than refusing to open."""
    recipe = video["recipe"]
    job = recipe_values(video, need_frames=False)
    for role in ("first_frame", "last_frame"):
        job[role] = recipe.get(role) or ""
        job[f"{role}_src"] = recipe.get(f"{role}_src") or ""
    job.update(gpus=recipe_gpus(video), priority=0, labels=list(video.get("tags") or []))
    return prefill_from_job(job)
