"""The engine's side of video output: tensor to frames, and the official file name (the mp4 itself: engine/mp4.py)."""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime

import numpy as np
import torch

_UNSAFE = re.compile(r'[<>:"/\\|?*\x00-\x1f\x7f]')


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
