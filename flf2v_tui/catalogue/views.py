"""Text for `flf2v videos ls` and `flf2v videos show`."""

from __future__ import annotations

import time
from typing import Any

from engine.diskspace import human_size
from flf2v_tui.job_text import psnr_cell, psnr_text
from flf2v_tui.term import clock, duration, fitted_table, inert_row, one_line

PROMPT_WIDTH = 40
MIN_PROMPT = 20
# What the prompt leaves at a narrow terminal: ID, RATING, FAV, CREATED and a 19-digit SEED with their
# separators, and the start of the cut TAGS (so at 80 columns a seed is still shown whole).
NARROW_ROOM = 60


def stars(rating: int | None) -> str:
    return "-" if not rating else "★" * rating + "☆" * (5 - rating)


def ls_text(videos: list[dict[str, Any]], width: int = 0) -> tuple[str, list[str]]:
    """The table of `flf2v videos ls` and the headings of the columns a terminal of `width` had no room for.
    The prompt comes second, so that a video is recognised at any width; at a narrow terminal it gives way
    (down to MIN_PROMPT) to the columns of numbers after it, which are shown whole or left out (SEED is never
    cut: `flf2v videos show ID` has them all), and only TAGS, last, is cut."""
    keep = PROMPT_WIDTH if not width else max(MIN_PROMPT, min(PROMPT_WIDTH, width - NARROW_ROOM))
    rows = [
        [
            str(v["id"]),
            one_line(v["prompt"], keep),
            stars(v.get("rating")),
            "♥" if v.get("favourite") else "",
            time.strftime("%Y-%m-%d %H:%M", time.localtime(v["created_at"])),
            str(v["seed"]),
            f"{v['width']}x{v['height']}",
            str(v["frames"]),
            psnr_cell(v.get("psnr_first"), v.get("psnr_last")),
            v["task"],
            ",".join(v.get("tags") or []),
        ]
        for v in videos
    ]
    header = ["ID", "PROMPT", "RATING", "FAV", "CREATED", "SEED", "SIZE", "FRAMES", "PSNR", "TASK", "TAGS"]
    return fitted_table(rows, header, width=width, whole_cells=True)


def _pairs(title: str, values: dict[str, Any]) -> list[str]:
    lines = [f"  {title}"]
    width = max((len(k) for k in values), default=0)
    lines += [f"    {k.ljust(width)} {v}" for k, v in values.items()]
    return lines


def show_text(video: dict[str, Any]) -> str:
    video = inert_row(video)
    recipe = dict(video["recipe"])
    lines = [
        f"video {video['id']}: {video['path']}",
        f"  prompt     {video['prompt']}",
        f"  rating     {stars(video.get('rating'))}   favourite {'yes' if video.get('favourite') else 'no'}   "
        f"tags {', '.join(video.get('tags') or []) or '-'}",
    ]
    if video.get("notes"):
        lines.append(f"  notes      {video['notes']}")
    lines += [
        f"  video      {video['width']}x{video['height']}, {video['frames']} frames at {video['fps']:g} fps "
        f"({video['duration']:.2f} s), {human_size(video['size_bytes'])}",
        f"  seed       {video['seed']}",
        f"  sha256     {video['sha256']}",
        f"  made       {clock(video['created_at'])} by job {video.get('job_id') or '-'} "
        f"(attempt id {video.get('attempt_id') or '-'}), engine {recipe.get('engine_version') or '-'}",
        f"  took       {duration(video.get('total_seconds'))}",
    ]
    fidelity = psnr_text(video.get("psnr_first"), video.get("psnr_last"))
    if fidelity:
        lines.append(f"  psnr       {fidelity} (the end frames against the inputs)")
    lines += _pairs("recipe", {k: recipe[k] for k in sorted(recipe) if k not in ("prompt", "neg_prompt")})
    stages = video.get("stage_seconds") or {}
    if stages:
        lines.append("  stages     " + ", ".join(f"{k} {v:.1f}s" for k, v in stages.items()))
    peaks = video.get("peak_memory") or {}
    if peaks:
        lines.append("  peak mem   " + ", ".join(f"rank {r} {human_size(b)}" for r, b in sorted(peaks.items())))
    lines += _pairs("files", dict(sorted((video.get("files") or {}).items())))
    return "\n".join(lines)
