"""Reading mp4 files back with the ffmpeg that imageio-ffmpeg ships (torch-free, so the app can use it)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VideoInfo:
    width: int
    height: int
    frames: int
    fps: float
    duration: float


def count_frames(path: str | os.PathLike[str]) -> int:
    import imageio_ffmpeg

    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    return int(frames)


def iter_frames(path: str | os.PathLike[str]) -> Iterator[np.ndarray]:
    """Decode frame by frame as [H, W, 3] uint8, so a long video never has to fit in memory at once."""
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
    width, height = next(reader)["size"]
    for buf in reader:
        yield np.frombuffer(buf, dtype=np.uint8).reshape(height, width, 3)


def read_frames(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an mp4 to [F, H, W, 3] uint8 (used to verify outputs and in tests)."""
    frames = list(iter_frames(path))
    return np.stack(frames) if frames else np.zeros((0, 0, 0, 3), dtype=np.uint8)


def probe(path: str | os.PathLike[str]) -> VideoInfo:
    """Size, exact frame count (by decoding), frame rate and duration; raises OSError if it does not open."""
    import imageio_ffmpeg

    try:
        reader = imageio_ffmpeg.read_frames(str(path), pix_fmt="rgb24")
        meta = next(reader)
        reader.close()
        frames, _ = imageio_ffmpeg.count_frames_and_secs(str(path))
    except (RuntimeError, StopIteration, OSError) as exc:
        raise OSError(f"{path} does not open as a video: {exc}") from None
    width, height = meta["size"]
    fps = float(meta.get("fps") or 0.0)
    duration = frames / fps if fps else float(meta.get("duration") or 0.0)
    return VideoInfo(int(width), int(height), int(frames), fps, round(duration, 4))
