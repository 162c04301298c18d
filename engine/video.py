"""MP4 output through imageio-ffmpeg: H.264, yuv420p, written to a temporary name, verified, then renamed."""

from __future__ import annotations

import os
import re
import unicodedata
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

import numpy as np
import torch

from engine.mp4 import count_frames

# The official writer passes quality=8 to imageio, which imageio-ffmpeg turns into libx264 -crf 10.
OFFICIAL_QUALITY = 8
_UNSAFE = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')


class VideoWriteError(RuntimeError):
    pass


def to_uint8_frames(video: torch.Tensor) -> np.ndarray:
    """[3, F, H, W] in [-1, 1] -> [F, H, W, 3] uint8, normalised as the official writer does:
    clamp to [-1, 1], map to [0, 1], scale by 255 and truncate (not round) to uint8."""
    x = video.detach().float().clamp(-1, 1).add(1).div(2).clamp(0, 1)
    return (x * 255).to(torch.uint8).permute(1, 2, 3, 0).contiguous().cpu().numpy()


def default_file_name(task: str, size: str, ulysses: int, ring: int, prompt: str, when: datetime | None = None) -> str:
    """The official naming pattern (task, size, parallel degrees, prompt prefix, time), made safe for any
    file system: no path separators or reserved characters, no control characters, bounded length."""
    stamp = (when or datetime.now()).strftime("%Y%m%d_%H%M%S")
    words = unicodedata.normalize("NFC", prompt).replace(" ", "_").replace("/", "_")[:50]
    words = _UNSAFE.sub("_", words).strip("._ ") or "video"
    name = f"{task}_{size.replace('*', 'x')}_{ulysses}_{ring}_{words}_{stamp}"
    while len(name.encode("utf-8")) > 240:  # most file systems cap names at 255 bytes
        words = words[:-1]
        name = f"{task}_{size.replace('*', 'x')}_{ulysses}_{ring}_{words}_{stamp}"
    return name + ".mp4"


def write_mp4(
    frames: np.ndarray,
    path: str | os.PathLike[str],
    fps: int,
    metadata: dict[str, str] | None = None,
    extra_params: Sequence[str] = (),
) -> Path:
    """Write frames [F, H, W, 3] uint8 to `path` atomically and confirm the frame count by reading it back."""
    import imageio_ffmpeg

    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.stem}.partial-{os.getpid()}.mp4")
    count, height, width = frames.shape[0], frames.shape[1], frames.shape[2]
    params = ["-movflags", "+faststart", *extra_params]
    for key, value in (metadata or {}).items():
        params += ["-metadata", f"{key}={value}"]
    try:
        writer = imageio_ffmpeg.write_frames(
            str(tmp),
            (width, height),
            fps=fps,
            codec="libx264",
            pix_fmt_in="rgb24",
            pix_fmt_out="yuv420p",
            quality=OFFICIAL_QUALITY,
            macro_block_size=16,
            ffmpeg_log_level="error",
            output_params=params,
        )
        writer.send(None)
        for frame in frames:
            writer.send(np.ascontiguousarray(frame))
        writer.close()
        written = count_frames(tmp)
        if written != count:
            raise VideoWriteError(f"{target.name}: wrote {count} frames but the file holds {written}")
        os.replace(tmp, target)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, VideoWriteError):
            raise
        raise VideoWriteError(f"could not write {target}: {exc}") from exc
    return target
