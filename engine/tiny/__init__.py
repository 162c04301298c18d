"""The embedded random-weight FLF2V checkpoint: the real architecture at toy sizes, in either layout.

`write_tiny_checkpoint(dir)` is idempotent: a folder that already holds a complete checkpoint of the same
layout, preset and seed is left alone. Completeness is a marker file written last, inside a temporary folder
that is renamed into place, so a crash or a concurrent writer never leaves a half-written checkpoint behind.

This top level imports no torch (the app reads MARKER and FORMAT from it); the writer imports it when it runs.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from engine.tasks import TASKS, TaskConfig

MARKER = ".flf2v-tiny.json"
# Bump when the writer's output changes, so stale cached checkpoints get rewritten.
FORMAT = 1
LAYOUTS = ("official", "diffusers")


def _marker(folder: Path) -> dict[str, object] | None:
    try:
        data = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def write_tiny_checkpoint(
    directory: str | os.PathLike[str],
    layout: str = "official",
    preset: str = "tiny",
    seed: int = 0,
    task: TaskConfig | None = None,
) -> Path:
    """Write (or find) a seeded random-weight checkpoint in `directory`; returns its path."""
    from engine.tiny import presets
    from engine.tiny.layouts import generate, write_diffusers, write_official

    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {', '.join(LAYOUTS)}, not {layout!r}")
    if preset not in presets.PRESETS:
        raise ValueError(f"preset must be one of {', '.join(presets.PRESETS)}, not {preset!r}")
    task = task or TASKS["flf2v-tiny"]
    target = Path(directory)
    want = {"format": FORMAT, "layout": layout, "preset": preset, "seed": seed, "task": task.name}
    found = _marker(target)
    if found == want:
        return target
    if target.exists() and found is None and any(target.iterdir()):
        raise FileExistsError(f"{target} is not empty and holds no tiny checkpoint; refusing to overwrite it")

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.partial-{uuid.uuid4().hex[:8]}"
    try:
        models = generate(presets.PRESETS[preset], task, seed)
        (write_official if layout == "official" else write_diffusers)(models, task, staging)
        (staging / MARKER).write_text(json.dumps(want, sort_keys=True) + "\n", encoding="utf-8")
        if target.exists():  # empty, or one of ours with other settings
            shutil.rmtree(target)
        try:
            staging.rename(target)
        except OSError:
            if _marker(target) != want:  # not a concurrent writer that finished first
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


__all__ = ["FORMAT", "LAYOUTS", "MARKER", "write_tiny_checkpoint"]
