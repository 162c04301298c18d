"""The recipe of a video: everything needed to make it again (torch-free).

The engine writes it as JSON into the mp4's `comment` metadata, so the file carries its recipe wherever it
goes; the catalogue stores the same dict and a JSON sidecar beside the mp4.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from engine.flags import RECIPE_FLAGS

RECIPE_VERSION = 1
_EDGE_BYTES = 1 << 20


def file_fingerprint(path: Path) -> str:
    """Size plus a hash of the first and last megabyte: cheap for 60 GB checkpoints, survives copying."""
    size = path.stat().st_size
    digest = hashlib.sha256(str(size).encode())
    with open(path, "rb") as fh:
        digest.update(fh.read(_EDGE_BYTES))
        if size > _EDGE_BYTES:
            fh.seek(max(_EDGE_BYTES, size - _EDGE_BYTES))
            digest.update(fh.read(_EDGE_BYTES))
    return digest.hexdigest()


def checkpoint_fingerprint(root: Path, files: Iterable[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(set(files)):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(file_fingerprint(path).encode())
    return digest.hexdigest()[:16]


def build_recipe(
    args: dict[str, Any],
    seed: int,
    world_size: int,
    engine_version: str,
    fingerprint: str | None,
    gpu: str | None = None,
) -> dict[str, Any]:
    """The flags that shape the pixels (engine.flags' recipe flags), plus how the job was laid out over
    processes; `seed` is the one drawn when --base_seed was -1. `gpu` is the GPU model (None on the CPU): the
    same seed can draw different noise on another model, since large CUDA randn calls size their grid by the
    number of SMs (README: "What is not promised", beside the recipe)."""
    recipe = {name: args.get(name) for name in RECIPE_FLAGS}
    recipe["ckpt_dir"] = str(Path(recipe["ckpt_dir"]).resolve()) if recipe["ckpt_dir"] else None
    recipe.update(
        recipe_version=RECIPE_VERSION,
        base_seed=seed,
        world_size=world_size,
        engine_version=engine_version,
        ckpt_fingerprint=fingerprint,
        gpu=gpu,
    )
    return recipe


def recipe_comment(recipe: dict[str, Any]) -> str:
    return json.dumps({"flf2v_recipe": recipe}, ensure_ascii=False, sort_keys=True)


def _unescape_ffmetadata(value: str) -> str:
    out, escaped = [], False
    for char in value:
        if escaped:
            out.append(char)
            escaped = False
        elif char == "\\":
            escaped = True
        else:
            out.append(char)
    return "".join(out)


def read_mp4_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The container's global metadata tags, read with the ffmpeg that imageio-ffmpeg ships."""
    import imageio_ffmpeg

    proc = subprocess.run(
        [imageio_ffmpeg.get_ffmpeg_exe(), "-v", "error", "-i", str(path), "-f", "ffmetadata", "-"],
        capture_output=True,
        timeout=60,
    )
    if proc.returncode != 0:
        raise OSError(f"could not read the metadata of {path}: {proc.stderr.decode(errors='replace').strip()}")
    tags: dict[str, str] = {}
    key, value = None, ""
    for raw in proc.stdout.decode("utf-8", errors="replace").split("\n"):
        if key is not None and (len(value) - len(value.rstrip("\\"))) % 2 == 1:
            value = value[:-1] + "\n" + raw  # an escaped newline continues the value
            tags[key] = value
            continue
        if not raw or raw.startswith((";", "[")) or "=" not in raw:
            key = None
            continue
        key, _, value = raw.partition("=")
        tags[key] = value
    return {k: _unescape_ffmetadata(v) for k, v in tags.items()}


def read_recipe(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The recipe embedded in an mp4 by the engine, or None when it has none."""
    comment = read_mp4_metadata(path).get("comment")
    if not comment:
        return None
    try:
        data = json.loads(comment)
    except json.JSONDecodeError:
        return None
    recipe = data.get("flf2v_recipe") if isinstance(data, dict) else None
    return recipe if isinstance(recipe, dict) else None
