"""What the catalogue makes of an mp4: a checked description, a content hash, thumbnails and a contact sheet."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from engine.mp4 import VideoInfo, iter_frames, probe

THUMB_WIDTH = 320
SHEET_FRAMES = 8
SHEET_COLUMNS = 4
SHEET_TILE_WIDTH = 240
THUMB_NAMES = ("first", "middle", "last")


class VideoCheckError(RuntimeError):
    """The file is not the video the engine said it wrote."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_video(path: Path, expected: dict[str, Any]) -> VideoInfo:
    """Open the mp4 and compare it with what the engine's done event promised (frames, fps, width, height)."""
    if not path.is_file():
        raise VideoCheckError(f"{path} does not exist")
    try:
        info = probe(path)
    except OSError as exc:
        raise VideoCheckError(str(exc)) from None
    problems = []
    if "frames" in expected and info.frames != int(expected["frames"]):
        problems.append(f"{info.frames} frames, not {expected['frames']}")
    if "fps" in expected and abs(info.fps - float(expected["fps"])) > 0.01:
        problems.append(f"{info.fps:g} fps, not {expected['fps']}")
    for axis in ("width", "height"):
        if axis in expected and getattr(info, axis) != int(expected[axis]):
            problems.append(f"{axis} {getattr(info, axis)}, not {expected[axis]}")
    if problems:
        raise VideoCheckError(f"{path.name} does not match what the engine wrote: {', '.join(problems)}")
    return info


def sheet_indices(frames: int, count: int = SHEET_FRAMES) -> list[int]:
    """`count` frame indices spread evenly from the first frame to the last."""
    if frames <= count:
        return list(range(frames))
    return [round(i * (frames - 1) / (count - 1)) for i in range(count)]


def _resized(frame: np.ndarray, width: int) -> Image.Image:
    image = Image.fromarray(frame)
    height = max(1, round(image.height * width / image.width))
    return image.resize((width, height), Image.Resampling.LANCZOS)


def _save_png(image: Image.Image, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    image.save(tmp, format="PNG")
    os.replace(tmp, path)


def make_thumbnails(video: Path, info: VideoInfo, folder: Path) -> dict[str, str]:
    """first/middle/last PNGs and an 8-frame contact sheet, from one streaming decode."""
    folder.mkdir(parents=True, exist_ok=True)
    last = info.frames - 1
    wanted: dict[int, list[str]] = {}
    for name, index in zip(THUMB_NAMES, (0, last // 2, last), strict=True):
        wanted.setdefault(index, []).append(name)
    sheet_at = sheet_indices(info.frames)
    picked: dict[int, np.ndarray] = {}
    for index, frame in enumerate(iter_frames(video)):
        if index in wanted or index in sheet_at:
            picked[index] = frame.copy()
    if not picked:
        raise VideoCheckError(f"{video} has no frames to make thumbnails from")
    written: dict[str, str] = {}
    for index, names in wanted.items():
        frame = picked.get(min(index, max(picked)))
        for name in names:
            path = folder / f"{name}.png"
            _save_png(_resized(frame, min(THUMB_WIDTH, frame.shape[1])), path)
            written[name] = str(path)
    tiles = [_resized(picked[i], SHEET_TILE_WIDTH) for i in sheet_at if i in picked]
    rows = -(-len(tiles) // SHEET_COLUMNS)
    tile_w, tile_h = tiles[0].size
    sheet = Image.new("RGB", (tile_w * min(SHEET_COLUMNS, len(tiles)), tile_h * rows))
    for n, tile in enumerate(tiles):
        sheet.paste(tile, ((n % SHEET_COLUMNS) * tile_w, (n // SHEET_COLUMNS) * tile_h))
    path = folder / "sheet.png"
    _save_png(sheet, path)
    written["sheet"] = str(path)
    return written


def small_frames(video: Path, width: int) -> list[Image.Image]:
    """Every frame scaled down to `width` pixels across, for playing in the terminal."""
    return [_resized(frame, min(width, frame.shape[1])) for frame in iter_frames(video)]
